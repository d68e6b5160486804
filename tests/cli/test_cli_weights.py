"""`landscape weights` through typer's CliRunner: table, run directory, figures, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    path = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    kwargs = {"in_features": 64, "hidden": 48, "num_classes": 8}
    return save(
        mlp(**kwargs),
        path,
        factory="landscape.models:mlp",
        factory_kwargs=kwargs,
        data="digits",
    )


def test_weights_command_prints_table_and_writes_run(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = runner.invoke(app, ["weights", str(ckpt), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    for word in ("layer", "alpha", "KS", "srank", "spikes", "traps", "not fit"):
        assert word in r.output, word
    summary = json.loads((out / "summary.json").read_text())
    w = summary["weights"]
    names = [lay["name"] for lay in w["layers"]]
    assert len(names) == 2 and all(n.endswith("weight") for n in names)
    first, last = w["layers"]
    assert first["matrix_shape"] == [64, 48] and first["num_eigenvalues"] == 48
    assert isinstance(first["alpha"], float) and first["power_law"]["n_tail"] >= 10
    assert last["alpha"] == "nan" and "fewer than the 10" in last["power_law"]["note"]
    assert summary["model"]["num_params"] == 64 * 48 + 48 + 48 * 8 + 8
    assert json.loads((out / "config.json").read_text())["command"] == "weights"
    ds = RunDir(out).read_arrays()
    assert ds["weights_esd"].size == 48 + 8
    assert np.bincount(ds["weights_esd_layer"].values).tolist() == [48, 8]
    for name in ("weights_esd.png", "weights_alpha.png"):
        assert (out / "figures" / name).stat().st_size > 1000


def test_weights_command_adds_to_an_existing_run(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "scan"
    RunDir.create(out, {"command": "scan"}).update_summary({"name": "earlier", "loss": 1.0})
    r = runner.invoke(
        app,
        ["weights", str(ckpt), "--out", str(out), "--no-figures", "--no-traps", "--params", "1.*"],
    )
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["name"] == "earlier" and s["loss"] == 1.0
    assert s["weights"]["num_layers"] == 1 and s["weights"]["layers"][0]["traps"] is None
    assert not (out / "figures").exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--min-tail", "1"], "--min-tail must be at least 2"),
        (["--format", "gif"], "--format 'gif' is not supported"),
        (["--params", "nothing.*"], "no weight matrix matching nothing.*"),
        (["--dtype", "float16x"], "unknown --dtype"),
        (["--dtype", "bfloat16"], "--dtype bfloat16 cannot run an SVD"),
    ],
)
def test_weights_command_bad_input(ckpt: Path, tmp_path: Path, extra, needle) -> None:
    r = runner.invoke(app, ["weights", str(ckpt), "--out", str(tmp_path / "bad"), *extra])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.output
    assert not (tmp_path / "bad").exists()


def test_weights_command_missing_checkpoint(tmp_path: Path) -> None:
    r = runner.invoke(app, ["weights", str(tmp_path / "nope.pt")])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "does not exist" in r.output


def test_render_redraws_a_weights_run(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "w"
    r = runner.invoke(app, ["weights", str(ckpt), "--out", str(out), "-q", "--no-figures"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["render", str(out), "--format", "png"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "weights_alpha.png",
        "weights_esd.png",
    ]
