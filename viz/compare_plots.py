"""Figures that compare runs.

Overlaid curves, contours on one colour scale, spectral densities, metric-vs-gap
scatters, and a PyVista panel of the 3D surfaces.

matplotlib and PyVista are imported inside the functions, so importing this module is
cheap and headless. Every figure function returns a matplotlib ``Figure`` (or writes an
image, for the 3D panel); :func:`save_figure` writes it as PNG/PDF/SVG.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landscape.compare import (
    Comparison,
    ComparisonTable,
    RunData,
    curve,
    density,
    format_value,
    grid2d,
    metric_label,
    short_label,
)

FORMATS = ("png", "pdf", "svg")
SINGLE_IN = 3.25  # one journal column (landscape.viz.style.SINGLE_COLUMN_IN)
DOUBLE_IN = 6.75  # full page width (landscape.viz.style.DOUBLE_COLUMN_IN)

#: Okabe–Ito colours: distinguishable with colour-vision deficiencies and in greyscale.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#F0E442")  # fmt: skip
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Apply the project's journal style (:func:`landscape.viz.style.style_context`).

    Example:
        >>> with paper_style():
        ...     pass
    """
    from landscape.viz.style import style_context

    with style_context("paper"):
        yield


def run_color(i: int) -> str:
    """The colour of the ``i``-th run (stable across every comparison figure)."""
    return PALETTE[i % len(PALETTE)]


def save_figure(fig: Any, stem: str | Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Save ``fig`` as ``stem.<fmt>`` for each format (atomically, reproducibly).

    Example:
        >>> import tempfile
        >>> p = save_figure(_figure(2, 2), tempfile.mkdtemp() + "/f")
        >>> p[0].suffix
        '.png'
    """
    from landscape.viz.style import save_figure as _save

    return _save(fig, Path(stem), tuple(formats))


def _figure(width: float, height: float) -> Any:
    from landscape.viz.style import new_figure

    return new_figure((width, height))


def _grid(ax: Any) -> None:
    ax.grid(True, color="0.88", lw=0.5)
    ax.set_axisbelow(True)


def _positive_range(values: Sequence[np.ndarray]) -> tuple[float, float]:
    vals = np.concatenate([np.ravel(v) for v in values]) if values else np.array([])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return (0.0, 1.0)
    return float(vals.min()), float(vals.max())


def _use_log(lo: float, hi: float, ratio: float = 30.0) -> bool:
    return lo > 0 and hi / lo > ratio


_VAR_LABEL = {
    "train_loss": "train loss",
    "test_loss": "test loss",
    "train_accuracy": "train accuracy",
    "test_accuracy": "test accuracy",
}


def curves_figure(
    runs: Sequence[RunData], variables: Sequence[str] = ("train_loss", "test_loss")
) -> Any:
    """Overlaid 1D loss curves of every run on one shared axis per variable.

    Curves come from 1D surfaces or from the centre row (β ≈ 0) of 2D surfaces; runs
    without a surface are left out. One panel per variable present in some run.

    Example:
        >>> curves_figure([])  # doctest: +ELLIPSIS
        <Figure ...>
    """
    present = [v for v in variables if any(curve(r, v) is not None for r in runs)] or [variables[0]]
    with paper_style():
        fig = _figure(SINGLE_IN if len(present) == 1 else DOUBLE_IN, 2.35)
        axes = fig.subplots(1, len(present), sharey=True, squeeze=False)[0]
        all_vals = [c.values for r in runs for v in present if (c := curve(r, v)) is not None]
        lo, hi = _positive_range(all_vals)
        for ax, var in zip(axes, present, strict=True):
            for i, r in enumerate(runs):
                c = curve(r, var)
                if c is None:
                    continue
                ax.plot(
                    c.alpha,
                    c.values,
                    color=run_color(i),
                    ls=LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)],
                    label=r.name,
                )
                mid = int(np.argmin(np.abs(c.alpha)))
                ax.plot(c.alpha[mid], c.values[mid], "o", ms=3.5, color=run_color(i), zorder=3)
            if _use_log(lo, hi):
                ax.set_yscale("log")
            ax.set_xlabel("α (normalized direction 1)")
            ax.set_title(_VAR_LABEL.get(var, var))
            ax.margins(x=0)
            _grid(ax)
        axes[0].set_ylabel("loss")
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            axes[-1].legend(handles, labels, loc="upper center", ncols=1)
        src = next((c.source for r in runs if (c := curve(r, present[0])) is not None), "")
        if src.endswith("centre row"):
            fig.suptitle("1D slices through each minimum (β = 0 row of the 2D surface)")
    return fig


def contours_figure(runs: Sequence[RunData], variable: str = "train_loss", ncols: int = 4) -> Any:
    """Side-by-side 2D contour maps of ``variable`` with ONE shared colour scale.

    The levels (log-spaced when the values span more than a factor 30) and the colour
    map are shared by every panel, so equal colours mean equal loss across runs.

    Example:
        >>> contours_figure([])  # doctest: +ELLIPSIS
        <Figure ...>
    """
    from matplotlib import colors, ticker

    grids = [(i, r, g) for i, r in enumerate(runs) if (g := grid2d(r, variable)) is not None]
    n = max(1, len(grids))
    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    with paper_style():
        panel = min(1.75, (DOUBLE_IN - 0.75) / cols)
        fig = _figure(panel * cols + 0.75, panel * rows + 0.3)
        axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False))
        flat = axes.ravel()
        lo, hi = _positive_range([g.values for _, _, g in grids])
        log = _use_log(lo, hi)
        if log:
            levels = np.geomspace(lo, hi, 16)
            norm: Any = colors.LogNorm(vmin=lo, vmax=hi)
        else:
            levels = np.linspace(lo, hi if hi > lo else lo + 1e-12, 16)
            norm = colors.Normalize(vmin=levels[0], vmax=levels[-1])
        mappable = None
        for ax, (_i, r, g) in zip(flat, grids, strict=False):
            vals = np.where(np.isfinite(g.values), g.values, hi)
            vals = np.clip(vals, lo, hi)
            mappable = ax.contourf(g.alpha, g.beta, vals.T, levels=levels, norm=norm,
                                   cmap="viridis", extend="neither")  # fmt: skip
            ax.contour(g.alpha, g.beta, vals.T, levels=levels[::3], colors="white",
                       linewidths=0.45, alpha=0.7, norm=norm)  # fmt: skip
            ax.plot(0, 0, marker="+", color="white", ms=7, mew=1.3)
            ax.set_title(r.name)
            ax.set_aspect("equal")
            ax.grid(False)
        for ax in flat[len(grids) :]:
            ax.set_visible(False)
        for ax in axes[-1, :]:
            ax.set_xlabel("α")
        for ax in axes[:, 0]:
            ax.set_ylabel("β")
        if mappable is not None:
            cb = fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.9, pad=0.02)
            cb.set_label(_VAR_LABEL.get(variable, variable) + " (shared scale)")
            if log:
                cb.locator = ticker.LogLocator()
                cb.formatter = ticker.LogFormatterSciNotation()
                cb.update_ticks()
        else:
            flat[0].text(0.5, 0.5, "no 2D surface stored", ha="center", va="center",
                         transform=flat[0].transAxes)  # fmt: skip
    return fig


def density_figure(runs: Sequence[RunData]) -> Any:
    """Hessian spectral densities (SLQ) of every run overlaid, log-scaled density axis.

    Example:
        >>> density_figure([])  # doctest: +ELLIPSIS
        <Figure ...>
    """
    with paper_style():
        fig = _figure(SINGLE_IN * 1.25, 2.6)
        ax = fig.subplots()
        peak = 0.0
        for r in runs:
            d = density(r)
            if d is None:
                continue
            peak = max(peak, float(np.nanmax(d.density)))
        floor = peak * 1e-5 if peak > 0 else 1e-12
        for i, r in enumerate(runs):
            d = density(r)
            if d is None:
                continue
            y = np.where(d.density > 0, d.density, np.nan)
            ax.plot(d.grid, y, color=run_color(i), label=r.name,
                    ls=LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)])  # fmt: skip
            if d.stderr is not None:
                lo_band = np.where(d.density - d.stderr > 0, d.density - d.stderr, floor * 1e-3)
                ax.fill_between(d.grid, lo_band, d.density + d.stderr, color=run_color(i),
                                alpha=0.15, lw=0)  # fmt: skip
            lam = r.summary.get("hessian", {}).get("top_eigenvalues") or []
            if lam:
                ax.axvline(float(lam[0]), color=run_color(i), lw=0.8, ls=":", alpha=0.9)
        ax.set_yscale("log")
        ax.set_ylim(floor, peak * 3 if peak > 0 else 1.0)
        ax.set_xlabel("Hessian eigenvalue λ")
        ax.set_ylabel("spectral density")
        _grid(ax)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, frameon=False,
                      title="dotted lines: λmax", title_fontsize=7)  # fmt: skip
    return fig


def _ci_text(ci: tuple[float, float], reliable: bool) -> str:
    if not reliable or not all(math.isfinite(v) for v in ci):
        return ""
    return f" [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def scatter_metrics(table: ComparisonTable, limit: int = 9) -> list[str]:
    """The metrics a metric-vs-gap scatter shows (at most ``limit``).

    Those with a correlation, in table order; the metrics section's λmax/trace/Frobenius
    come last, and only when they differ from the Hessian section's (canonicalized).
    """
    keys = [c.metric for c in table.correlations if c.n >= 2]
    spectral = {"metrics.lambda_max", "metrics.trace", "metrics.frobenius"}
    first = [k for k in keys if k not in spectral]
    repeats = []
    for k in keys:
        if k in spectral:
            base = table.row(k.split(".", 1)[1]) if k.split(".", 1)[1] in table.keys else None
            if base is None or not np.allclose(table.row(k).means, base.means, equal_nan=True):
                repeats.append(k)
    return (first + repeats)[:limit]


def gap_scatter_figure(
    comparison: Comparison, metrics: Sequence[str] | None = None, ncols: int = 3
) -> Any:
    """Each sharpness/flatness metric against the generalization gap, one panel per metric.

    Points carry the metric's standard error as horizontal error bars; the legend gives
    Kendall τ and Spearman ρ with their bootstrap intervals and permutation p-values.

    Example:
        >>> gap_scatter_figure  # doctest: +ELLIPSIS
        <function gap_scatter_figure at ...>
    """
    from matplotlib.lines import Line2D

    table = comparison.table
    keys = list(metrics) if metrics is not None else scatter_metrics(table)
    try:
        gap = table.row("generalization_gap")
    except KeyError:
        gap = None
    n = max(1, len(keys))
    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    with paper_style():
        fig = _figure(min(DOUBLE_IN, 2.25 * cols + 0.2), 2.05 * rows + 0.35)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharey=True)).ravel()
        if gap is None or not keys:
            axes[0].text(0.5, 0.5, "no test data: no generalization gap to compare with",
                         ha="center", va="center", transform=axes[0].transAxes, wrap=True)  # fmt: skip
        for ax, key in zip(axes, keys, strict=False):
            row = table.row(key)
            x, xe, y = row.means, row.stderrs, gap.means if gap is not None else None
            if y is None:
                break
            for i, name in enumerate(table.runs):
                if not (np.isfinite(x[i]) and np.isfinite(y[i])):
                    continue
                err = xe[i] if np.isfinite(xe[i]) and xe[i] > 0 else None
                ax.errorbar(x[i], y[i], xerr=err, fmt=MARKERS[i % len(MARKERS)],
                            color=run_color(i), ms=5, capsize=2, elinewidth=0.9,
                            label=name)  # fmt: skip
            fx = x[np.isfinite(x)]
            if fx.size and _use_log(float(fx.min()), float(fx.max()), 10.0):
                ax.set_xscale("log")
            c = table.correlation(key)
            if c is not None and math.isfinite(c.kendall_tau):
                text = (
                    f"τ = {c.kendall_tau:+.2f}{_ci_text(c.kendall_ci, c.ci_reliable)},"
                    f" p = {c.kendall_p:.2g}\n"
                    f"ρ = {c.spearman_rho:+.2f}{_ci_text(c.spearman_ci, c.ci_reliable)},"
                    f" p = {c.spearman_p:.2g}\n"
                    f"n = {c.n} runs" + ("" if c.ci_reliable else ": too few for a CI")
                )
            elif c is not None:
                text = c.note
            else:
                text = "no correlation"
            _grid(ax)
            ax.legend([Line2D([], [], ls="")], [text], loc="best", fontsize=6.5, handlelength=0,
                      handletextpad=0, borderpad=0.4, frameon=True, framealpha=0.85,
                      edgecolor="0.8")  # fmt: skip
            arrow = "← flatter" if row.role == "sharpness" else "flatter →"
            ax.set_xlabel(f"{short_label(key)}   ({arrow})")
            ax.set_title(metric_label(key).split(" (")[0])
        for ax in axes[len(keys) :]:
            ax.set_visible(False)
        for k in range(0, len(axes), cols):
            axes[k].set_ylabel("generalization gap")
        names = [(i, nme) for i, nme in enumerate(table.runs)]
        proxies = [Line2D([], [], ls="", marker=MARKERS[i % len(MARKERS)], color=run_color(i),
                          ms=5) for i, _ in names]  # fmt: skip
        fig.legend(proxies, [nme for _, nme in names], loc="outside lower center",
                   ncols=min(len(names), 5))  # fmt: skip
    return fig


def offscreen_available() -> tuple[bool, str]:
    """Whether PyVista can render off-screen here, and why not if it cannot.

    Example:
        >>> ok, why = offscreen_available()
        >>> isinstance(ok, bool)
        True
    """
    try:
        import pyvista as pv
    except ImportError as exc:  # pragma: no cover - pyvista is a dependency
        return False, f"PyVista is not installed ({exc})"
    try:
        p = pv.Plotter(off_screen=True, window_size=(32, 32))
        p.add_mesh(pv.Sphere(theta_resolution=6, phi_resolution=6))
        img = p.screenshot(return_img=True)
        p.close()
    except Exception as exc:  # noqa: BLE001 - any failure means no off-screen rendering
        return False, f"off-screen rendering is unavailable ({type(exc).__name__}: {exc})"
    if img is None or np.asarray(img).std() == 0:
        return False, "off-screen rendering produced a blank image"
    return True, ""


def surfaces_3d_panel(
    runs: Sequence[RunData],
    path: str | Path,
    variable: str = "train_loss",
    *,
    window: tuple[int, int] | None = None,
) -> Path:
    """Render every run's 2D surface as a 3D height field, side by side, one colour scale.

    Heights and colours share one scale across panels (the same loss is drawn at the same
    height and colour in every panel). Rendering is off-screen.

    Args:
        runs: runs with a 2D surface (others are left out).
        path: the PNG to write.
        variable: the surface variable.
        window: image size in pixels (default 520 × 460 per panel).

    Returns:
        The path written.

    Raises:
        RuntimeError: when off-screen rendering fails (see :func:`offscreen_available`).

    Example:
        >>> surfaces_3d_panel  # doctest: +ELLIPSIS
        <function surfaces_3d_panel at ...>
    """
    import pyvista as pv

    from landscape.io.rundir import atomic_write

    grids = [(r, g) for r in runs if (g := grid2d(r, variable)) is not None]
    if not grids:
        raise RuntimeError("no run has a 2D surface to render")
    lo, hi = _positive_range([g.values for _, g in grids])
    log = _use_log(lo, hi)

    def height(v: np.ndarray) -> np.ndarray:
        v = np.clip(np.where(np.isfinite(v), v, hi), lo, hi)
        return np.log10(v) if log else v

    h_lo, h_hi = float(height(np.array([lo]))[0]), float(height(np.array([hi]))[0])
    span = max(float(np.ptp(g.alpha)) for _, g in grids)
    scale = 0.5 * span / (h_hi - h_lo) if h_hi > h_lo else 1.0
    n = len(grids)
    w, h = window or (430 * n + 150, 420)
    plotter = pv.Plotter(off_screen=True, shape=(1, n + 1), window_size=(w, h), border=False,
                         col_weights=[1.0] * n + [0.32])  # fmt: skip
    try:
        plotter.set_background("white")
        clim = (h_lo, h_hi)
        label = ("log10 " if log else "") + _VAR_LABEL.get(variable, variable)
        levels = np.linspace(h_lo, h_hi, 12)[1:-1]
        mesh = None
        for k, (r, g) in enumerate(grids):
            plotter.subplot(0, k)
            a, b = np.meshgrid(g.alpha, g.beta, indexing="ij")
            z = height(g.values)
            mesh = pv.StructuredGrid(a, b, (z - h_lo) * scale)
            mesh.point_data[label] = z.ravel(order="F")
            plotter.add_mesh(mesh, scalars=label, clim=clim, cmap="viridis", smooth_shading=True,
                             show_scalar_bar=False, ambient=0.3, diffuse=0.75)  # fmt: skip
            iso = mesh.contour(isosurfaces=levels, scalars=label)
            if iso.n_points:
                iso.points[:, 2] += 0.004 * span
                plotter.add_mesh(iso, color="white", line_width=1.3, opacity=0.75)
            rim = mesh.extract_feature_edges(
                boundary_edges=True, feature_edges=False, manifold_edges=False,
                non_manifold_edges=False,
            )  # fmt: skip
            plotter.add_mesh(rim, color="#444444", line_width=1.5)
            plotter.add_text(r.name, position="upper_edge", font_size=12, color="black")
            plotter.view_vector((1.0, -1.4, 1.9), viewup=(0, 0, 1))
            plotter.reset_camera()
            plotter.camera.zoom(0.97)
        plotter.subplot(0, n)
        assert mesh is not None
        plotter.add_mesh(mesh.outline(), opacity=0.0, scalars=None, show_scalar_bar=False)
        bar = plotter.add_mesh(mesh.copy(), scalars=label, clim=clim, cmap="viridis",
                               opacity=0.0, show_scalar_bar=False)  # fmt: skip
        plotter.add_scalar_bar(title=label, mapper=bar.mapper, n_labels=5, color="black",
                               vertical=True, position_x=0.15, position_y=0.15, width=0.35,
                               height=0.7, title_font_size=12, label_font_size=11,
                               fmt="%.2f")  # fmt: skip
        out = Path(path)
        img = plotter.screenshot(return_img=True)
    finally:
        plotter.close()

    def write(tmp: Path) -> None:
        import matplotlib.image as mpimg

        mpimg.imsave(tmp, np.asarray(img), format="png")

    atomic_write(out, write)
    return out


@dataclass
class FigureSet:
    """The figures written for a comparison.

    Attributes:
        files: ``{figure name: [paths, one per format]}``.
        captions: ``{figure name: caption}``.
        skipped: ``{figure name: why it was not made}``.
    """

    files: dict[str, list[Path]] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def png(self, name: str) -> Path | None:
        """The PNG of figure ``name`` if one was written."""
        return next((p for p in self.files.get(name, []) if p.suffix == ".png"), None)


def comparison_figures(
    comparison: Comparison,
    out_dir: str | Path,
    formats: Sequence[str] = ("png",),
    *,
    render_3d: bool = True,
) -> FigureSet:
    """Write every comparison figure into ``out_dir`` in the given formats.

    Figures: ``curves`` (overlaid 1D slices), ``contours`` (2D maps, one colour scale),
    ``density`` (Hessian spectra), ``metric_vs_gap`` (scatter with correlations) and
    ``surfaces_3d`` (PyVista, PNG only). Figures that cannot be made (no surfaces, mixed
    architectures, no test data, no off-screen rendering) are listed in ``skipped``.

    Args:
        comparison: the comparison.
        out_dir: the figures folder.
        formats: any of ``png``, ``pdf``, ``svg``.
        render_3d: also render the 3D panel.

    Returns:
        A :class:`FigureSet`.

    Example:
        >>> comparison_figures  # doctest: +ELLIPSIS
        <function comparison_figures at ...>
    """
    from landscape.errors import ConfigError

    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(
            f"--format {','.join(formats)} is not supported; use png, pdf and/or svg."
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = list(comparison.runs)
    fs = FigureSet()
    if comparison.check.surfaces:
        fs.files["curves"] = save_figure(curves_figure(runs), out / "curves", formats)
        fs.captions["curves"] = (
            "Loss along the first filter-normalized direction through each minimum (shared axes)."
        )
        if any(grid2d(r) is not None for r in runs):
            fs.files["contours"] = save_figure(contours_figure(runs), out / "contours", formats)
            fs.captions["contours"] = (
                "2D loss surfaces around each minimum, one shared colour scale; + marks the"
                " trained parameters."
            )
        else:
            fs.skipped["contours"] = "the surfaces are 1D"
    else:
        why = (
            "the runs have different architectures (surfaces need one parameter space)"
            if not comparison.check.same_architecture
            else "fewer than two runs have a surface"
        )
        fs.skipped["curves"] = fs.skipped["contours"] = why
    if any(r.has_density for r in runs):
        fs.files["density"] = save_figure(density_figure(runs), out / "density", formats)
        fs.captions["density"] = (
            "Hessian eigenvalue densities (stochastic Lanczos quadrature), log scale;"
            " bands: ±1 standard error over probes."
        )
    else:
        fs.skipped["density"] = "no run stores an SLQ density"
    if comparison.table.correlations:
        fs.files["metric_vs_gap"] = save_figure(
            gap_scatter_figure(comparison), out / "metric_vs_gap", formats
        )
        fs.captions["metric_vs_gap"] = (
            "Sharpness metrics against the generalization gap; legends give Kendall τ and"
            " Spearman ρ with bootstrap intervals over runs and exact permutation p-values."
        )
    else:
        fs.skipped["metric_vs_gap"] = "no generalization gap (the runs have no test data)"
    if render_3d and comparison.check.surfaces and any(grid2d(r) is not None for r in runs):
        ok, why = offscreen_available()
        if ok:
            try:
                fs.files["surfaces_3d"] = [surfaces_3d_panel(runs, out / "surfaces_3d.png")]
                fs.captions["surfaces_3d"] = (
                    "3D views of the 2D surfaces; heights and colours on one shared scale."
                )
            except Exception as exc:  # noqa: BLE001 - report, do not fail the comparison
                fs.skipped["surfaces_3d"] = f"3D rendering failed ({type(exc).__name__}: {exc})"
        else:
            fs.skipped["surfaces_3d"] = why
    return fs


def table_cells(table: ComparisonTable) -> list[list[str]]:
    """The table as strings: one row per metric, ``value ± err (rank)`` per run."""
    rows = []
    for r in table.rows:
        cells = [r.label]
        for v, k in zip(r.values, r.ranks, strict=True):
            text = format_value(v)
            if k is not None:
                text += f" ({k})"
            cells.append(text)
        rows.append(cells)
    return rows
