"""`landscape scan` end to end: the summary holds real numbers, the checkpoint is untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.engine import ParamSpace
from landscape.experiments.demo import build_seeded
from landscape.hessian import exact_spectrum
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.io.save import save
from landscape.models import mlp

runner = CliRunner()


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_scan_bundle_writes_exact_numbers(tmp_path: Path) -> None:
    model = build_seeded(mlp, 0, in_features=64, hidden=6, num_classes=10, activation="tanh")
    ckpt = save(
        model,
        tmp_path / "m.pt",
        factory="landscape.models:mlp",
        factory_kwargs={"in_features": 64, "hidden": 6, "activation": "tanh"},
        data="digits",
    )
    before = _sha(ckpt)
    out = tmp_path / "run"
    args = [
        "scan",
        str(ckpt),
        "--out",
        str(out),
        "--max-samples",
        "200",
        "--dtype",
        "float64",
        "--exact",
        "--no-surface",
        "--no-metrics",
        "--no-figures",
        "--quiet",
        "--trace-matvecs",
        "30",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert _sha(ckpt) == before
    s = json.loads((out / "summary.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["checkpoint_sha256"] == before
    assert s["model"]["num_params"] == sum(p.numel() for p in model.parameters())
    assert s["data"]["num_samples"] == 200
    for key in ("loss", "accuracy", "seed", "versions"):
        assert key in s
    h = s["hessian"]
    top = np.array(h["top_eigenvalues"])
    assert np.all(np.diff(top) <= 0)

    data = load_data("digits", max_samples=200)
    space = ParamSpace(ModelBundle.from_module(model, data, dtype=torch.float64))
    spec = exact_spectrum(space)
    np.testing.assert_allclose(top, spec[::-1][: len(top)], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        h["bottom_eigenvalues"], spec[: len(h["bottom_eigenvalues"])], rtol=1e-6, atol=1e-8
    )
    tr = h["trace"]
    assert abs(tr["mean"] - spec.sum()) <= 4 * tr["stderr"] + 1e-8
    assert h["exact_trace"] == __import__("pytest").approx(spec.sum(), rel=1e-10)
    assert s["loss"] == __import__("pytest").approx(space.evaluate()[0], rel=1e-12)

    # Rerunning without --resume is refused; with --resume nothing is recomputed.
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 2
    r3 = runner.invoke(app, args + ["--resume"])
    assert r3.exit_code == 0, r3.output
    s3 = json.loads((out / "summary.json").read_text())
    assert s3["hessian"] == s["hessian"]
    assert s3["timing"] == s["timing"]
