"""The Hessian spectrum figure: SLQ spectral density (± stderr) and extreme eigenvalues."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import RunDirError
from landscape.io.runs import open_run
from landscape.viz.style import check_formats, new_figure, save_figure, style_context, width


@dataclass(frozen=True, eq=False)
class SpectrumData:
    """What the spectrum figure draws; any part may be missing (None)."""

    grid: np.ndarray | None = None
    density: np.ndarray | None = None
    stderr: np.ndarray | None = None
    top: np.ndarray | None = None
    top_converged: np.ndarray | None = None
    bottom: np.ndarray | None = None
    bottom_converged: np.ndarray | None = None
    exact: np.ndarray | None = None
    trace: dict[str, Any] | None = None

    @property
    def has_density(self) -> bool:
        """Whether an SLQ density is present."""
        return self.grid is not None and self.density is not None

    @property
    def has_eigenvalues(self) -> bool:
        """Whether top (or bottom) eigenvalues are present."""
        return (self.top is not None and self.top.size > 0) or (
            self.bottom is not None and self.bottom.size > 0
        )


def _floats(values: Any) -> np.ndarray | None:
    if values is None:
        return None
    out = []
    for v in np.atleast_1d(np.asarray(values, dtype=object)).tolist():
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return np.asarray(out, dtype=float)


def load_spectrum(run_dir: str | Path) -> SpectrumData:
    """Read the spectrum from ``results.nc`` (arrays) and ``summary.json`` (eigenvalues, trace).

    Raises:
        RunDirError: the run holds no density and no eigenvalues.
    """
    run = open_run(run_dir)
    ds: Any = {}
    if run.results_path.exists():
        ds = run.read_arrays()
    summary = run.summary()
    hess = summary.get("hessian") or {}

    def var(name: str) -> np.ndarray | None:
        return np.asarray(ds[name].values, dtype=float) if name in ds else None

    top = var("hessian_top_eigenvalues")
    if top is None:
        top = _floats(hess.get("top_eigenvalues"))
    bottom = var("hessian_bottom_eigenvalues")
    if bottom is None:
        bottom = _floats(hess.get("bottom_eigenvalues"))

    def conv(key: str, n: int | None) -> np.ndarray | None:
        c = hess.get(key)
        if c is None or n is None or len(c) != n:
            return None
        return np.asarray([bool(x) for x in c])

    trace = hess.get("trace") if isinstance(hess.get("trace"), dict) else None
    data = SpectrumData(
        grid=var("slq_grid"),
        density=var("slq_density"),
        stderr=var("slq_density_stderr"),
        top=top,
        top_converged=conv("top_converged", None if top is None else len(top)),
        bottom=bottom,
        bottom_converged=conv("bottom_converged", None if bottom is None else len(bottom)),
        exact=var("hessian_exact_spectrum"),
        trace=trace,
    )
    if not data.has_density and not data.has_eigenvalues:
        raise RunDirError(
            f"{run.path} holds no Hessian spectrum (no slq_density or eigenvalues); run"
            " `landscape scan` on the checkpoint first."
        )
    return data


def _density_panel(ax: Any, d: SpectrumData, log_y: bool) -> None:
    import matplotlib

    lw = float(matplotlib.rcParams["lines.linewidth"])
    grid = np.asarray(d.grid)
    dens = np.asarray(d.density)
    peak = float(np.nanmax(dens)) if np.isfinite(dens).any() else 1.0
    floor = peak * 1e-6 if log_y else None
    if d.stderr is not None:
        lo = dens - d.stderr
        hi = dens + d.stderr
        where = None
        if floor is not None:
            lo = np.maximum(lo, floor * 0.5)
            where = hi > floor
        ax.fill_between(
            grid,
            lo,
            hi,
            where=where,
            color="#1f77b4",
            alpha=0.25,
            linewidth=0,
            label=r"$\pm$ stderr",
            gid="density_stderr",
        )
    shown = np.where(dens >= floor, dens, np.nan) if floor is not None else dens
    ax.plot(grid, shown, color="#1f77b4", linewidth=lw, label="SLQ density", gid="density")
    if d.exact is not None and d.exact.size:
        bins = np.linspace(grid[0], grid[-1], min(80, max(10, d.exact.size // 4)) + 1)
        hist, edges = np.histogram(d.exact, bins=bins, density=True)
        if floor is not None:
            hist = np.where(hist > 0, hist, np.nan)
        ax.stairs(hist, edges, color="0.25", linewidth=lw * 0.7, label="exact (dense)", gid="exact")
    if d.top is not None and d.top.size:
        ax.axvline(
            float(np.nanmax(d.top)),
            color="#d62728",
            linestyle=(0, (3, 2)),
            linewidth=lw * 0.7,
            label=r"$\lambda_{\max}$",
            gid="lambda_max",
        )
    if log_y:
        ax.set_yscale("log")
        ax.set_ylim(floor, peak * 3.0)
    else:
        ax.set_ylim(0.0, peak * 1.08)
    ax.set_xlim(grid[0], grid[-1])
    ax.set_xlabel(r"eigenvalue $\lambda$")
    ax.set_ylabel("spectral density")
    ax.legend(loc="upper right", handlelength=1.4)


def _eigen_panel(ax: Any, d: SpectrumData) -> None:
    import matplotlib

    ms = float(matplotlib.rcParams["lines.markersize"])
    groups = []
    if d.top is not None and d.top.size:
        groups.append(("top", d.top, d.top_converged, "#d62728", "o"))
    if d.bottom is not None and d.bottom.size:
        groups.append(("bottom", d.bottom, d.bottom_converged, "#1f77b4", "s"))
    allv = np.concatenate([g[1] for g in groups])
    allv = allv[np.isfinite(allv)]
    for name, vals, conv, color, marker in groups:
        idx = np.arange(1, len(vals) + 1)
        ok = np.ones(len(vals), bool) if conv is None else conv
        label = "largest" if name == "top" else "smallest"
        ax.plot(
            idx[ok],
            vals[ok],
            linestyle="none",
            marker=marker,
            markersize=ms,
            color=color,
            label=label,
            gid=f"{name}_eigenvalues",
        )
        if (~ok).any():
            ax.plot(
                idx[~ok],
                vals[~ok],
                linestyle="none",
                marker=marker,
                markersize=ms,
                markerfacecolor="none",
                markeredgecolor=color,
                label=f"{label} (not converged)",
                gid=f"{name}_unconverged",
            )
    ax.axhline(0.0, color="0.5", linewidth=0.5, zorder=0)
    if allv.size:
        nz = np.abs(allv[allv != 0])
        if nz.size and nz.max() / nz.min() > 1e3:
            ax.set_yscale("symlog", linthresh=float(nz.min()))
    ax.set_xlabel("index $i$")
    ax.set_ylabel(r"eigenvalue $\lambda_i$")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best", handlelength=1.0)
    if d.trace is not None:
        try:
            mean = float(d.trace.get("mean"))
            se = float(d.trace.get("stderr"))
        except (TypeError, ValueError):
            return
        if np.isfinite(mean):
            err = rf" $\pm$ {se:.3g}" if np.isfinite(se) else ""
            ax.text(
                0.97,
                0.5,
                rf"tr$(H)$ = {mean:.4g}{err}",
                transform=ax.transAxes,
                ha="right",
                va="center",
                fontsize="small",
                gid="trace",
            )


def spectrum_axes_figure(d: SpectrumData, *, log_y: bool = True, style: str = "paper") -> Any:
    """The spectrum figure for ``d``: density panel and/or eigenvalue panel.

    Example:
        >>> g = np.linspace(-1, 5, 50)
        >>> d = SpectrumData(grid=g, density=np.exp(-g**2), top=np.array([4.0, 2.0]))
        >>> len(spectrum_axes_figure(d).axes)
        2
    """
    panels = int(d.has_density) + int(d.has_eigenvalues)
    w = width(style, 1 if panels == 1 else 2)
    fig = new_figure((w, (w * 0.7) if panels == 1 else w * 0.34))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    k = 0
    if d.has_density:
        _density_panel(axes[k], d, log_y)
        k += 1
    if d.has_eigenvalues:
        _eigen_panel(axes[k], d)
    return fig


def spectrum_figure(
    run_dir: Path,
    *,
    formats: tuple[str, ...] | str = ("png", "pdf"),
    log_y: bool = True,
    style: str = "paper",
    dpi: float | None = None,
) -> list[Path]:
    """Plot the Hessian spectral density and extreme eigenvalues into ``RUN/figures``.

    The left panel is the stochastic-Lanczos-quadrature density with its ± stderr band
    (log y-axis by default, the exact dense spectrum as a histogram when it was computed,
    λmax dashed); the right panel the largest and smallest eigenvalues by index (hollow
    markers: not converged) with the Hutch++ trace. Written as ``hessian_spectrum.<fmt>``.

    Args:
        run_dir: the run directory (``results.nc`` and/or ``summary.json`` from a scan).
        formats: any of ``png``, ``pdf``, ``svg``.
        log_y: logarithmic density axis.
        style: ``paper`` or ``talk``.
        dpi: PNG resolution (default: the style's).

    Returns:
        The written files.

    Example:
        >>> import tempfile
        >>> from landscape.io.rundir import RunDir
        >>> run = RunDir.create(Path(tempfile.mkdtemp()) / "r", {})
        >>> _ = run.update_summary({"hessian": {"top_eigenvalues": [3.0, 1.0]}})
        >>> [p.name for p in spectrum_figure(run.path, formats="png", dpi=50)]
        ['hessian_spectrum.png']
    """
    fmts = check_formats(formats)
    run = open_run(run_dir)
    data = load_spectrum(run.path)
    with style_context(style):
        fig = spectrum_axes_figure(data, log_y=log_y, style=style)
        return save_figure(fig, run.subdir("figures") / "hessian_spectrum", fmts, dpi=dpi)
