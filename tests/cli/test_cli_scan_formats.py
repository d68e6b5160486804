"""`landscape scan` finishes on every checkpoint format; what does not apply is skipped.

A ``torch.export`` program has no ``nn.Linear`` modules (no relative flatness) and a
TorchScript module has no ``torch.func`` (no Fisher-Rao norm): those metrics are recorded
as skipped with a reason while every other stage and metric is computed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.io.presets import load_preset
from landscape.io.save import save
from landscape.metrics import METRICS
from landscape.models import mlp

runner = CliRunner()

MLP = "landscape.models:mlp"
MLP_KW = {"in_features": 64, "hidden": 8, "num_classes": 10}
STAGES = ("evaluate", "hessian", "metrics", "weights", "surface")
FORMATS = (
    "state_dict", "safetensors", "torchscript", "export", "landscape_bundle", "pickled_module"
)  # fmt: skip
#: Metrics that cannot apply to a format, and a word of the reason.
NOT_APPLICABLE = {
    "export": {"relative_flatness": "Linear"},
    "torchscript": {"fisher_rao_norm": "TorchScript"},
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Each format: the scan arguments that load it (file plus what it needs)."""
    d = tmp_path_factory.mktemp("formats")
    torch.manual_seed(0)
    model = mlp(**MLP_KW).eval()
    factory = ["--model", MLP, "--model-kwargs", json.dumps(MLP_KW)]
    torch.save(model.state_dict(), d / "sd.pt")
    save_file(model.state_dict(), str(d / "m.safetensors"))
    torch.jit.script(model).save(str(d / "ts.pt"))
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, str(d / "prog.pt2"))
    save(model, d / "bundle.pt", factory=MLP, factory_kwargs=MLP_KW, data="digits")
    torch.save(model, d / "whole.pt")
    return {
        "state_dict": [str(d / "sd.pt"), *factory],
        "safetensors": [str(d / "m.safetensors"), *factory],
        "torchscript": [str(d / "ts.pt")],
        "export": [str(d / "prog.pt2")],
        "landscape_bundle": [str(d / "bundle.pt")],
        "pickled_module": [str(d / "whole.pt"), "--trust-checkpoint"],
    }


def _scan(args: list[str], out: Path, *extra: str) -> dict[str, Any]:
    r = runner.invoke(
        app,
        ["scan", *args, "--data", "digits", "--max-samples", "120", "--out", str(out),
         "--quiet", *extra],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    return json.loads((out / "summary.json").read_text())


def _check(summary: dict[str, Any], fmt: str, names: list[str]) -> None:
    assert summary["model"]["format"] == fmt
    assert summary["model"]["num_params"] == 610
    assert list(summary["stages_done"]) == list(STAGES)
    assert isinstance(summary["loss"], float) and summary["test_loss"] is not None
    for stage in STAGES[1:]:
        section = summary[stage]
        assert isinstance(section, dict)
        if "skipped" in section and isinstance(section["skipped"], str):
            assert section["skipped"], stage  # a skipped stage says why
    assert summary["hessian"]["top_eigenvalues"]  # no format lacks the Hessian
    assert [lay["matrix_shape"] for lay in summary["weights"]["layers"]] == [[64, 8], [10, 8]]
    assert summary["surface"]["min_loss"] <= summary["surface"]["center_loss"] + 1e-6
    metrics = summary["metrics"]
    skipped = metrics["skipped"]
    expected = NOT_APPLICABLE.get(fmt, {})
    assert set(skipped) == set(expected), skipped
    for name, word in expected.items():
        assert word in skipped[name], skipped[name]
    for name in names:
        assert name in metrics or name in skipped, name  # computed or skipped with a reason


@pytest.mark.parametrize("fmt", FORMATS)
def test_quick_scan_of_every_format(
    fmt: str, checkpoints: dict[str, list[str]], tmp_path: Path
) -> None:
    summary = _scan(checkpoints[fmt], tmp_path / fmt, "--preset", "scan_quick", "--no-figures")
    _check(summary, fmt, list(load_preset("scan_quick", "scan")["metric_names"]))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_default_scan_of_every_format(
    fmt: str, checkpoints: dict[str, list[str]], tmp_path: Path
) -> None:
    summary = _scan(checkpoints[fmt], tmp_path / fmt)
    _check(summary, fmt, list(METRICS))
    assert summary["surface"]["grid"] == [21, 21]
    assert (tmp_path / fmt / "figures").is_dir()


def test_the_skip_is_printed(checkpoints: dict[str, list[str]], tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        ["scan", *checkpoints["export"], "--data", "digits", "--max-samples", "60", "--out",
         str(tmp_path / "p"), "--preset", "scan_quick", "--no-surface", "--no-figures",
         "--quiet"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "relative_flatness (skipped)" in r.output and "Linear" in r.output
