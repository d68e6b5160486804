"""``landscape experiment NAME``: the compression / many-minima, Boolean and lottery experiments."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from landscape.cli.app import app
from landscape.cli.common import (
    OutOpt,
    OverwriteOpt,
    QuietOpt,
    ResumeOpt,
    console,
    friendly_errors,
    out_console,
    progress_bars,
)
from landscape.errors import ConfigError
from landscape.experiments.compression import (
    PRESETS,
    CompressionSummary,
    load_config,
    run_compression,
)
from landscape.io.rundir import default_run_dir

if TYPE_CHECKING:
    from landscape.experiments.lottery import Interval, LotteryResult

EXPERIMENTS = ("compression", "boolean", "lottery")


def print_verdict(summary: CompressionSummary, run_dir: Path) -> None:
    """Print the verdict table."""
    from rich.table import Table

    def f(x: float | None, spec: str = ".2f") -> str:
        return format(x, spec) if isinstance(x, float) and x == x else "—"

    colors = {
        "supports": "green",
        "contradicts": "red",
        "confounded": "magenta",
        "inconclusive": "yellow",
    }
    title = "negative control" if summary.negative_control else "compression experiment"
    t = Table(
        title=f"{title} · {summary.num_entering}/{summary.num_runs} networks enter the tests",
        show_header=True,
    )
    cols = ("dataset", "measure", "ρ noise", "Holm p", "ρ partial", "ρ matched", "verdict")
    for col in cols:
        t.add_column(
            col,
            justify="left" if col in ("dataset", "measure", "verdict") else "right",
            no_wrap=col == "verdict",
            min_width=12 if col == "verdict" else None,
            overflow="fold",
        )
    for v in summary.verdicts:
        c = colors.get(v.verdict, "white")
        t.add_row(
            v.dataset,
            v.measure,
            f(v.noise.rho if v.noise else None),
            f(v.noise.p_holm if v.noise else None, ".3g"),
            f(v.partial.rho if v.partial else None),
            f(v.matched.rho if v.matched else None),
            f"[{c}]{v.verdict}[/{c}]",
        )
    out_console.print(t)
    moved = [c.measure for c in summary.control if not c.invariant]
    if summary.control:
        out_console.print(
            "function-preserving rescaling (measured canonicalized): moves "
            + (", ".join(moved) or "nothing")
        )
    for note in summary.notes:
        out_console.print(f"[yellow]{note}[/yellow]")
    if summary.not_reached:
        out_console.print(
            f"[yellow]{len(summary.not_reached)} to-loss runs did not reach the target loss"
            " (listed in verdict.md)[/yellow]"
        )
    out_console.print(
        f"computed {summary.runs_computed} runs, reused {summary.runs_reused};"
        f" run directory: [bold]{run_dir}[/bold]"
    )


def run_boolean_command(
    preset: str | None,
    config: Path | None,
    out: Path | None,
    resume: bool,
    overwrite: bool,
    figures: bool,
    quiet: bool,
) -> None:
    """Run the Boolean experiment and print its table."""
    from rich.table import Table

    from landscape.experiments import boolean

    cfg = boolean.load_config(preset, config)
    out_dir = out or default_run_dir("boolean")
    with progress_bars(quiet) as prog:
        summary = boolean.run_boolean(
            cfg, out_dir, resume=resume, overwrite=overwrite, progress=prog
        )
    if figures:
        from landscape.viz.boolean_plots import boolean_figures

        paths = boolean_figures(out_dir)
        if not quiet:
            console.print(f"{len(paths)} figures in {Path(out_dir) / 'figures'}")
    t = Table(title="Boolean experiment · simplicity bias of P(f)", show_header=True)
    t.add_column("quantity", justify="left")
    t.add_column("value", justify="right")
    for label, value in boolean.write_summary_table(summary):
        t.add_row(label, value)
    out_console.print(t)
    out_console.print(f"run directory: [bold]{out_dir}[/bold]")


def _pm(iv: Interval, spec: str = ".3f") -> str:
    if iv.n == 0:
        return "—"
    half = format(iv.half_width, spec) if iv.n >= 2 else "—"
    return f"{format(iv.mean, spec)} ± {half}"


def print_lottery(result: LotteryResult, run_dir: Path | None) -> None:
    """Print the per-sparsity table of the lottery experiment and its verdict sentences."""
    from rich import box
    from rich.table import Table

    cfg = result.config
    r0 = result.runs[0]
    t = Table(
        title=(
            f"lottery tickets · IMP p = {cfg.prune_fraction:g}, rewind to step {r0.rewind_step}"
            f" of {r0.total_steps} · {len(cfg.seeds)} seeds, means ± 95% t-interval"
        ),
        show_header=True,
        box=box.SIMPLE_HEAD,
    )
    for col in ("weights\nleft", "test\naccuracy", "barrier\ncopies", "barrier\nvs dense"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("basin\ncopies", justify="left", no_wrap=True)
    t.add_column("basin\nvs dense", justify="left", no_wrap=True)
    colors = {"same basin": "green", "different basin": "red"}
    short = {"same basin": "same", "different basin": "different", "same network": "—"}
    for lv in result.levels:
        sc = colors.get(lv.stability, "yellow")
        dc = colors.get(lv.dense_verdict, "white")
        t.add_row(
            f"{100 * lv.remaining:.1f}%",
            _pm(lv.test_acc),
            _pm(lv.instability),
            "—" if lv.level == 0 else _pm(lv.dense_barrier),
            f"[{sc}]{short.get(lv.stability, 'undecided')}[/{sc}]",
            f"[{dc}]{short.get(lv.dense_verdict, 'undecided')}[/{dc}]",
        )
    out_console.print(t)
    for lv in result.levels:
        out_console.print(lv.sentence())
    where = f"; run directory: [bold]{run_dir}[/bold]" if run_dir is not None else ""
    out_console.print(f"{result.seconds:.1f} s{where}")


def run_lottery_command(
    *,
    rounds: int | None,
    prune_fraction: float | None,
    rewind_step: int | None,
    seeds: int | None,
    quick: bool,
    out: Path | None,
    overwrite: bool,
    figures: bool,
    quiet: bool,
) -> None:
    """Run the lottery experiment and print its table."""
    from landscape.experiments.lottery import LotteryConfig, run_lottery, with_overrides

    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}.")
    base = LotteryConfig.quick() if quick else LotteryConfig()
    cfg = with_overrides(
        base,
        rounds=rounds,
        prune_fraction=prune_fraction,
        rewind_step=rewind_step,
        seeds=None if seeds is None else tuple(range(seeds)),
    )
    out_dir = out or default_run_dir("lottery")
    with progress_bars(quiet) as prog:
        result = run_lottery(cfg, out_dir, overwrite=overwrite, progress=prog)
    if figures:
        from landscape.viz.lottery_plots import plot_lottery

        (fig,) = plot_lottery(result.levels, Path(out_dir) / "figures" / "lottery.png")
        if not quiet:
            console.print(f"figure: {fig}")
    print_lottery(result, Path(out_dir))


@app.command("experiment")
@friendly_errors
def experiment(
    name: Annotated[str, typer.Argument(help="Which experiment: compression, boolean or lottery.")],
    preset: Annotated[
        str | None,
        typer.Option("--preset", help=f"{', '.join(PRESETS)} (default: default)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file with a [compression] table (replaces --preset)."),
    ] = None,
    out: OutOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Networks trained in parallel (processes).")
    ] = None,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Render figures.")] = True,
    rounds: Annotated[
        int | None, typer.Option("--rounds", help="lottery: pruning rounds (default 5).")
    ] = None,
    prune_fraction: Annotated[
        float | None,
        typer.Option(
            "--prune-fraction", help="lottery: fraction of remaining weights pruned per round."
        ),
    ] = None,
    rewind_step: Annotated[
        int | None,
        typer.Option("--rewind-step", help="lottery: step rewound to (default: one epoch)."),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", help="lottery: number of seeds (default 3).")
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="lottery: a seconds-long run (600 digits, 3 rounds).")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Run an experiment: `compression`, `boolean` or `lottery`.

    `compression`: many minima and basin measures; `boolean`: simplicity bias of P(f);
    `lottery`: iterative magnitude pruning with rewinding and linear mode connectivity.
    """
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; use {', '.join(EXPERIMENTS)}.")
    if preset is not None and config is not None:
        raise ConfigError("give --preset or --config, not both.")
    lottery_opts = {
        "--rounds": rounds,
        "--prune-fraction": prune_fraction,
        "--rewind-step": rewind_step,
        "--seeds": seeds,
        "--quick": quick or None,
    }
    if name == "lottery":
        if preset is not None or config is not None or resume or workers is not None:
            raise ConfigError(
                "the lottery experiment takes --rounds, --prune-fraction, --rewind-step,"
                " --seeds and --quick, not --preset, --config, --resume or --workers."
            )
        run_lottery_command(
            rounds=rounds,
            prune_fraction=prune_fraction,
            rewind_step=rewind_step,
            seeds=seeds,
            quick=quick,
            out=out,
            overwrite=overwrite,
            figures=figures,
            quiet=quiet,
        )
        return
    given = [k for k, v in lottery_opts.items() if v is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} only apply to `landscape experiment lottery`.")
    if name == "boolean":
        run_boolean_command(preset, config, out, resume, overwrite, figures, quiet)
        return
    cfg = load_config(preset, config)
    if workers is not None:
        cfg = dataclasses.replace(cfg, workers=workers)
        cfg.validate()
    out_dir = out or default_run_dir("compression")
    with progress_bars(quiet) as prog:
        summary = run_compression(cfg, out_dir, resume=resume, overwrite=overwrite, progress=prog)
    if figures:
        from landscape.viz.basins_plots import experiment_figures

        paths = experiment_figures(out_dir)
        if not quiet:
            console.print(f"{len(paths)} figures in {Path(out_dir) / 'figures'}")
    print_verdict(summary, Path(out_dir))
