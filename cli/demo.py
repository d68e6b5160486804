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
    quick: Annotated[
        bool, typer.Option("--quick", help="Fewer probes and a coarse surface.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of training and scan.")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Train a small CNN on digits (seconds on a CPU), save it, and scan it."""
    out_dir = out or default_run_dir("demo")
    model_path = (
        out_dir.parent / f"{out_dir.name}-model.pt" if out is None else out_dir / "model.pt"
    )
    if model_path.exists():
        console.print(f"reusing the trained demo model {model_path}")
    else:
        with progress_bars(quiet) as prog:
            _, stats = train_demo_model(model_path, seed=seed, progress=prog)
        console.print(
            f"trained the demo CNN: train accuracy {stats['train_accuracy']:.3f},"
            f" test accuracy {stats['test_accuracy']:.3f} → {model_path}"
        )
    cfg = build_scan_config("scan_quick" if quick else "scan_default", {"seed": seed})
    opts = LoadOptions(checkpoint=Path(model_path), seed=seed)
    run_dir, summary = scan_checkpoint(opts, cfg, out_dir, resume=True, quiet=quiet, figures=True)
    print_summary(summary, run_dir)
