"""``landscape demo``: train a small reference model, save it, and scan it.

The default is a CNN on digits; ``--model transformer`` is a tiny causal transformer on
modular addition.
"""

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
from landscape.errors import ConfigError
from landscape.experiments.demo import train_demo_model, train_transformer_demo
from landscape.io.rundir import default_run_dir

DEMO_MODELS = {
    "cnn": (train_demo_model, "CNN"),
    "transformer": (train_transformer_demo, "transformer (token accuracy on a + b mod 23)"),
}


@app.command("demo")
@friendly_errors
def demo(
    out: OutOpt = None,
    full: Annotated[
        bool,
        typer.Option("--full", help="The default scan preset instead of the quick one."),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of training and scan.")] = 0,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="cnn: a small CNN on digits; transformer: a tiny causal transformer"
            " on a + b mod 23 (next-token loss, under a minute on a CPU).",
        ),
    ] = "cnn",
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
    """Train a small CNN on digits (seconds on a CPU), or --model transformer, and scan it."""
    kind = model.strip().lower()
    if kind not in DEMO_MODELS:
        raise ConfigError(f"unknown --model {model!r}; use one of {', '.join(DEMO_MODELS)}.")
    if compare and kind != "cnn":
        raise ConfigError("--compare trains CNNs; drop --model transformer.")
    if compare:
        from landscape.cli.compare import demo_compare

        demo_compare(out, seed=seed, quick=not full, quiet=quiet)
        return
    name = "demo" if kind == "cnn" else f"demo-{kind}"
    out_dir = out or default_run_dir(name)
    # The model sits beside the run directory, so reruns reuse it and the run stays ours.
    model_path = out_dir.parent / (
        f"{name}-model.pt" if out is None else f"{out_dir.name}-model.pt"
    )
    if model_path.exists():
        console.print(f"reusing the trained demo model {model_path}")
    else:
        trainer, what = DEMO_MODELS[kind]
        with progress_bars(quiet) as prog:
            _, stats = trainer(model_path, seed=seed, progress=prog)
        console.print(
            f"trained the demo {what}: train accuracy {stats['train_accuracy']:.3f},"
            f" test accuracy {stats['test_accuracy']:.3f} → {model_path}"
        )
    cfg = build_scan_config("scan_default" if full else "scan_quick", {"seed": seed})
    opts = LoadOptions(checkpoint=Path(model_path), seed=seed)
    run_dir, summary = scan_checkpoint(opts, cfg, out_dir, resume=True, quiet=quiet, figures=True)
    print_summary(summary, run_dir)
