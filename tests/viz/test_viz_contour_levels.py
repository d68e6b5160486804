"""Contour levels: log-spaced by default over more than two decades, linear otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import LogNorm, Normalize

from landscape.errors import ConfigError
from landscape.surface.result import Surface
from landscape.viz.style import style_context
from landscape.viz.surface_plots import (
    choose_levels,
    contour_figure,
    slices_figure,
    wants_log_levels,
)

A = np.linspace(-1.0, 1.0, 21)


def _basin(lo: float, hi: float) -> np.ndarray:
    """A bowl from ``lo`` at the centre to ``hi`` at the corners, rising exponentially."""
    r2 = np.add.outer(A**2, A**2) / 2.0
    return lo * (hi / lo) ** r2


def _surface(axes: tuple[np.ndarray, ...], loss: np.ndarray) -> Surface:
    return Surface(axes, loss, np.full(loss.shape, np.nan))


def _is_geometric(levels: np.ndarray) -> bool:
    ratios = levels[1:] / levels[:-1]
    return bool(np.allclose(ratios, ratios[0], rtol=1e-9)) and ratios[0] > 1


def _is_arithmetic(levels: np.ndarray) -> bool:
    steps = np.diff(levels)
    return bool(np.allclose(steps, steps[0], rtol=1e-9)) and steps[0] > 0


def test_wide_positive_range_gets_log_levels() -> None:
    z = _basin(0.03, 410.0)
    assert wants_log_levels(z)
    levels, log = choose_levels([z])
    assert log and _is_geometric(levels)
    assert levels[0] == pytest.approx(z.min()) and levels[-1] == pytest.approx(z.max())
    # the basin is resolved: several levels lie below 1% of the largest value
    assert int((levels < 0.01 * z.max()).sum()) >= 8


@pytest.mark.parametrize(
    ("lo", "hi"),
    [(1.0, 50.0), (0.03, 2.9), (2.30, 2.45)],  # under two decades
)
def test_narrow_range_keeps_linear_levels(lo: float, hi: float) -> None:
    z = _basin(lo, hi)
    assert not wants_log_levels(z)
    levels, log = choose_levels([z])
    assert not log and _is_arithmetic(levels)
    assert levels[0] <= z.min() and levels[-1] >= z.max()


def test_values_at_or_below_zero_keep_linear_levels() -> None:
    z = _basin(0.03, 410.0) - 0.05  # spans decades but dips below zero
    assert not wants_log_levels(z)
    assert not choose_levels([z])[1]
    with pytest.raises(ConfigError, match="--log-levels"):
        choose_levels([z], log_levels=True)


def test_nonfinite_points_are_ignored() -> None:
    z = _basin(0.03, 410.0)
    z[0, 0], z[0, 1] = np.nan, np.inf
    levels, log = choose_levels([z])
    assert log and np.all(np.isfinite(levels))


def test_explicit_choice_wins() -> None:
    wide, narrow = _basin(0.03, 410.0), _basin(1.0, 5.0)
    lv, log = choose_levels([wide], log_levels=False)
    assert not log and _is_arithmetic(lv)
    lv, log = choose_levels([narrow], log_levels=True)
    assert log and _is_geometric(lv)


def test_explicit_levels_are_used_as_given() -> None:
    z = _basin(0.03, 410.0)
    given = [0.1, 0.5, 1.0, 5.0, 50.0, 400.0]
    lv, log = choose_levels([z], levels=given)
    assert lv.tolist() == given and log  # positive, over more than two decades
    lv, log = choose_levels([z], levels=[0.0, 1.0, 2.0])
    assert lv.tolist() == [0.0, 1.0, 2.0] and not log
    with pytest.raises(ConfigError, match="increasing"):
        choose_levels([z], levels=[1.0, 0.5])
    with pytest.raises(ConfigError, match="positive"):
        choose_levels([z], levels=[0.0, 1.0], log_levels=True)


def _fill(fig):
    ax = fig.axes[0]
    sets = [c for c in ax.collections if hasattr(c, "levels") and c.filled]
    assert sets, "no filled contour set"
    return sets[0]


def test_contour_figure_default_follows_the_data() -> None:
    wide = _surface((A, A), _basin(0.03, 410.0))
    narrow = _surface((A, A), _basin(1.0, 5.0))
    with style_context("paper"):
        fw = _fill(contour_figure(wide))
        fn = _fill(contour_figure(narrow))
        fl = _fill(contour_figure(wide, log_levels=False))
        fe = _fill(contour_figure(wide, levels=[0.05, 1.0, 10.0, 100.0, 400.0]))
    assert isinstance(fw.norm, LogNorm) and _is_geometric(np.asarray(fw.levels))
    assert type(fn.norm) is Normalize and _is_arithmetic(np.asarray(fn.levels))
    assert type(fl.norm) is Normalize and _is_arithmetic(np.asarray(fl.levels))
    assert np.asarray(fe.levels).tolist() == [0.05, 1.0, 10.0, 100.0, 400.0]


def test_slices_figure_default_follows_the_data() -> None:
    a = np.linspace(-1.0, 1.0, 9)
    r2 = (a[:, None, None] ** 2 + a[None, :, None] ** 2 + a[None, None, :] ** 2) / 3.0
    vol = 0.03 * (410.0 / 0.03) ** r2
    surf = _surface((a, a, a), vol)
    with style_context("paper"):
        fill = _fill(slices_figure(surf))
    assert isinstance(fill.norm, LogNorm) and _is_geometric(np.asarray(fill.levels))
