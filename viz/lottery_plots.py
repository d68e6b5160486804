"""Figures of the lottery experiment: accuracy, barriers and curvature against sparsity."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from landscape.errors import ConfigError
from landscape.experiments.lottery import Interval, LevelSummary

_COLORS = {"acc": "#1f77b4", "copies": "#d62728", "dense": "#2ca02c", "curv": "#9467bd"}


def _band(ax: object, x: np.ndarray, ivs: Sequence[Interval], color: str, label: str) -> None:
    mean = np.array([iv.mean for iv in ivs], dtype=float)
    low = np.array([iv.low for iv in ivs], dtype=float)
    high = np.array([iv.high for iv in ivs], dtype=float)
    ax.plot(x, mean, "-o", ms=3, color=color, label=label)  # type: ignore[attr-defined]
    ok = np.isfinite(low) & np.isfinite(high)
    if ok.any():
        ax.fill_between(x[ok], low[ok], high[ok], color=color, alpha=0.2, lw=0)  # type: ignore[attr-defined]


def plot_lottery(
    levels: Sequence[LevelSummary],
    path: str | Path,
    *,
    style: str = "talk",
    title: str | None = None,
) -> list[Path]:
    """Test accuracy, barriers and restricted λ_max against the weights left (log x).

    The x axis is the percentage of prunable weights remaining on a log scale, decreasing
    to the right (sparser to the right); bands are the 95 % t-intervals across seeds. The
    barrier panel draws the instability barrier (two copies), the ticket–dense barrier,
    and the verdict cutoff as a dashed line.

    Args:
        levels: per-level summaries (:attr:`LotteryResult.levels`).
        path: output file; its suffix (``.png``, ``.pdf``, ``.svg``) picks the format.
        style: ``paper`` or ``talk``.
        title: figure title.

    Returns:
        The written file.

    Example:
        >>> import tempfile
        >>> from landscape.experiments.lottery import Interval, LevelSummary
        >>> iv = Interval.of([0.1, 0.2])
        >>> lv = [LevelSummary(r, 0.8**r, iv, iv, iv, iv, iv, iv, "same basin", 0.05,
        ...                    "same basin", 0.05) for r in range(3)]
        >>> out = plot_lottery(lv, Path(tempfile.mkdtemp()) / "lottery.png")
        >>> out[0].stat().st_size > 0
        True
    """
    from landscape.viz.style import check_formats, new_figure, save_figure, style_context, width

    if not levels:
        raise ConfigError("no sparsity levels to plot.")
    out = Path(path)
    fmt = check_formats(out.suffix.lstrip(".") or "png")
    x = 100 * np.array([lv.remaining for lv in levels], dtype=float)
    has_curv = any(np.isfinite(lv.lambda_max.mean) for lv in levels)
    n = 3 if has_curv else 2
    with style_context(style):
        w = width(style, 2)
        fig = new_figure((w, w * 0.34))
        axes = fig.subplots(1, n, squeeze=False)[0]
        _band(axes[0], x, [lv.test_acc for lv in levels], _COLORS["acc"], "ticket")
        axes[0].set_ylabel("test accuracy")
        _band(axes[1], x, [lv.instability for lv in levels], _COLORS["copies"], "two copies")
        sparse = [lv for lv in levels if lv.level > 0]
        if sparse:
            xs = 100 * np.array([lv.remaining for lv in sparse], dtype=float)
            _band(axes[1], xs, [lv.dense_barrier for lv in sparse], _COLORS["dense"], "vs dense")
        cut = levels[0].stability_cutoff
        axes[1].axhline(cut, ls="--", lw=1, color="0.4", label=f"cutoff {cut:.3g}")
        axes[1].axhline(0.0, lw=0.5, color="0.7")
        axes[1].set_ylabel("barrier (train loss)")
        axes[1].legend(loc="best")
        if has_curv:
            _band(axes[2], x, [lv.lambda_max for lv in levels], _COLORS["curv"], "λmax")
            axes[2].set_ylabel("λmax, unpruned Hessian")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlim(x.max() * 1.05, x.min() / 1.05)
            ax.set_xlabel("weights left (%)")
            ticks = x if len(x) <= 8 else x[:: max(1, len(x) // 6)]
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{v:.3g}" for v in ticks])
            ax.minorticks_off()
        if title:
            fig.suptitle(title)
        return save_figure(fig, out.with_suffix(""), fmt)


__all__ = ["plot_lottery"]
