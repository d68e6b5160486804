"""The scan's `weights` stage: written with its arrays, skipped when it does not apply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from landscape.io import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.io.rundir import RunDir
from landscape.metrics.weight_spectra import weight_spectra
from landscape.pipelines.scan import ScanConfig, run_scan

FAST = {"surface": False, "metrics": False, "slq_runs": 1, "trace_matvecs": 9}


class Scale(nn.Module):
    """A model with no weight matrix: y = x ⊙ s."""

    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.ones(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :10] * self.s


def _bundle(model: nn.Module) -> ModelBundle:
    return ModelBundle.from_module(model, load_data("synthetic", max_samples=64))


def test_scan_writes_the_weights_section_and_figures(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 40), nn.ReLU(), nn.Linear(40, 3))
    run = RunDir.create(tmp_path / "r", {})
    s = run_scan(_bundle(model), run, ScanConfig(**FAST, frobenius_probes=3))
    assert "weights" in s["stages_done"]
    w = s["weights"]
    direct = weight_spectra(model)
    assert [lay["name"] for lay in w["layers"]] == ["0.weight", "2.weight"]
    assert w["layers"][0]["alpha"] == direct.layers[0].alpha
    ds = run.read_arrays()
    np.testing.assert_allclose(ds["weights_esd"].values, direct.to_arrays()["weights_esd"])
    from landscape.viz.run_figures import plan

    names = [step.name for step in plan(run.path, formats="png", render=False)]
    assert "weight spectra figures" in names
    from landscape.viz.weight_plots import run_weight_figures

    paths = run_weight_figures(run.path, formats="png", dpi=40)
    assert [p.name for p in paths] == ["weights_esd.png", "weights_alpha.png"]


def test_scan_skips_weights_without_a_matrix_and_on_request(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "a", {})
    s = run_scan(_bundle(Scale()), run, ScanConfig(**FAST, frobenius_probes=3, top_k=2))
    assert "no weight matrix" in s["weights"]["skipped"]
    run = RunDir.create(tmp_path / "b", {})
    s = run_scan(
        _bundle(nn.Linear(10, 3)), run, ScanConfig(**FAST, frobenius_probes=3, weights=False)
    )
    assert "weights" not in s and "weights" not in s["stages_done"]
