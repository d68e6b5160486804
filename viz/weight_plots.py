"""Weight-spectra figures: per-layer ESD panels (power-law tail, MP edge) and α by layer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import ConfigError, RunDirError
from landscape.metrics.weight_spectra import LayerSpectrum, WeightSpectra
from landscape.viz.style import check_formats, new_figure, save_figure, style_context, width

_ESD_COLOR = "#1f77b4"
_FIT_COLOR = "#d62728"
_MP_COLOR = "#2ca02c"


def _narrow_log_ticks(ax: Any) -> None:
    """Readable log axes: on a span under 1.5 decades label the 2s and 5s, else none."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.autoscale_view()
    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
        narrow = lo > 0 and hi > 0 and math.log10(hi / lo) < 1.5
        axis.set_minor_formatter(
            FuncFormatter(lambda x, _: f"{x:.2g}") if narrow else NullFormatter()
        )


def esd_axes(ax: Any, layer: LayerSpectrum, *, bins: int = 60) -> None:
    """Draw one layer's ESD on ``ax``: a log-log histogram, the fitted tail, x_min, λ+.

    The histogram is the density of the positive eigenvalues over log-spaced bins; the
    fitted law is drawn as ``(n_tail/M)·(α−1)/x_min·(λ/x_min)^(−α)`` for ``λ ≥ x_min``
    (the tail's share of the whole density), x_min dotted, the MP bulk edge λ+ dashed.

    Args:
        ax: a matplotlib axes.
        layer: the layer's spectrum.
        bins: the number of log-spaced bins.
    """
    import matplotlib

    lw = float(matplotlib.rcParams["lines.linewidth"])
    ev = np.asarray(layer.eigenvalues, dtype=float)
    pos = ev[np.isfinite(ev) & (ev > 0)]
    ax.set_title(f"{layer.name} {layer.matrix_shape[0]}×{layer.matrix_shape[1]}", fontsize="small")
    if pos.size < 2 or pos.min() == pos.max():
        ax.text(
            0.5,
            0.5,
            layer.note or layer.power_law.note or "too few eigenvalues",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize="small",
            wrap=True,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return
    edges = np.geomspace(pos.min(), pos.max() * (1 + 1e-9), max(5, min(bins, pos.size // 2 + 2)))
    hist, edges = np.histogram(pos, bins=edges)
    dens = hist / (ev.size * np.diff(edges))
    ax.stairs(np.where(dens > 0, dens, np.nan), edges, color=_ESD_COLOR, gid="esd", label="ESD")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _narrow_log_ticks(ax)
    pl = layer.power_law
    if pl.fit:
        x = np.geomspace(pl.xmin, pos.max(), 50)
        share = pl.n_tail / ev.size
        y = share * (pl.alpha - 1) / pl.xmin * (x / pl.xmin) ** (-pl.alpha)
        ax.plot(
            x,
            y,
            color=_FIT_COLOR,
            linewidth=lw,
            label=rf"$\alpha$ = {pl.alpha:.2f}",
            gid="powerlaw",
        )
        ax.axvline(pl.xmin, color=_FIT_COLOR, linestyle=":", linewidth=lw * 0.8, gid="xmin")
    mp = layer.mp
    if mp.fit and math.isfinite(mp.lambda_plus) and mp.lambda_plus > 0:
        ax.axvline(
            mp.lambda_plus,
            color=_MP_COLOR,
            linestyle=(0, (4, 2)),
            linewidth=lw * 0.8,
            label=rf"MP $\lambda_+$ ({mp.spikes} spikes)",
            gid="mp_edge",
        )
    ax.set_xlabel(r"eigenvalue $\lambda$ of $W^\top W/N$")
    ax.set_ylabel("density")
    ax.legend(loc="lower left", fontsize="x-small", handlelength=1.4)


def esd_figure(
    spectra: WeightSpectra,
    *,
    layers: Sequence[str] | None = None,
    max_panels: int = 12,
    style: str = "paper",
) -> Any:
    """A grid of ESD panels, one per layer (the first ``max_panels`` when not named).

    Example:
        >>> from torch import nn
        >>> from landscape.metrics.weight_spectra import weight_spectra
        >>> ws = weight_spectra(nn.Sequential(nn.Linear(40, 60), nn.Linear(60, 3)))
        >>> len(esd_figure(ws).axes)
        2
    """
    if max_panels < 1:
        raise ConfigError(f"max_panels must be at least 1 (got {max_panels}).")
    chosen = [spectra.layer(n) for n in layers] if layers else list(spectra.layers[:max_panels])
    k = len(chosen)
    cols = min(3, k)
    rows = math.ceil(k / cols)
    w = width(style, 1 if cols == 1 else 2)
    fig = new_figure((w, w / cols * 0.85 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < k:
            esd_axes(ax, chosen[i])
        else:
            ax.set_axis_off()
    return fig


def alpha_figure(spectra: WeightSpectra, *, style: str = "paper") -> Any:
    """α (± stderr) by layer, with the 2–6 band where trained layers usually fall.

    Layers without a fit are marked on the axis with a cross.

    Example:
        >>> from torch import nn
        >>> from landscape.metrics.weight_spectra import weight_spectra
        >>> ws = weight_spectra(nn.Sequential(nn.Linear(40, 60), nn.Linear(60, 3)))
        >>> len(alpha_figure(ws).axes)
        1
    """
    import matplotlib

    ms = float(matplotlib.rcParams["lines.markersize"])
    n = len(spectra.layers)
    w = width(style, 1 if n <= 12 else 2)
    fig = new_figure((w, w * 0.62 if n <= 12 else w * 0.4))
    ax = fig.subplots()
    idx = np.arange(n)
    alpha = np.array([lay.alpha for lay in spectra.layers], dtype=float)
    err = np.array([lay.power_law.alpha_stderr for lay in spectra.layers], dtype=float)
    ok = np.isfinite(alpha)
    ax.axhspan(2.0, 6.0, color="0.9", zorder=0, gid="ht_band", label=r"$2 \leq \alpha \leq 6$")
    if ok.any():
        ax.errorbar(
            idx[ok],
            alpha[ok],
            yerr=np.where(np.isfinite(err[ok]), err[ok], 0.0),
            linestyle="-",
            marker="o",
            markersize=ms,
            color=_FIT_COLOR,
            gid="alpha",
            label=r"$\alpha$",
        )
    if (~ok).any():
        lo = float(np.nanmin(alpha)) if ok.any() else 2.0
        ax.plot(
            idx[~ok],
            np.full(int((~ok).sum()), min(lo, 2.0) * 0.9),
            linestyle="none",
            marker="x",
            color="0.4",
            markersize=ms,
            gid="not_fit",
            label="not fit",
        )
    ax.set_xlabel("layer")
    ax.set_ylabel(r"power-law exponent $\alpha$")
    ax.set_xticks(idx)
    names = [lay.name.removesuffix(".weight") for lay in spectra.layers]
    if n <= 24:
        ax.set_xticklabels(names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    else:
        ax.set_xticks(idx[:: max(1, n // 12)])
    ax.legend(loc="best", fontsize="small")
    return fig


def has_weights(ds: Any, summary: dict[str, Any]) -> bool:
    """Whether a run holds weight spectra (the summary's layers and the ESD arrays)."""
    w = summary.get("weights")
    return isinstance(w, dict) and bool(w.get("layers")) and "weights_esd" in ds


def load_weight_spectra(run_dir: str | Path) -> WeightSpectra:
    """The weight spectra of a run: ``summary["weights"]`` with the ESDs of ``results.nc``.

    Raises:
        RunDirError: the run holds no weight spectra.
    """
    from landscape.io.runs import open_run

    run = open_run(run_dir)
    ds: Any = run.read_arrays() if run.results_path.exists() else {}
    summary = run.summary()
    if not has_weights(ds, summary):
        raise RunDirError(
            f"{run.path} holds no weight spectra; run `landscape weights` on the checkpoint."
        )
    return WeightSpectra.from_dict(
        summary["weights"], ds["weights_esd"].values, ds["weights_esd_layer"].values
    )


def run_weight_figures(
    run_dir: str | Path,
    *,
    formats: tuple[str, ...] | str = ("png",),
    style: str = "paper",
    dpi: float | None = None,
) -> list[Path]:
    """:func:`weight_figures` of a run directory, into ``RUN/figures``."""
    from landscape.io.runs import open_run

    run = open_run(run_dir)
    spectra = load_weight_spectra(run.path)
    return weight_figures(spectra, run.subdir("figures"), formats=formats, style=style, dpi=dpi)


def weight_figures(
    spectra: WeightSpectra,
    out_dir: str | Path,
    *,
    formats: tuple[str, ...] | str = ("png",),
    style: str = "paper",
    dpi: float | None = None,
    max_panels: int = 12,
) -> list[Path]:
    """Write ``weights_esd.<fmt>`` and ``weights_alpha.<fmt>`` into ``out_dir``.

    Args:
        spectra: the weight spectra.
        out_dir: the folder (e.g. ``RUN/figures``), created on demand.
        formats: any of ``png``, ``pdf``, ``svg``.
        style: ``paper`` or ``talk``.
        dpi: PNG resolution (default: the style's).
        max_panels: the most ESD panels.

    Returns:
        The written files.

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> from landscape.metrics.weight_spectra import weight_spectra
        >>> ws = weight_spectra(nn.Linear(40, 60))
        >>> [p.name for p in weight_figures(ws, tempfile.mkdtemp(), dpi=40)]
        ['weights_esd.png', 'weights_alpha.png']
    """
    fmts = check_formats(formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    with style_context(style):
        fig = esd_figure(spectra, max_panels=max_panels, style=style)
        paths += save_figure(fig, out / "weights_esd", fmts, dpi=dpi)
        fig = alpha_figure(spectra, style=style)
        paths += save_figure(fig, out / "weights_alpha", fmts, dpi=dpi)
    return paths
