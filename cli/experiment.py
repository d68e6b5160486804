"""``landscape experiment NAME``: the compression / many-minima and Boolean experiments."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

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

EXPERIMENTS = ("compression", "boolean")


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


@app.command("experiment")
@friendly_errors
def experiment(
    name: Annotated[str, typer.Argument(help="Which experiment: compression or boolean.")],
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
    quiet: QuietOpt = False,
) -> None:
    """Run an experiment: `compression` (many minima) or `boolean` (simplicity bias, P(f))."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; use {', '.join(EXPERIMENTS)}.")
    if preset is not None and config is not None:
        raise ConfigError("give --preset or --config, not both.")
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
