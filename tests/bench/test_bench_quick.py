"""`python -m bench --quick` runs every case and prints one valid JSON line per result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import ALL_CASES, normalize  # noqa: E402
from bench.suite import KEYS, record  # noqa: E402


def test_records_have_every_key_and_the_ratio():
    rec = record("hvp", what="x", ours_s=2.0, anchor_s=6.0, target_ratio=5.0)
    assert set(KEYS) <= set(rec)
    assert rec["ratio"] == 3.0 and rec["meets_target"] is False


def test_normalize_maps_other_benchmarks_keys():
    raw = {"name": "hvp", "ours_seconds": 1.0, "pyhessian_seconds": 4.0, "rel_err": 1e-7}
    rec = normalize(raw, "hessian_vs_pyhessian", "cpu")
    assert rec["what"] == "hvp" and rec["ours_s"] == 1.0 and rec["anchor_s"] == 4.0
    assert rec["ratio"] == 4.0 and rec["disagreement"] == 1e-7 and rec["device"] == "cpu"
    assert rec["status"] == "ok" and rec["case"] == "hessian_vs_pyhessian"


def test_resnets_have_the_published_sizes():
    import torch

    from bench.models import cifar_like, num_params, resnet20, resnet56

    assert num_params(resnet20()) == 269_722  # 0.27M
    assert num_params(resnet56()) == 853_018  # 0.85M
    data = cifar_like(4, n_test=2)
    assert tuple(data.x_train.shape) == (4, 3, 32, 32) and data.num_test == 2
    assert resnet20()(data.x_train).shape == torch.Size([4, 10])


@pytest.mark.slow
def test_quick_suite_prints_valid_json_lines():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--cases", ",".join(ALL_CASES)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines, proc.stderr[-3000:]
    seen = set()
    for line in lines:
        rec = json.loads(line)
        assert set(KEYS) <= set(rec), line
        assert rec["status"] in ("ok", "missing", "skipped"), line
        if rec["status"] == "ok" and rec["anchor_s"] is not None:
            assert rec["ours_s"] > 0 and rec["anchor_s"] > 0 and rec["ratio"] > 0, line
        seen.add(rec["case"])
    assert seen == set(ALL_CASES)
    assert proc.returncode == 0, proc.stderr[-3000:]
