"""``landscape trajectory``: the same measures at every checkpoint of a run, and its PCA path."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from landscape.cli.app import app
from landscape.cli.common import (
    LoadOptions,
    OutOpt,
    OverwriteOpt,
    ParamsOpt,
    QuietOpt,
    ResumeOpt,
    SeedOpt,
    friendly_errors,
    load_bundle,
    out_console,
    progress_bars,
    run_name,
    with_load_options,
)
from landscape.cli.launch import create_run, distributed_context
from landscape.cli.scan import parse_grid
from landscape.engine.distributed import is_main_process
from landscape.errors import ConfigError
from landscape.io.checkpoint import parse_model_kwargs
from landscape.io.model_bundle import ModelBundle
from landscape.io.rundir import default_run_dir
from landscape.pipelines.trajectory import (
    CheckpointRef,
    Trajectory,
    TrajectoryConfig,
    resolve_checkpoints,
    run_trajectory,
    shared_loader,
)

# the checkpoint list may grow between runs (training went on): records are matched per
# checkpoint by step, path and hash, so it is not part of what a resumed run must match
_VOLATILE = ("out", "overwrite", "resume", "quiet", "figures", "animate", "checkpoints")


# options shared by `trajectory` and `trajectory-demo`
LlcOpt = Annotated[
    bool, typer.Option("--llc/--no-llc", help="Local learning coefficient (cheap SGLD).")
]
SurfaceOpt = Annotated[
    bool, typer.Option("--surface/--no-surface", help="Loss surface on the PCA plane.")
]
GridOpt = Annotated[str, typer.Option("--grid", help="PCA surface grid, e.g. 21x21.")]
FiguresOpt = Annotated[bool, typer.Option("--figures/--no-figures", help="Render figures.")]
AnimateOpt = Annotated[
    bool, typer.Option("--animate", help="Also write the path as an animated GIF.")
]


def _same_run(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in _VOLATILE}


def _fmt(x: float, spec: str = ".4g") -> str:
    return format(x, spec) if isinstance(x, float) and x == x else "—"


def _pm(mean: float, se: float) -> str:
    if not (isinstance(mean, float) and mean == mean):
        return "—"
    return f"{mean:.4g} ± {se:.2g}" if se == se and se > 0 else f"{mean:.4g}"


def trajectory_table(result: Trajectory, title: str = "landscape trajectory") -> Any:
    """A rich table with one row per checkpoint.

    Example:
        >>> from landscape.pipelines.trajectory import CheckpointMeasure, PathPCA
        >>> import numpy as np
        >>> from landscape.results import Estimate
        >>> p = CheckpointMeasure(5, "a.pt", "", 0.5, 0.9, 0.6, 0.8, 0.1, 2.0, 1e-7, True,
        ...                       (2.0,), Estimate(3.0, 0.1, 4), True, Estimate(2.5, 0.0, 4))
        >>> t = Trajectory((p,), PathPCA((1.0, 0.0), np.zeros((1, 2)), np.zeros(1)))
        >>> trajectory_table(t).row_count
        1
    """
    from rich.table import Table

    ev = result.pca.explained_variance
    t = Table(
        title=f"{title} · PCA plane explains {ev[0]:.1%} + {ev[1]:.1%} of the path",
        show_header=True,
    )
    for col in (
        "step",
        "train loss",
        "train acc",
        "test acc",
        "gap",
        "λmax",
        "trace",
        "LLC",
        "α",
        "‖θ‖",
        "d(first)",
        "d(last)",
    ):
        t.add_column(col, justify="right")
    fresh = set(result.measured)
    for p in result.points:
        lam = _pm(p.lambda_max, p.lambda_max_error)
        if not p.lambda_max_converged:
            lam += " [yellow]?[/yellow]"
        llc = _pm(p.llc.mean, p.llc.stderr)
        if p.llc_trustworthy is False:
            llc = f"[dim]{llc}[/dim]"
        t.add_row(
            str(p.step) + ("" if p.step in fresh or not result.measured else " [dim](kept)[/dim]"),
            _fmt(p.train_loss),
            _fmt(p.train_accuracy, ".3f"),
            _fmt(p.test_accuracy, ".3f"),
            _fmt(p.gap),
            lam,
            _pm(p.trace.mean, p.trace.stderr),
            llc,
            _fmt(p.alpha, ".3g"),
            _fmt(p.param_norm),
            _fmt(p.distance_first),
            _fmt(p.distance_last),
        )
    return t


def print_trajectory(result: Trajectory, run_dir: Path) -> None:
    """Print the table, the notes and the run directory."""
    out_console.print(trajectory_table(result))
    kept = len(result.points) - len(result.measured)
    if kept:
        out_console.print(f"{kept} checkpoint(s) kept from the earlier run (--resume)")
    if result.surface is not None:
        s = result.surface
        out_console.print(
            f"PCA surface {'x'.join(map(str, s.shape))} around the final checkpoint,"
            f" min train loss {_fmt(float(s.to_dict().get('min_loss', float('nan'))))}"
        )
    for note in result.notes:
        out_console.print(f"[yellow]{note}[/yellow]")
    out_console.print(f"run directory: [bold]{run_dir}[/bold]")


def _loader(opts: LoadOptions, refs: list[CheckpointRef]) -> tuple[Any, dict[str, Any]]:
    """The shared loader (data loaded once, from the first checkpoint's options)."""
    first, loaded = load_bundle(dataclasses.replace(opts, checkpoint=refs[0].path))
    shared = shared_loader(
        first.data,
        first.loss,
        model=opts.model,
        model_kwargs=parse_model_kwargs(opts.model_kwargs),
        trust=opts.trust,
        device=first.device,
        dtype=first.dtype,
    )
    reuse = {"bundle": first}

    def load(path: Path) -> ModelBundle:
        bundle = reuse.pop("bundle", None)
        if bundle is not None and path == refs[0].path:
            return bundle
        return shared(path)

    cfg = opts.to_config(loaded)
    for key in ("checkpoint", "checkpoint_sha256"):
        cfg.pop(key, None)
    return load, cfg


def trajectory_run(
    spec: str | list[str],
    opts: LoadOptions,
    cfg: TrajectoryConfig,
    out: Path | None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    quiet: bool = False,
    figures: bool = True,
    animate: bool = False,
) -> tuple[Path, Trajectory]:
    """Resolve, load, measure, draw; return ``(run_dir, trajectory)``."""
    refs = resolve_checkpoints(spec)
    ctx = distributed_context(opts)
    try:
        with progress_bars(quiet or not ctx.is_main) as prog:
            load, load_cfg = _loader(opts, refs)
            out_dir = ctx.broadcast_object(
                out or default_run_dir("trajectory-" + run_name(refs[-1].path))
            )
            config = {
                "command": "trajectory",
                "checkpoints": [spec] if isinstance(spec, str) else list(spec),
                **load_cfg,
                "trajectory": cfg.to_dict(),
            }
            run = create_run(
                ctx, out_dir, config, overwrite=overwrite, resume=resume, compare_keys=_same_run
            )
            result = run_trajectory(refs, load, run, cfg, progress=prog, context=ctx)
    finally:
        ctx.shutdown()
    if not ctx.is_main:
        return run.path, result
    if figures:
        from landscape.viz.trajectory_plots import trajectory_figures

        notes = trajectory_figures(run.path, animate=animate)
        if notes:
            result = dataclasses.replace(result, notes=result.notes + tuple(notes))
    return run.path, result


@app.command("trajectory")
@friendly_errors
@with_load_options(checkpoint="checkpoints")
def trajectory(
    checkpoints: Annotated[
        list[str],
        typer.Argument(
            help="A folder of checkpoints, a glob like 'ckpts/*.pt', or checkpoint files;"
            " ordered by the step stored in each checkpoint, else the last number in its name."
        ),
    ],
    seed: SeedOpt = 0,
    params: ParamsOpt = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    top_k: Annotated[int, typer.Option("--top-k", help="Top Hessian eigenvalues.")] = 3,
    llc: LlcOpt = True,
    weights: Annotated[
        bool, typer.Option("--weights/--no-weights", help="Weight-spectrum α.")
    ] = True,
    surface: SurfaceOpt = True,
    grid: GridOpt = "21x21",
    figures: FiguresOpt = True,
    animate: AnimateOpt = False,
    quiet: QuietOpt = False,
    *,
    opts: LoadOptions,
) -> None:
    """Measure every checkpoint of a training run with one configuration, and its PCA path."""
    opts = dataclasses.replace(opts, checkpoint=Path(checkpoints[0]))
    dims = parse_grid(grid)
    if len(dims) != 2:
        raise ConfigError(f"--grid {grid} must have two sizes (the PCA plane), like 21x21.")
    cfg = TrajectoryConfig(
        top_k=top_k,
        llc=llc,
        weights=weights,
        surface=surface,
        surface_grid=(dims[0], dims[1]),
        params=tuple(params) if params else None,
        seed=seed,
    )
    cfg.validate()
    run_dir, result = trajectory_run(
        checkpoints,
        opts,
        cfg,
        out,
        overwrite=overwrite,
        resume=resume,
        quiet=quiet,
        figures=figures,
        animate=animate,
    )
    if is_main_process():
        print_trajectory(result, run_dir)


@app.command("trajectory-demo")
@friendly_errors
def trajectory_demo(
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 30,
    every: Annotated[int, typer.Option("--every", help="A checkpoint every N epochs.")] = 2,
    hidden: Annotated[int, typer.Option("--hidden", help="Hidden width of the MLP.")] = 32,
    seed: SeedOpt = 0,
    llc: LlcOpt = True,
    surface: SurfaceOpt = True,
    grid: GridOpt = "21x21",
    figures: FiguresOpt = True,
    animate: AnimateOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a small MLP on digits (a checkpoint every few epochs) and measure its trajectory."""
    from landscape.experiments.trajectory_demo import DemoRun, run_trajectory_demo

    dims = parse_grid(grid)
    if len(dims) != 2:
        raise ConfigError(f"--grid {grid} must have two sizes (the PCA plane), like 21x21.")
    demo = DemoRun(epochs=epochs, every=every, hidden=hidden, seed=seed)
    cfg = TrajectoryConfig(llc=llc, surface=surface, surface_grid=(dims[0], dims[1]), seed=seed)
    cfg.validate()
    with progress_bars(quiet) as prog:
        run, result = run_trajectory_demo(
            out or default_run_dir("trajectory-demo"),
            demo,
            cfg,
            overwrite=overwrite,
            resume=resume,
            progress=prog,
        )
    if figures:
        from landscape.viz.trajectory_plots import trajectory_figures

        notes = trajectory_figures(run.path, animate=animate)
        result = dataclasses.replace(result, notes=result.notes + tuple(notes))
    print_trajectory(result, run.path)
