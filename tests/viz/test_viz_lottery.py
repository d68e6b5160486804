"""The lottery figure: accuracy, barriers and λmax against the weights left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landscape.errors import ConfigError
from landscape.experiments.lottery import Interval, LevelSummary
from landscape.viz.lottery_plots import plot_lottery


def _levels(curvature: bool = True) -> list[LevelSummary]:
    rng = np.random.default_rng(0)
    out = []
    for r in range(6):
        acc = Interval.of(list(0.95 - 0.01 * r + 0.01 * rng.standard_normal(3)))
        bar = Interval.of(list(0.01 * r + 0.005 * rng.standard_normal(3)))
        lam = Interval.of(list(3.0 - 0.1 * r + 0.1 * rng.standard_normal(3)) if curvature else [])
        verdict = "same basin" if bar.high < 0.05 else "different basin"
        out.append(
            LevelSummary(r, 0.8**r, acc, acc, bar, bar, lam, lam, verdict, 0.05, verdict, 0.05)
        )
    return out


@pytest.mark.parametrize("curvature", [True, False])
def test_lottery_figure_is_a_png(tmp_path: Path, curvature: bool) -> None:
    (out,) = plot_lottery(_levels(curvature), tmp_path / "figures" / "lottery.png")
    data = out.read_bytes()
    assert out.name == "lottery.png" and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.shape[1] > 2 * img.shape[0] > 100  # panels side by side
    assert img[..., :3].std() > 0.05  # something was drawn


def test_lottery_figure_needs_levels(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no sparsity levels"):
        plot_lottery([], tmp_path / "x.png")
