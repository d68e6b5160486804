"""`landscape metrics` through typer's CliRunner: table, summary.json, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.io.rundir import RunDir
from landscape.io.save import save
from landscape.models import mlp

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "relu.pt"
    kwargs = {"in_features": 64, "hidden": 8, "num_classes": 10}
    return save(
        mlp(**kwargs),
        path,
        factory="landscape.models:mlp",
        factory_kwargs=kwargs,
        data="digits",
    )


def _args(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["metrics", str(ckpt), "--max-samples", "60", "--out", str(out), "--quiet", *extra]


def test_metrics_command_prints_table_and_writes_summary(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = runner.invoke(
        app,
        _args(
            ckpt,
            out,
            "-m",
            "loss",
            "-m",
            "lambda_max",
            "-m",
            "adaptive_sharpness",
            "-m",
            "generalization_gap",
            "--radius",
            "0.1",
        ),
    )
    assert r.exit_code == 0, r.output
    for word in ("metric", "lambda_max", "adaptive_sharpness", "invariant?", "canonicalized: yes"):
        assert word in r.output, word
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]
    assert m["canonicalized"] is True and m["invariant"]["lambda_max"] is True
    assert m["settings"]["radius"] == 0.1
    assert summary["model"]["num_params"] == 64 * 8 + 8 + 8 * 10 + 10
    assert summary["loss"] == m["loss"] and "generalization_gap" in summary
    assert (out / "config.json").is_file()


def test_metrics_command_adds_to_an_existing_run(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "scan"
    run = RunDir.create(out, {"command": "scan"})
    run.update_summary({"name": "earlier", "loss": 1.0})
    r = runner.invoke(app, _args(ckpt, out, "-m", "loss", "--no-canonicalize"))
    assert r.exit_code == 0, r.output
    assert "canonicalized: no" in r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["name"] == "earlier" and s["loss"] == 1.0  # the scan's values are kept
    assert s["metrics"]["canonicalized"] is False
    assert json.loads((out / "config.json").read_text())["command"] == "scan"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--radius", "0"], "--radius must be a positive number"),
        (["--sigma", "-1"], "--sigma must be a positive number"),
        (["-m", "sharpest"], "unknown metric 'sharpest'"),
    ],
)
def test_metrics_command_bad_input(ckpt: Path, tmp_path: Path, extra, needle) -> None:
    r = runner.invoke(app, _args(ckpt, tmp_path / "bad", *extra))
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.output
    assert not (tmp_path / "bad").exists()


def test_metrics_command_forced_canonicalization_on_tanh(tmp_path: Path) -> None:
    torch.manual_seed(0)
    kwargs = {"in_features": 64, "hidden": 4, "num_classes": 10, "activation": "tanh"}
    p = save(
        mlp(**kwargs),
        tmp_path / "tanh.pt",
        factory="landscape.models:mlp",
        factory_kwargs=kwargs,
        data="digits",
    )
    r = runner.invoke(app, _args(p, tmp_path / "t", "-m", "loss", "--canonicalize"))
    assert r.exit_code == 2 and "cannot canonicalize" in r.output and "Tanh" in r.output
    r = runner.invoke(app, _args(p, tmp_path / "t2", "-m", "loss"))
    assert r.exit_code == 0 and "canonicalized: no" in r.output and "warning" in r.output
