"""The trajectory benchmark runs and reports both ways on the same checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.mark.slow
def test_trajectory_benchmark_records() -> None:
    from bench.trajectory_vs_scan import run_cases

    recs = run_cases(quick=True)
    assert [r["status"] for r in recs] == ["ok", "ok"]
    for r in recs:
        assert r["ours_s"] > 0 and r["anchor_s"] > 0
        assert r["disagreement"] < 1e-6  # the same λmax from both
