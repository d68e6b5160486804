"""``landscape demo``: train a small CNN on digits, save it, and scan it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from landscape.cli.app import app
from landscape.cli.common import (
    LoadOptions,
    OutOpt,
    QuietOpt,
    console,
    friendly_errors,
    progress_bars,
)
from landscape.cli.scan import build_scan_config, print_summary, scan_checkpoint
from landscape.experiments.demo import train_demo_model
from landscape.io.rundir import default_run_dir


@app.command("demo")
@friendly_errors
def demo(
    out: OutOpt = None,
    full: Annotated[
        bool,
        typer.Option("--full", help="The default scan preset instead of the quick one."),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of training and scan.")] = 0,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Train runs that differ in batch size and learning rate,"
            " scan and compare them, and write a report.",
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a small CNN on digits (seconds on a CPU), save it, and scan it."""
    if compare:
        from landscape.cli.compare import demo_compare

        demo_compare(out, seed=seed, quick=not full, quiet=quiet)
        return
    out_dir = out or default_run_dir("demo")
    # The model sits beside the run directory, so reruns reuse it and the run stays ours.
    model_path = out_dir.parent / ("demo-model.pt" if out is None else f"{out_dir.name}-model.pt")
    if model_path.exists():
        console.print(f"reusing the trained demo model {model_path}")
    else:
        with progress_bars(quiet) as prog:
            _, stats = train_demo_model(model_path, seed=seed, progress=prog)
        console.print(
            f"trained the demo CNN: train accuracy {stats['train_accuracy']:.3f},"
            f" test accuracy {stats['test_accuracy']:.3f} → {model_path}"
        )
    cfg = build_scan_config("scan_default" if full else "scan_quick", {"seed": seed})
    opts = LoadOptions(checkpoint=Path(model_path), seed=seed)
    run_dir, summary = scan_checkpoint(opts, cfg, out_dir, resume=True, quiet=quiet, figures=True)
    print_summary(summary, run_dir)
