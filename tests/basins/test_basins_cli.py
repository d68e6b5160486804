"""`landscape basins` on a saved checkpoint: the summary holds the measures' real values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from landscape.basins.jacobian_rank import functional_dimension
from landscape.cli.app import app
from landscape.engine import ParamSpace
from landscape.experiments.compression import init_mlp
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.io.save import save
from landscape.models import mlp

runner = CliRunner()


def _checkpoint(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    model = init_mlp(mlp(64, 8, 10), seed=0)
    ckpt = save(
        model,
        tmp_path / "m.pt",
        factory="landscape.models:mlp",
        factory_kwargs={"in_features": 64, "hidden": 8},
        data="digits",
    )
    return ckpt, model


def test_basins_command_writes_measures(tmp_path: Path) -> None:
    ckpt, model = _checkpoint(tmp_path)
    out = tmp_path / "run"
    args = [
        "basins",
        str(ckpt),
        "--out",
        str(out),
        "--max-samples",
        "120",
        "--quiet",
        "-m",
        "jacobian",
        "-m",
        "compress",
        "-m",
        "volume",
        "-m",
        "mass",
        "-m",
        "llc",
        "--rays",
        "6",
        "--chains",
        "2",
        "--draws",
        "20",
        "--jacobian-samples",
        "30",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "functional dimension" in r.output and "log basin volume" in r.output
    assert "log prior mass" in r.output
    s = json.loads((out / "summary.json").read_text())
    b = s["basins"]
    assert set(b) >= {"jacobian", "compress", "volume", "mass", "llc", "config"}
    assert "curvature" not in b
    data = load_data("digits", max_samples=120)
    space = ParamSpace(ModelBundle.from_module(model, data))
    fd = functional_dimension(space, max_samples=30)
    j = b["jacobian"]
    assert j["rank"] == fd.rank and j["dim"] == space.dim == fd.dim
    assert j["num_samples"] == 30 and j["deficit"] == space.dim - j["rank"]
    # 30 inputs × 9 centred logits < d: no plateau can be shown, and the output says so
    assert not j["plateau"] and any("no plateau" in n for n in j["notes"])
    assert b["mass"]["num_rays"] == 6 and b["mass"]["definition"] == "kl"
    lo, hi = b["mass"]["ci"]
    assert lo <= b["mass"]["log_mass"] <= hi and b["mass"]["log_volume"] is None
    assert set(b["volume"]) == {"none", "eigen"}
    for v in b["volume"].values():
        assert v["ci"][0] <= v["log_volume"] <= v["ci"][1] and v["num_rays"] == 6
    assert b["llc"]["config"]["draws"] == 20 and len(b["llc"]["per_chain"]) == 2
    assert 0.0 <= b["compress"]["prunable_fraction"] <= 1.0
    assert abs(s["loss"] - space.evaluate()[0]) < 1e-6
    # a second measure into the same run directory is merged in
    r = runner.invoke(
        app,
        [
            "basins",
            str(ckpt),
            "--out",
            str(out),
            "--max-samples",
            "120",
            "--quiet",
            "-m",
            "curvature",
        ],
    )
    assert r.exit_code == 0, r.output
    b2 = json.loads((out / "summary.json").read_text())["basins"]
    assert b2["curvature"]["lambda_max"] > 0 and "jacobian" in b2


def test_basins_command_bad_input(tmp_path: Path) -> None:
    ckpt, _ = _checkpoint(tmp_path)
    r = runner.invoke(app, ["basins", str(ckpt), "-m", "volumes", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "unknown measure 'volumes'" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["basins", str(tmp_path / "missing.pt")])
    assert r.exit_code == 2 and "Traceback" not in r.output


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_basins_command_on_torchscript(tmp_path: Path) -> None:
    model = init_mlp(mlp(64, 8, 10), seed=1)
    path = tmp_path / "m.ts.pt"
    torch.jit.script(model).save(str(path))
    out = tmp_path / "o"
    r = runner.invoke(
        app,
        [
            "basins",
            str(path),
            "--data",
            "digits",
            "--max-samples",
            "100",
            "--out",
            str(out),
            "--quiet",
            "-m",
            "jacobian",
            "-m",
            "compress",
            "-m",
            "volume",
            "--rays",
            "4",
        ],
    )
    assert r.exit_code == 0, r.output
    b = json.loads((out / "summary.json").read_text())["basins"]
    assert "jacobian" in b["skipped"] and "jacobian" not in b
    # the TorchScript path gives the same compressibility as the eager model
    space = ParamSpace(ModelBundle.from_module(model, load_data("digits", max_samples=100)))
    from landscape.basins.compress import compressibility

    assert b["compress"]["prunable_fraction"] == compressibility(space).prunable_fraction
