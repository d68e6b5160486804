"""`landscape connect` end to end on two small trained checkpoints, and a bad-input case."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from landscape.basins.connect import linear_path
from landscape.cli.app import app
from landscape.engine import ParamSpace
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.io.save import save
from landscape.models import mlp
from landscape.training import TrainConfig, train

runner = CliRunner()
MLP = "landscape.models:mlp"


def _checkpoint(tmp: Path, name: str, seed: int, hidden: int = 8) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(seed)
    model = mlp(64, hidden, 10)
    train(model, load_data("digits", max_samples=150), TrainConfig(epochs=8, seed=seed))
    kw = {"in_features": 64, "hidden": hidden, "num_classes": 10}
    return save(model, tmp / name, factory=MLP, factory_kwargs=kw, data="digits"), model


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory) -> tuple[Path, Path, torch.nn.Module]:
    tmp = tmp_path_factory.mktemp("ckpts")
    a, model_a = _checkpoint(tmp, "a.pt", 0)
    b, _ = _checkpoint(tmp, "b.pt", 1)
    return a, b, model_a


def test_connect_writes_barriers_of_every_path(two_checkpoints, tmp_path: Path) -> None:
    a, b, model_a = two_checkpoints
    sha = hashlib.sha256(a.read_bytes()).hexdigest()
    out = tmp_path / "run"
    args = ["connect", str(a), str(b), "--max-samples", "150", "--points", "9", "--quiet"]
    args += ["--curve", "bezier", "--curve-steps", "60", "--curve-lr", "0.05", "--out", str(out)]
    args += ["--plane", "5x4"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert hashlib.sha256(a.read_bytes()).hexdigest() == sha
    c = json.loads((out / "summary.json").read_text())["connect"]
    for name in ("linear", "aligned", "curve"):
        assert len(c[name]["loss"]) == 9 and len(c[name]["acc"]) == 9
        assert 0.0 <= c[name]["t_max"] <= 1.0
        loss = np.array(c[name]["loss"])
        assert c[name]["barrier"] == pytest.approx(loss.max() - (loss[0] + loss[-1]) / 2)
    assert c["linear"]["barrier"] > c["aligned"]["barrier"]
    assert c["curve"]["kind"] == "bezier" and c["curve"]["steps"] == 60
    # the linear path's numbers are the library's on the same data
    data = load_data("digits", max_samples=150)
    sp = ParamSpace(ModelBundle.from_module(model_a, data))
    theta_b = ParamSpace(ModelBundle.from_module(_load(b), data)).theta0
    ref = linear_path(sp, sp.theta0, theta_b, points=9)
    np.testing.assert_allclose(c["linear"]["loss"], ref.loss, rtol=1e-5)
    assert (out / "figures" / "connect.png").stat().st_size > 0
    assert (out / "figures" / "connect_plane.png").stat().st_size > 0
    assert c["plane"]["grid"] == [5, 4] and c["plane"]["anchors"]["a"] == [0.0, 0.0]
    assert (out / "curve_control.pt").is_file() and (out / "results.nc").is_file()
    assert "linear" in r.output and "aligned" in r.output and "barrier" in r.output


def _load(path: Path) -> torch.nn.Module:
    from landscape.io.checkpoint import load_model

    return load_model(path).module


def test_mismatched_architectures_are_one_line_errors(two_checkpoints, tmp_path: Path) -> None:
    a, _, _ = two_checkpoints
    other, _ = _checkpoint(tmp_path, "wide.pt", 2, hidden=12)
    r = runner.invoke(app, ["connect", str(a), str(other), "--max-samples", "50", "--quiet"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "different architectures" in lines[0] and "a.pt" in lines[0]
    assert "Traceback" not in r.output
    bad = runner.invoke(app, ["connect", str(a), str(a), "--curve", "spline", "--quiet"])
    assert bad.exit_code == 2 and "unknown curve" in bad.output
