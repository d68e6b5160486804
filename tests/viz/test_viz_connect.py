"""The connectivity figure: loss and accuracy against t for every path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from landscape.basins.connect import Connectivity, CurveConfig, PathResult
from landscape.viz.connect_plots import plot_connectivity, plot_paths


def _path(height: float) -> PathResult:
    t = np.linspace(0, 1, 9)
    loss = 0.1 + height * np.sin(np.pi * t)
    return PathResult(t, loss, 0.9 - 0.5 * height * np.sin(np.pi * t), height, 0.5)


def test_connectivity_figure_is_a_png(tmp_path: Path) -> None:
    res = Connectivity(_path(1.0), _path(0.2), _path(0.05), curve_config=CurveConfig())
    (out,) = plot_connectivity(res, tmp_path / "figures" / "connect.png")
    data = out.read_bytes()
    assert out.name == "connect.png" and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.shape[1] > img.shape[0] > 50  # two panels side by side
    assert img[..., :3].std() > 0.05  # something was drawn


def test_regression_paths_have_one_panel(tmp_path: Path) -> None:
    p = _path(0.5)
    p = PathResult(p.t, p.loss, np.full_like(p.t, np.nan), p.barrier, p.t_max)
    (out,) = plot_paths({"linear": p}, tmp_path / "c.svg", style="paper")
    assert out.suffix == ".svg" and b"<svg" in out.read_bytes()[:500]
