"""Weight-spectra figures: non-empty PNGs; the ESD panel draws the fit, x_min and λ+."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from landscape.errors import ConfigError
from landscape.metrics.weight_spectra import weight_spectra
from landscape.viz.style import style_context
from landscape.viz.weight_plots import alpha_figure, esd_figure, weight_figures


@pytest.fixture(scope="module")
def spectra():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.Flatten(), nn.Linear(200, 120), nn.Linear(120, 5), nn.Linear(5, 1)
    )
    return weight_spectra(model)


def _gids(fig) -> set[str]:
    return {a.get_gid() for ax in fig.axes for a in ax.get_children() if a.get_gid()}


def test_weight_figures_write_non_empty_pngs(spectra, tmp_path: Path) -> None:
    paths = weight_figures(spectra, tmp_path / "figures", formats="png,svg", dpi=60)
    names = sorted(p.name for p in paths)
    assert names == ["weights_alpha.png", "weights_alpha.svg", "weights_esd.png", "weights_esd.svg"]
    for p in paths:
        assert p.stat().st_size > 1000, p
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_esd_panel_marks_the_tail_fit_xmin_and_mp_edge(spectra) -> None:
    with style_context("paper"):
        fig = esd_figure(spectra, layers=["2.weight"])
        ax = fig.axes[0]
        gids = _gids(fig)
        assert {"esd", "powerlaw", "xmin", "mp_edge"} <= gids
        lay = spectra.layer("2.weight")
        xmin_line = next(a for a in ax.get_lines() if a.get_gid() == "xmin")
        assert np.asarray(xmin_line.get_xdata())[0] == pytest.approx(lay.power_law.xmin)
        edge = next(a for a in ax.get_lines() if a.get_gid() == "mp_edge")
        assert np.asarray(edge.get_xdata())[0] == pytest.approx(lay.mp.lambda_plus)
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        fig = esd_figure(spectra, max_panels=2)
        assert sum(ax.axison for ax in fig.axes) == 2


def test_alpha_plot_marks_layers_without_a_fit(spectra) -> None:
    with style_context("paper"):
        fig = alpha_figure(spectra)
    gids = _gids(fig)
    assert {"alpha", "not_fit", "ht_band"} <= gids  # the 5x1 and 5x120 layers are not fit
    with pytest.raises(ConfigError):
        esd_figure(spectra, max_panels=0)
