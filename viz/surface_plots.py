"""Matplotlib figures of loss surfaces: 1D curves, 2D contours, 3D orthogonal slices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import ConfigError
from landscape.io.runs import open_run
from landscape.surface.result import Surface
from landscape.viz.labels import axis_label
from landscape.viz.style import check_formats, new_figure, save_figure, style_context, width

LABELS = {
    "train_loss": "train loss",
    "test_loss": "test loss",
    "train_accuracy": "train accuracy",
    "test_accuracy": "test accuracy",
}
CENTER_LABEL = r"$\theta^*$ (centre)"
_ANCHOR_NAMES = (r"$\theta_0$", r"$\theta_1$", r"$\theta_2$", r"$\theta_3$")


# -- levels -------------------------------------------------------------------
def finite_range(*arrays: np.ndarray) -> tuple[float, float] | None:
    """Smallest and largest finite value over ``arrays`` (None when nothing is finite).

    Example:
        >>> finite_range(np.array([np.nan, 1.0, 3.0]), np.array([np.inf, 2.0]))
        (1.0, 3.0)
    """
    vals = [a[np.isfinite(a)] for a in arrays]
    vals = [v for v in vals if v.size]
    if not vals:
        return None
    lo = min(float(v.min()) for v in vals)
    hi = max(float(v.max()) for v in vals)
    return lo, hi


def contour_levels(lo: float, hi: float, *, log: bool = False, n: int = 21) -> np.ndarray:
    """Filled-contour levels covering ``[lo, hi]``: round numbers, or log-spaced.

    Args:
        lo: smallest value to cover.
        hi: largest value to cover.
        log: geometric spacing (needs ``lo > 0``).
        n: about how many levels.

    Example:
        >>> contour_levels(0.0, 1.0, n=11).tolist()[:3]
        [0.0, 0.1, 0.2]
        >>> contour_levels(0.01, 100.0, log=True, n=5).round(6).tolist()
        [0.01, 0.1, 1.0, 10.0, 100.0]
    """
    if log:
        if lo <= 0:
            raise ConfigError(
                f"--log-levels needs positive losses, the smallest is {lo:.3g}; drop --log-levels."
            )
        if hi <= lo:
            hi = lo * 1.01
        return np.geomspace(lo, hi, n)
    from matplotlib.ticker import MaxNLocator

    if hi - lo <= 1e-12 * max(1.0, abs(lo)):
        pad = max(abs(lo) * 1e-3, 1e-9)
        lo, hi = lo - pad, hi + pad
    levels = MaxNLocator(nbins=n - 1, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    levels = levels[
        (levels >= lo - (levels[1] - levels[0])) & (levels <= hi + (levels[1] - levels[0]))
    ]
    return np.asarray(levels, dtype=float)


#: Data whose finite values are positive and span more than this many decades get
#: log-spaced contour levels by default (a basin at 0.03 in a grid reaching 410 is
#: otherwise one flat colour).
AUTO_LOG_DECADES = 2.0


def wants_log_levels(*arrays: np.ndarray) -> bool:
    """Whether log-spaced levels suit ``arrays`` by default.

    True when every finite value is positive and the largest is more than
    ``10 ** AUTO_LOG_DECADES`` times the smallest; values ≤ 0 (a log scale cannot show
    them) or a narrower range keep linear levels.

    Example:
        >>> wants_log_levels(np.array([0.03, 1.0, 410.0])), wants_log_levels(np.array([1.0, 9.0]))
        (True, False)
    """
    rng = finite_range(*(np.asarray(a, dtype=float) for a in arrays))
    if rng is None or rng[0] <= 0:
        return False
    return bool(np.log10(rng[1] / rng[0]) > AUTO_LOG_DECADES)


def choose_levels(
    arrays: Sequence[np.ndarray],
    *,
    log_levels: bool | None = None,
    levels: Sequence[float] | None = None,
) -> tuple[np.ndarray, bool]:
    """Contour levels and whether the colour scale is logarithmic, for ``arrays``.

    Args:
        arrays: the values the levels must cover (shared scale across them).
        log_levels: ``True`` log-spaced, ``False`` linear, ``None`` (default) log-spaced
            when :func:`wants_log_levels` says so (positive values over more than two
            decades), else linear.
        levels: explicit levels (increasing); used as given. The colour scale is log when
            ``log_levels`` is True, or when it is None and the levels are positive and span
            more than two decades.

    Returns:
        ``(levels, log)``.

    Raises:
        ConfigError: ``log_levels=True`` with a value ≤ 0, or fewer than two
            explicit levels, or explicit levels that do not increase.

    Example:
        >>> lv, log = choose_levels([np.array([0.03, 2.0, 410.0])])
        >>> log, round(float(lv[0]), 2), round(float(lv[-1]), 1)
        (True, 0.03, 410.0)
        >>> choose_levels([np.array([0.03, 2.0, 410.0])], log_levels=False)[1]
        False
    """
    if levels is not None:
        lv = np.asarray(levels, dtype=float).ravel()
        if lv.size < 2 or not np.all(np.isfinite(lv)) or np.any(np.diff(lv) <= 0):
            raise ConfigError(
                f"contour levels {lv.tolist()} must be at least two increasing finite numbers."
            )
        log = wants_log_levels(lv) if log_levels is None else bool(log_levels)
        if log and lv[0] <= 0:
            raise ConfigError(
                f"log-scaled contour levels must be positive, the first is {lv[0]:.3g};"
                " give positive levels or drop --log-levels."
            )
        return lv, log
    rng = finite_range(*arrays)
    lo, hi = rng if rng is not None else (0.0, 1.0)
    log = wants_log_levels(*arrays) if log_levels is None else bool(log_levels)
    return contour_levels(lo, hi, log=log), log  # log with lo ≤ 0: the one-line error


def _norm(levels: np.ndarray, log: bool) -> Any:
    from matplotlib.colors import LogNorm, Normalize

    if log:
        return LogNorm(vmin=float(levels[0]), vmax=float(levels[-1]))
    return Normalize(vmin=float(levels[0]), vmax=float(levels[-1]))


# -- 2D contour -----------------------------------------------------------------
def _marker_sizes() -> dict[str, float]:
    import matplotlib

    ms = float(matplotlib.rcParams["lines.markersize"])
    return {"min": ms * 2.2, "center": ms * 1.05, "anchor": ms * 1.2, "traj": ms * 0.55}


def draw_contour(
    ax: Any,
    surf: Surface,
    var: str,
    *,
    levels: np.ndarray,
    log: bool,
    cmap: str = "viridis",
    plane: tuple[int, int] = (0, 1),
    values: np.ndarray | None = None,
    overlays: bool = True,
    min_label: str = "minimum",
) -> Any:
    """Draw filled and line contours of ``var`` on ``ax`` with the markers; return the fill.

    Args:
        ax: matplotlib axes.
        surf: the surface.
        var: variable name (``train_loss``, ...).
        levels: contour levels (from :func:`contour_levels`).
        log: log colour scale.
        cmap: matplotlib colormap name.
        plane: which two axes span the picture (for slices of 3D grids).
        values: a 2D array over ``plane`` to draw instead of ``surf.variables[var]``.
        overlays: draw trajectory and anchors (2D surfaces only).
        min_label: legend text of the minimum marker.
    """
    import matplotlib
    from matplotlib.patches import Rectangle

    i, j = plane
    x, y = surf.axes[i], surf.axes[j]
    z = surf.variables[var] if values is None else values
    z = np.asarray(z, dtype=float)
    masked = np.ma.masked_invalid(z.T)
    if log:
        masked = np.ma.masked_less_equal(masked, 0.0)
    norm = _norm(levels, log)
    sizes = _marker_sizes()
    lw = float(matplotlib.rcParams["contour.linewidth"])
    if np.ma.getmaskarray(masked).any():
        ax.add_patch(
            Rectangle(
                (x[0], y[0]),
                x[-1] - x[0],
                y[-1] - y[0],
                facecolor="0.85",
                edgecolor="0.55",
                hatch="////",
                linewidth=0,
                zorder=0,
                gid="nonfinite",
                label="non-finite",
            )
        )
    fill = ax.contourf(
        x, y, masked, levels=levels, cmap=cmap, norm=norm, extend="neither", zorder=1
    )
    line_levels = levels[::2] if len(levels) > 12 else levels
    ax.contour(x, y, masked, levels=line_levels, colors="k", linewidths=lw, alpha=0.45, zorder=2)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    ax.set_xlabel(axis_label(surf, i))
    ax.set_ylabel(axis_label(surf, j))
    if np.isclose(x[-1] - x[0], y[-1] - y[0], rtol=1e-6):
        ax.set_aspect("equal")

    if overlays and surf.trajectory is not None and surf.trajectory.shape[1] >= 2:
        tr = surf.trajectory
        ax.plot(
            tr[:, i],
            tr[:, j],
            color="#d62728",
            marker="o",
            markersize=sizes["traj"],
            linewidth=0.9 * float(matplotlib.rcParams["lines.linewidth"]),
            zorder=4,
            gid="trajectory",
            label="trajectory",
        )
        ax.plot(
            tr[:1, i],
            tr[:1, j],
            linestyle="none",
            marker="s",
            markersize=sizes["anchor"],
            markerfacecolor="#d62728",
            markeredgecolor="white",
            markeredgewidth=0.5,
            zorder=5,
            gid="trajectory_start",
            label="start",
        )
    pts = surf.anchor_points()
    if overlays and pts is not None and pts.shape[1] > max(i, j):
        ax.plot(
            pts[:, i],
            pts[:, j],
            linestyle="none",
            marker="D",
            markersize=sizes["anchor"],
            markerfacecolor="white",
            markeredgecolor="black",
            markeredgewidth=0.6,
            zorder=5,
            gid="anchors",
            label="anchors",
        )
        for k, (px, py) in enumerate(zip(pts[:, i], pts[:, j], strict=True)):
            ax.annotate(
                _ANCHOR_NAMES[k % len(_ANCHOR_NAMES)],
                (px, py),
                xytext=(4, 4),
                textcoords="offset points",
                color="white",
                fontsize="small",
                zorder=6,
                path_effects=_outline(),
            )
    if surf.contains_center():
        ax.plot(
            [0.0],
            [0.0],
            linestyle="none",
            marker="o",
            markersize=sizes["center"],
            markerfacecolor="white",
            markeredgecolor="black",
            markeredgewidth=0.7,
            zorder=8,
            gid="center",
            label=CENTER_LABEL,
        )
    finite = np.isfinite(z)
    if finite.any():
        idx = np.unravel_index(int(np.argmin(np.where(finite, z, np.inf))), z.shape)
        ax.plot(
            [x[idx[0]]],
            [y[idx[1]]],
            linestyle="none",
            marker="*",
            markersize=sizes["min"],
            markerfacecolor="#ffd92f",
            markeredgecolor="black",
            markeredgewidth=0.6,
            zorder=7,
            gid="minimum",
            label=f"{min_label} ({_fmt(float(z[idx]))})",
        )
    return fill


def _outline() -> list[Any]:
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=1.5, foreground="black")]


def _fmt(v: float) -> str:
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:.4g}"
    return f"{v:.3e}"


def _log_tick(v: float, _pos: Any = None) -> str:
    if v <= 0:
        return ""
    k = np.log10(v)
    if 1e-3 <= v < 1e4:
        return f"{v:g}"
    if abs(k - round(k)) < 1e-9:
        return rf"$10^{{{int(round(k))}}}$"
    return f"{v:.0e}"


def _colorbar(fig: Any, fill: Any, ax: Any, label: str, log: bool) -> Any:
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    cb = fig.colorbar(fill, ax=ax, fraction=0.06, pad=0.03, aspect=25)
    cb.set_label(label)
    if log:
        lo, hi = fill.norm.vmin, fill.norm.vmax
        subs = (1.0, 2.0, 5.0) if np.log10(hi / lo) <= 3 else (1.0,)
        cb.ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
        cb.ax.yaxis.set_major_formatter(FuncFormatter(_log_tick))
        cb.ax.yaxis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10)))
        cb.ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        cb.ax.yaxis.set_major_locator(MaxNLocator(6))
    cb.outline.set_linewidth(0.5)
    cb.ax.tick_params(which="both", width=0.5)
    return cb


def _legend(fig: Any, axes: list[Any]) -> None:
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            # per-panel minima differ: name the marker without a value
            key = lab.split(" (")[0] if "minimum" in lab and len(axes) > 1 else lab
            if key not in handles:
                handles[key] = (h, key)
    if handles:
        hs = [v[0] for v in handles.values()]
        ls = [v[1] for v in handles.values()]
        _legend_above(fig, axes, hs, ls)


def _legend_above(fig: Any, axes: list[Any], hs: list[Any], ls: list[str]) -> None:
    """A legend above the plot: over the single axes, or centred over the whole figure."""
    ncols = len(hs) if len(hs) <= 3 else (2 if len(hs) == 4 else 3)
    kwargs: dict[str, Any] = {
        "ncols": ncols,
        "handlelength": 1.4,
        "columnspacing": 1.0,
        "handletextpad": 0.4,
    }
    if len(axes) == 1:
        axes[0].legend(
            hs, ls, loc="lower center", bbox_to_anchor=(0.5, 1.0), borderaxespad=0.8, **kwargs
        )
    else:
        fig.legend(hs, ls, loc="outside upper center", borderaxespad=0.5, **kwargs)


def contour_figure(
    surf: Surface,
    variables: tuple[str, ...] = ("train_loss",),
    *,
    log_levels: bool | None = None,
    cmap: str = "viridis",
    style: str = "paper",
    levels: Sequence[float] | None = None,
) -> Any:
    """A contour figure of a 2D surface: one panel per variable, one shared colour scale.

    One variable fills a single journal column; two or more fill the page width. Levels
    are log-spaced by default when the loss spans more than two decades (see
    :func:`choose_levels`); ``log_levels`` True/False forces either, ``levels`` gives them.

    Example:
        >>> import numpy as np
        >>> a = np.linspace(-1, 1, 5)
        >>> s = Surface((a, a), np.add.outer(a**2, a**2), np.full((5, 5), np.nan))
        >>> fig = contour_figure(s)
        >>> [ln.get_gid() for ln in fig.axes[0].lines]
        ['center', 'minimum']
    """
    if surf.dims != 2:
        raise ConfigError(f"a contour figure needs a 2D surface, this one is {surf.dims}D.")
    n = len(variables)
    lv, log = choose_levels(
        [np.asarray(surf.variables[v], dtype=float) for v in variables],
        log_levels=log_levels,
        levels=levels,
    )
    w = width(style, 1 if n == 1 else 2)
    h = w * (0.86 if n == 1 else 0.86 / n + 0.06)
    fig = new_figure((w, h))
    axes = fig.subplots(1, n, squeeze=False)[0].tolist()
    fill = None
    for ax, var in zip(axes, variables, strict=True):
        fill = draw_contour(ax, surf, var, levels=lv, log=log, cmap=cmap)
        if n > 1:
            ax.set_title(LABELS.get(var, var).split()[0])
    for ax in axes[1:]:
        ax.set_ylabel("")
    label = (
        "loss"
        if n > 1 and all(v.endswith("loss") for v in variables)
        else LABELS.get(variables[0], variables[0])
    )
    if log:
        label += " (log scale)"
    _colorbar(fig, fill, axes, label, log)
    _legend(fig, axes)
    return fig


# -- 1D curves ---------------------------------------------------------------------
def curve_figure(surf: Surface, *, log_y: bool = False, style: str = "paper") -> Any:
    """Train/test loss along one direction, accuracy on a twin axis, centre and minimum marked.

    Example:
        >>> import numpy as np
        >>> a = np.linspace(-1, 1, 5)
        >>> fig = curve_figure(Surface((a,), a**2, np.full(a.shape, np.nan)))
        >>> fig.axes[0].get_ylabel()
        'loss'
    """
    import matplotlib

    if surf.dims != 1:
        raise ConfigError(f"a curve figure needs a 1D surface, this one is {surf.dims}D.")
    x = surf.axes[0]
    w = width(style, 1)
    fig = new_figure((w, w * 0.68))
    ax = fig.subplots()
    colors = {"train": "#1f77b4", "test": "#d95f02"}
    sizes = _marker_sizes()
    lw = float(matplotlib.rcParams["lines.linewidth"])
    for split in ("train", "test"):
        loss = surf.variables.get(f"{split}_loss")
        if loss is None:
            continue
        y = np.where(np.isfinite(loss), loss, np.nan)
        if log_y:
            y = np.where(y > 0, y, np.nan)
        ax.plot(
            x,
            y,
            color=colors[split],
            linewidth=lw * 1.2,
            label=f"{split} loss",
            gid=f"{split}_loss",
        )
    if log_y:
        ax.set_yscale("log")
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel(axis_label(surf, 0))
    ax.set_ylabel("loss")
    accs = {
        s: surf.variables[f"{s}_accuracy"]
        for s in ("train", "test")
        if f"{s}_accuracy" in surf.variables and np.isfinite(surf.variables[f"{s}_accuracy"]).any()
    }
    ax2 = None
    if accs:
        ax2 = ax.twinx()
        for split, acc in accs.items():
            ax2.plot(
                x,
                acc,
                color=colors[split],
                linestyle=(0, (3, 1.5)),
                linewidth=lw * 0.9,
                label=f"{split} accuracy",
                gid=f"{split}_accuracy",
            )
        ax2.set_ylabel("accuracy (dashed)")
        ax2.set_ylim(-0.02, 1.02)
    if surf.contains_center():
        ax.axvline(
            0.0,
            color="0.4",
            linewidth=lw * 0.6,
            linestyle=":",
            zorder=0,
            gid="center",
            label=CENTER_LABEL,
        )
    points = surf.anchor_points()
    if points is not None:
        anchors = points[:, 0]
        for k, a in enumerate(anchors):
            ax.axvline(
                a, color="0.6", linewidth=lw * 0.5, linestyle="-", zorder=0, gid=f"anchor{k}"
            )
        top = ax.secondary_xaxis("top")
        top.set_xticks(
            anchors, [_ANCHOR_NAMES[k % len(_ANCHOR_NAMES)] for k in range(len(anchors))]
        )
        top.tick_params(length=2, pad=1)
    am = surf.argmin("train_loss")
    if am is not None and (not log_y or am[1] > 0):
        ax.plot(
            [x[am[0][0]]],
            [am[1]],
            linestyle="none",
            marker="*",
            markersize=sizes["min"] * 0.8,
            markerfacecolor="#ffd92f",
            markeredgecolor="black",
            markeredgewidth=0.6,
            zorder=7,
            gid="minimum",
            label=f"minimum ({_fmt(am[1])})",
        )
    handles, labels = ax.get_legend_handles_labels()
    if ax2 is not None:
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    # the twin axes draws over the first: give it the legend so nothing hides it
    (ax2 if ax2 is not None else ax).legend(
        handles,
        labels,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        borderaxespad=0.8 if surf.anchors is None else 1.6,
        ncols=min(3, len(handles)),
        handlelength=1.6,
        columnspacing=1.0,
        handletextpad=0.4,
    )
    return fig


# -- 3D slices -----------------------------------------------------------------------
_PLANES = ((0, 1), (0, 2), (1, 2))


def slices_figure(
    surf: Surface,
    *,
    log_levels: bool | None = None,
    cmap: str = "viridis",
    style: str = "paper",
) -> Any:
    """Three orthogonal slices of a 3D surface through the centre, one row per split.

    Levels follow :func:`choose_levels` (log-spaced by default over more than two decades).

    Example:
        >>> import numpy as np
        >>> a = np.linspace(-1, 1, 5)
        >>> v = a[:, None, None] ** 2 + a[None, :, None] ** 2 + a[None, None, :] ** 2
        >>> fig = slices_figure(Surface((a, a, a), v, np.full(v.shape, np.nan)))
        >>> len(fig.axes)
        4
    """
    if surf.dims != 3:
        raise ConfigError(f"a slice figure needs a 3D surface, this one is {surf.dims}D.")
    variables = [v for v in ("train_loss", "test_loss") if v in surf.variables]
    c = surf.center_index()
    slabs: dict[str, list[np.ndarray]] = {}
    for var in variables:
        vol = surf.variables[var]
        slabs[var] = [vol[:, :, c[2]], vol[:, c[1], :], vol[c[0], :, :]]
    levels, log = choose_levels(
        [np.asarray(s, dtype=float) for v in variables for s in slabs[v]], log_levels=log_levels
    )
    w = width(style, 2)
    rows = len(variables)
    fig = new_figure((w, rows * w * 0.30 + 0.35))
    grid = fig.subplots(rows, 3, squeeze=False)
    fill = None
    names = (r"$\alpha$", r"$\beta$", r"$\gamma$")
    for r, var in enumerate(variables):
        for k, plane in enumerate(_PLANES):
            ax = grid[r][k]
            fill = draw_contour(
                ax,
                surf,
                var,
                levels=levels,
                log=log,
                cmap=cmap,
                plane=plane,
                values=slabs[var][k],
                overlays=False,
                min_label="slice minimum",
            )
            fixed = ({0, 1, 2} - set(plane)).pop()
            coord = surf.axes[fixed][c[fixed]]
            ax.set_title(f"{LABELS[var]}, {names[fixed]} = {coord:.3g}", fontsize="medium")
    label = "loss" + (" (log scale)" if log else "")
    _colorbar(fig, fill, grid.ravel().tolist(), label, log)
    _legend(fig, grid.ravel().tolist())
    return fig


# -- entry point -----------------------------------------------------------------------------
def surface_figures(
    run_dir: Path,
    *,
    formats: tuple[str, ...] | str = ("png", "pdf", "svg"),
    style: str = "paper",
    log_levels: bool | None = None,
    cmap: str = "viridis",
    dpi: float | None = None,
) -> list[Path]:
    """Render the run's surface as journal figures into ``RUN/figures``.

    1D: ``surface_1d`` (train/test loss, accuracy on a twin axis). 2D: ``surface_contour``
    (train loss), ``surface_contour_test`` and ``surface_contour_train_test`` (side by
    side, shared scale) when there is test data. 3D: ``surface_slices`` (orthogonal
    slices through the centre). Each is written in every format asked for.

    Args:
        run_dir: the run directory (with ``results.nc`` holding a surface).
        formats: any of ``png``, ``pdf``, ``svg`` (a tuple or ``"png,pdf"``).
        style: ``paper`` (journal columns, 8 pt, 300 dpi) or ``talk``.
        log_levels: log-spaced contour levels and colour scale (log y-axis in 1D);
            ``None`` (default): log-spaced contours when the loss spans more than two
            decades, linear otherwise, and a linear 1D axis.
        cmap: matplotlib colormap.
        dpi: PNG resolution (default: the style's).

    Returns:
        The written files.

    Example:
        >>> import tempfile, xarray as xr
        >>> from landscape.io.rundir import RunDir
        >>> run = RunDir.create(Path(tempfile.mkdtemp()) / "r", {})
        >>> a = np.linspace(-1, 1, 9)
        >>> run.write_arrays(xr.Dataset({"train_loss": (("alpha", "beta"), np.add.outer(a**2, a**2))},
        ...                             coords={"alpha": a, "beta": a}))
        >>> [p.name for p in surface_figures(run.path, formats=("png",), dpi=50)]
        ['surface_contour.png']
    """
    fmts = check_formats(formats)
    run = open_run(run_dir)
    surf = Surface.from_run(run.path)
    out = run.subdir("figures")
    paths: list[Path] = []
    with style_context(style):
        jobs: list[tuple[str, Any]] = []
        if surf.dims == 1:
            jobs.append(
                ("surface_1d", lambda: curve_figure(surf, log_y=bool(log_levels), style=style))
            )
        elif surf.dims == 2:
            jobs.append(
                (
                    "surface_contour",
                    lambda: contour_figure(
                        surf, ("train_loss",), log_levels=log_levels, cmap=cmap, style=style
                    ),
                )
            )
            if "test_loss" in surf.variables:
                jobs.append(
                    (
                        "surface_contour_test",
                        lambda: contour_figure(
                            surf, ("test_loss",), log_levels=log_levels, cmap=cmap, style=style
                        ),
                    )
                )
                jobs.append(
                    (
                        "surface_contour_train_test",
                        lambda: contour_figure(
                            surf,
                            ("train_loss", "test_loss"),
                            log_levels=log_levels,
                            cmap=cmap,
                            style=style,
                        ),
                    )
                )
        else:
            jobs.append(
                (
                    "surface_slices",
                    lambda: slices_figure(surf, log_levels=log_levels, cmap=cmap, style=style),
                )
            )
        for stem, make in jobs:
            fig = make()
            paths += save_figure(fig, out / stem, fmts, dpi=dpi)
    return paths
