"""Every kind of bad input to `landscape scan` gets a one-line error, exit 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.io.save import save
from landscape.models import mlp

runner = CliRunner()
MLP = "landscape.models:mlp"


def _invoke(args: list[str]):
    result = runner.invoke(app, args)
    return result


def _assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    text = result.output.strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    assert "Traceback" not in text
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture()
def sd_path(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    p = tmp_path / "mlp.pt"
    torch.save(mlp(64, 8, 10).state_dict(), p)
    return p


def test_missing_file(tmp_path: Path) -> None:
    _assert_one_line_error(_invoke(["scan", str(tmp_path / "nope.pt")]), "does not exist")


def test_unknown_format(tmp_path: Path) -> None:
    p = tmp_path / "junk.bin"
    p.write_bytes(b"hello world, not a checkpoint")
    _assert_one_line_error(_invoke(["scan", str(p), "--data", "digits"]), "not a format")


def test_state_dict_without_model(sd_path: Path) -> None:
    _assert_one_line_error(_invoke(["scan", str(sd_path), "--data", "digits"]), "--model")


def test_factory_not_importable(sd_path: Path) -> None:
    r = _invoke(["scan", str(sd_path), "--model", "no_such_module_xyz:f", "--data", "digits"])
    _assert_one_line_error(r, "cannot import")


def test_keys_do_not_match(sd_path: Path) -> None:
    r = _invoke(
        [
            "scan",
            str(sd_path),
            "--model",
            "landscape.models:digits_cnn",
            "--data",
            "digits",
        ]
    )
    _assert_one_line_error(r, "keys do not match", "missing")


def test_pickle_needs_trust(tmp_path: Path) -> None:
    p = tmp_path / "whole.pt"
    torch.save(mlp(64, 8, 10), p)
    r = _invoke(["scan", str(p), "--data", "digits"])
    _assert_one_line_error(r, "--trust-checkpoint")


def test_data_shape_does_not_fit(sd_path: Path, tmp_path: Path) -> None:
    d = tmp_path / "d.npz"
    np.savez(d, x=np.zeros((20, 7), np.float32), y=np.zeros(20, np.int64))
    r = _invoke(
        [
            "scan",
            str(sd_path),
            "--model",
            MLP,
            "--model-kwargs",
            '{"in_features": 64, "hidden": 8}',
            "--data",
            str(d),
        ]
    )
    _assert_one_line_error(r, "does not fit")


def test_labels_out_of_range(sd_path: Path, tmp_path: Path) -> None:
    d = tmp_path / "d.npz"
    np.savez(d, x=np.zeros((20, 64), np.float32), y=np.full(20, 12, np.int64))
    r = _invoke(
        [
            "scan",
            str(sd_path),
            "--model",
            MLP,
            "--model-kwargs",
            '{"in_features": 64, "hidden": 8}',
            "--data",
            str(d),
        ]
    )
    _assert_one_line_error(r, "labels", "outputs")


def test_empty_data(sd_path: Path, tmp_path: Path) -> None:
    d = tmp_path / "d.npz"
    np.savez(d, x=np.zeros((0, 64), np.float32), y=np.zeros(0, np.int64))
    r = _invoke(
        [
            "scan",
            str(sd_path),
            "--model",
            MLP,
            "--model-kwargs",
            '{"in_features": 64, "hidden": 8}',
            "--data",
            str(d),
        ]
    )
    _assert_one_line_error(r, "empty")


def test_nan_weights(tmp_path: Path) -> None:
    m = mlp(64, 8, 10)
    with torch.no_grad():
        m[1].weight[0, 0] = float("nan")
    p = tmp_path / "nan.pt"
    torch.save(m.state_dict(), p)
    r = _invoke(
        [
            "scan",
            str(p),
            "--model",
            MLP,
            "--model-kwargs",
            '{"in_features": 64, "hidden": 8}',
            "--data",
            "digits",
        ]
    )
    _assert_one_line_error(r, "NaN/Inf", "1.weight")


def test_out_holding_a_different_run(tmp_path: Path) -> None:
    m = mlp(64, 8, 10)
    p = save(m, tmp_path / "b.pt", factory=MLP, factory_kwargs={"hidden": 8}, data="digits")
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"command": "scan", "checkpoint": "other.pt"}))
    r = _invoke(["scan", str(p), "--out", str(out), "--quiet"])
    _assert_one_line_error(r, "--resume", "--overwrite")
    r = _invoke(["scan", str(p), "--out", str(out), "--resume", "--quiet"])
    _assert_one_line_error(r, "different configuration")
    assert json.loads((out / "config.json").read_text())["checkpoint"] == "other.pt"


def test_out_not_a_run_is_left_alone(tmp_path: Path) -> None:
    m = mlp(64, 8, 10)
    p = save(m, tmp_path / "b.pt", factory=MLP, factory_kwargs={"hidden": 8}, data="digits")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    r = _invoke(["scan", str(p), "--out", str(out), "--quiet"])
    _assert_one_line_error(r, "not a landscape run")
    assert (out / "notes.txt").read_text() == "precious"


def test_bad_model_kwargs(sd_path: Path) -> None:
    r = _invoke(
        ["scan", str(sd_path), "--model", MLP, "--model-kwargs", "{width: 3", "--data", "digits"]
    )
    _assert_one_line_error(r, "JSON")


def test_bad_grid_and_preset(sd_path: Path) -> None:
    r = _invoke(["scan", str(sd_path), "--model", MLP, "--data", "digits", "--grid", "ax3"])
    _assert_one_line_error(r, "--grid")
    r = _invoke(["scan", str(sd_path), "--model", MLP, "--data", "digits", "--preset", "nope"])
    _assert_one_line_error(r, "unknown preset")


def test_unknown_data_and_loss(sd_path: Path) -> None:
    base = ["scan", str(sd_path), "--model", MLP, "--model-kwargs", '{"hidden": 8}']
    _assert_one_line_error(_invoke(base + ["--data", "imagenet"]), "unknown data")
    _assert_one_line_error(_invoke(base + ["--data", "digits", "--loss", "hinge"]), "unknown loss")
