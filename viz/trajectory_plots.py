"""Trajectory figures: per-checkpoint time series and the PCA path over its loss surface."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import RunDirError
from landscape.io.runs import open_run, read_results
from landscape.surface.result import Surface
from landscape.viz.style import check_formats, new_figure, save_figure, style_context, width

_TRAIN = "#1f77b4"
_TEST = "#ff7f0e"
_PATH = "#d62728"

# (title, [(variable, error variable or None, label, colour)], y label)
_PANELS: tuple[tuple[str, tuple[tuple[str, str | None, str, str], ...], str], ...] = (
    (
        "loss",
        (
            ("ckpt_train_loss", None, "train", _TRAIN),
            ("ckpt_test_loss", None, "test", _TEST),
        ),
        "mean loss",
    ),
    (
        "accuracy",
        (
            ("ckpt_train_accuracy", None, "train", _TRAIN),
            ("ckpt_test_accuracy", None, "test", _TEST),
        ),
        "accuracy",
    ),
    ("λmax (Hessian)", (("lambda_max", "lambda_max_error", "λmax ± residual", _TRAIN),), "λmax"),
    ("trace (Hessian)", (("trace", "trace_stderr", "trace ± s.e.", _TRAIN),), "trace"),
    ("local learning coefficient", (("llc", "llc_stderr", "LLC ± s.e.", _TRAIN),), "λ̂"),
    ("weight-spectrum α", (("weight_alpha", None, "mean α", _TRAIN),), "α"),
    ("parameter norm", (("param_norm", None, "‖θ‖", _TRAIN),), "‖θ‖"),
    (
        "distance",
        (
            ("distance_first", None, "from first", _TRAIN),
            ("distance_last", None, "from last", _TEST),
        ),
        "‖θ − θ_ref‖",
    ),
)


def _values(ds: Any, name: str) -> np.ndarray | None:
    if name not in ds:
        return None
    v = np.asarray(ds[name].values, dtype=float)
    return v if np.isfinite(v).any() else None


def series_figure(ds: Any, *, style: str = "paper") -> Any:
    """Every per-checkpoint measure against the step, one panel each (2 × 4).

    Error bars are drawn as bands (λmax: the Ritz residual; trace and LLC: one standard
    error). A panel whose values are all undefined says so.

    Example:
        >>> import xarray as xr
        >>> ds = xr.Dataset({"lambda_max": ("step", [1.0, 2.0]),
        ...                  "lambda_max_error": ("step", [0.1, 0.1])}, coords={"step": [0, 5]})
        >>> len(series_figure(ds).axes)
        8
    """
    steps = np.asarray(ds["step"].values, dtype=float)
    w = width(style, 2)
    fig = new_figure((w, 0.5 * w))
    axes = fig.subplots(2, 4, squeeze=False).ravel().tolist()
    for ax, (title, lines, ylabel) in zip(axes, _PANELS, strict=True):
        ax.set_title(title, fontsize="small")
        drawn = False
        for var, err, label, color in lines:
            v = _values(ds, var)
            if v is None:
                continue
            drawn = True
            ax.plot(steps, v, marker="o", markersize=2.5, color=color, label=label, gid=var)
            e = _values(ds, err) if err else None
            if e is not None:
                e = np.nan_to_num(e, nan=0.0)
                ax.fill_between(steps, v - e, v + e, color=color, alpha=0.25, linewidth=0)
        if not drawn:
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center")
            ax.set_yticks([])
        elif len(lines) > 1:
            ax.legend(fontsize="x-small", frameon=False)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
    return fig


def _pca_labels(ds: Any) -> tuple[str, str]:
    ev = np.atleast_1d(np.asarray(ds.attrs.get("pca_explained_variance", [np.nan, np.nan])))
    return tuple(  # type: ignore[return-value]
        f"PC{k + 1} ({100.0 * float(ev[k]):.1f}%)" if k < ev.size else f"PC{k + 1}"
        for k in range(2)
    )


def path_figure(ds: Any, *, style: str = "paper", upto: int | None = None) -> Any:
    """The PCA path over the contour of the loss on its plane (Li et al. 2018, Fig. 9).

    Axes are the raw principal directions, labelled with their explained-variance ratio;
    the path points are the checkpoints' projections, the first and last annotated with
    their step. ``upto`` draws only the first ``upto`` checkpoints (animation frames).

    Example:
        >>> import xarray as xr
        >>> a = np.linspace(-1.0, 1.0, 5)
        >>> ds = xr.Dataset({"train_loss": (("alpha", "beta"), np.add.outer(a**2, a**2)),
        ...                  "path_pc1": ("step", [-0.8, 0.0]), "path_pc2": ("step", [0.5, 0.0])},
        ...                 coords={"alpha": a, "beta": a, "step": [0, 10]},
        ...                 attrs={"pca_explained_variance": [0.9, 0.1]})
        >>> path_figure(ds).axes[0].get_xlabel()
        'PC1 (90.0%)'
    """
    with style_context(style):
        return _path_figure(ds, style, upto)


def _path_figure(ds: Any, style: str, upto: int | None) -> Any:
    from landscape.viz.surface_plots import choose_levels, draw_contour

    surf = dataclasses.replace(Surface.from_results(ds), trajectory=None, anchors=None)
    w = width(style, 1)
    fig = new_figure((w, 0.86 * w))
    ax = fig.subplots()
    lv, log = choose_levels([surf.variables["train_loss"]])
    fill = draw_contour(ax, surf, "train_loss", levels=lv, log=log, overlays=False)
    fig.colorbar(fill, ax=ax, label="train loss" + (" (log scale)" if log else ""))
    x = np.asarray(ds["path_pc1"].values, dtype=float)
    y = np.asarray(ds["path_pc2"].values, dtype=float)
    steps = np.asarray(ds["step"].values)
    k = len(x) if upto is None else max(1, min(int(upto), len(x)))
    ax.plot(x[:k], y[:k], color=_PATH, marker="o", markersize=3, gid="path", label="path")
    ax.plot(x[:1], y[:1], "s", color=_PATH, markeredgecolor="white", gid="path_start")
    for i in {0, k - 1}:
        ax.annotate(
            f"step {int(steps[i])}",
            (x[i], y[i]),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize="x-small",
            color="white",
        )
    lx, ly = _pca_labels(ds)
    ax.set_xlabel(lx)
    ax.set_ylabel(ly)
    return fig


def animate_path(ds: Any, path: Path, *, style: str = "paper", fps: int = 4) -> str | None:
    """Write the path growing checkpoint by checkpoint as a GIF (matplotlib's PillowWriter).

    Returns:
        ``None`` when written, else a one-line note saying why not (no Pillow writer).
    """
    from matplotlib import animation

    if not animation.PillowWriter.isAvailable():
        return "animation skipped: matplotlib's PillowWriter is unavailable (install pillow)."
    import os

    fig = path_figure(ds, style=style)
    ax = fig.axes[0]
    line = next(ln for ln in ax.lines if ln.get_gid() == "path")
    x, y = line.get_xdata(), line.get_ydata()
    title = ax.set_title("", fontsize="small")
    steps = np.asarray(ds["step"].values)

    def frame(i: int) -> list[Any]:
        line.set_data(x[: i + 1], y[: i + 1])
        title.set_text(f"step {int(steps[i])}")
        return [line, title]

    anim = animation.FuncAnimation(fig, frame, frames=len(x), blit=False)

    final = path.with_suffix(".gif")
    tmp = final.with_name(f".{final.stem}.tmp.gif")  # Pillow reads the format off the suffix
    try:
        anim.save(str(tmp), writer=animation.PillowWriter(fps=fps), dpi=100)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return None


def trajectory_figures(
    run_dir: str | Path,
    *,
    formats: tuple[str, ...] | str = ("png",),
    style: str = "paper",
    animate: bool = False,
) -> list[str]:
    """Draw a trajectory run's figures into ``RUN/figures``.

    ``trajectory_series`` (every measure against the step), ``trajectory_path`` (the PCA
    path over the surface, when one was computed) and, with ``animate``,
    ``trajectory_path.gif``.

    Returns:
        Notes on what was not drawn (one line each).
    """
    fmts = check_formats(formats)
    run = open_run(run_dir)
    ds = read_results(run.path)
    if "lambda_max" not in ds or "step" not in ds.dims:
        raise RunDirError(f"{run.path} holds no trajectory; run `landscape trajectory` first.")
    out = run.subdir("figures")
    notes: list[str] = []
    with style_context(style):
        save_figure(series_figure(ds, style=style), out / "trajectory_series", fmts)
        if "train_loss" in ds and "path_pc1" in ds:
            save_figure(path_figure(ds, style=style), out / "trajectory_path", fmts)
            if animate:
                note = animate_path(ds, out / "trajectory_path", style=style)
                if note:
                    notes.append(note)
        elif animate:
            notes.append("animation skipped: no PCA surface (run without --no-surface).")
    return notes
