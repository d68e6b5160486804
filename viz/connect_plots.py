"""Figures of mode connectivity: loss and accuracy along each path against t."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from landscape.basins.connect import Connectivity, PathResult
from landscape.errors import ConfigError

_COLORS = {"linear": "#d62728", "aligned": "#1f77b4", "curve": "#2ca02c"}


def _label(name: str, path: PathResult, result: Connectivity | None) -> str:
    text = name
    if name == "curve" and result is not None and result.curve_config is not None:
        text = f"{result.curve_config.kind} curve"
    return f"{text} (B = {path.barrier:.3g})"


def plot_paths(
    paths: dict[str, PathResult],
    path: str | Path,
    *,
    result: Connectivity | None = None,
    style: str = "talk",
    title: str | None = None,
) -> list[Path]:
    """Loss (and accuracy, where defined) against t, one line per path, barrier marked.

    Args:
        paths: the paths by name (``linear``, ``aligned``, ``curve``, ...).
        path: output file; its suffix (``.png``, ``.pdf``, ``.svg``) picks the format.
        result: the connectivity result the paths came from (for the curve's kind).
        style: ``paper`` or ``talk``.
        title: figure title.

    Returns:
        The written file.

    Example:
        >>> import tempfile
        >>> t = np.linspace(0, 1, 5)
        >>> p = PathResult(t, np.array([0, 1, 2, 1, 0.0]), np.full(5, np.nan), 2.0, 0.5)
        >>> out = plot_paths({"linear": p}, Path(tempfile.mkdtemp()) / "c.png")
        >>> out[0].stat().st_size > 0
        True
    """
    from landscape.viz.style import check_formats, new_figure, save_figure, style_context, width

    if not paths:
        raise ConfigError("no paths to plot.")
    out = Path(path)
    fmt = check_formats(out.suffix.lstrip(".") or "png")
    has_acc = any(np.isfinite(p.acc).any() for p in paths.values())
    with style_context(style):
        w = width(style, 2 if has_acc else 1)
        fig = new_figure((w, w * (0.38 if has_acc else 0.7)))
        axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
        for name, p in paths.items():
            color = _COLORS.get(name)
            axes[0].plot(p.t, p.loss, "-o", ms=2.5, color=color, label=_label(name, p, result))
            if np.isfinite(p.barrier):
                i = int(np.argmin(np.abs(p.t - p.t_max)))
                axes[0].plot([p.t_max], [p.loss[i]], "*", ms=8, color=color)
            if has_acc:
                axes[1].plot(p.t, p.acc, "-o", ms=2.5, color=color, label=name)
        axes[0].set_xlabel("t")
        axes[0].set_ylabel("loss")
        axes[0].legend(loc="best")
        if has_acc:
            axes[1].set_xlabel("t")
            axes[1].set_ylabel("accuracy")
        if title:
            fig.suptitle(title)
        return save_figure(fig, out.with_suffix(""), fmt)


def plot_connectivity(result: Connectivity, path: str | Path, **kwargs: Any) -> list[Path]:
    """:func:`plot_paths` of every path of a :class:`Connectivity` result."""
    return plot_paths(result.paths(), path, result=result, **kwargs)


def plot_plane(run_dir: str | Path, path: str | Path, *, style: str = "talk") -> list[Path]:
    """Contour of the curve plane stored in a connect run, with A, B, θ_c and the curve.

    Args:
        run_dir: a ``landscape connect --plane`` run directory.
        path: output file; its suffix picks the format.
        style: ``paper`` or ``talk``.

    Returns:
        The written file.
    """
    from landscape.surface.result import Surface
    from landscape.viz.style import check_formats, save_figure, style_context
    from landscape.viz.surface_plots import contour_figure

    out = Path(path)
    fmt = check_formats(out.suffix.lstrip(".") or "png")
    surf = Surface.from_run(run_dir)
    with style_context(style):
        fig = contour_figure(surf, style=style)
        return save_figure(fig, out.with_suffix(""), fmt)


__all__ = ["plot_connectivity", "plot_paths", "plot_plane"]
