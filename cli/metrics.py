"""``landscape metrics``: flatness and sharpness of one checkpoint, with invariance stated."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from landscape.cli.app import app
from landscape.cli.common import (
    LoadOptions,
    OutOpt,
    QuietOpt,
    SeedOpt,
    console,
    friendly_errors,
    load_bundle,
    out_console,
    param_space,
    progress_bars,
    run_name,
    with_load_options,
)
from landscape.io.rundir import RunDir, default_run_dir, versions
from landscape.metrics import METRICS, MetricsReport, compute_metrics
from landscape.metrics._util import positive
from landscape.metrics.registry import REGISTRY, check_names
from landscape.results import Estimate


def _fmt(x: float) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.6g}"


def metric_help() -> str:
    """The ``--metric`` help: every registered metric name, in report order.

    Example:
        >>> metric_help().startswith("Metric to compute (repeatable): loss, accuracy,")
        True
    """
    return f"Metric to compute (repeatable): {', '.join(s.name for s in REGISTRY)}."


def _complete_metric(incomplete: str) -> list[str]:
    return [s.name for s in REGISTRY if s.name.startswith(incomplete)]


def metrics_table(report: MetricsReport) -> Table:
    """A rich table: metric, value, standard error, invariance; skipped metrics say why.

    Example:
        >>> t = metrics_table(MetricsReport({"loss": 0.5}, False, {"loss": True}))
        >>> t.row_count
        1
    """
    table = Table(title="flatness and sharpness", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("± stderr", justify="right")
    table.add_column("invariant?", justify="center")
    for name, v in report.values.items():
        if isinstance(v, Estimate):
            value, err = _fmt(v.mean), (_fmt(v.stderr) if v.stderr > 0 else "exact")
        else:
            value, err = _fmt(float(v)), ""
        inv = "yes" if report.invariant.get(name) else "no"
        table.add_row(name, value, err, inv)
    for name, reason in report.skipped.items():
        table.add_row(name, "skipped", reason, "", style="dim")
    return table


@app.command("metrics")
@friendly_errors
@with_load_options()
def metrics_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (any supported format).")],
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help=metric_help(), autocompletion=_complete_metric),
    ] = None,
    radius: Annotated[
        float, typer.Option("--radius", help="ε of eps-sharpness (and ρ of adaptive sharpness).")
    ] = 0.05,
    sigma: Annotated[float, typer.Option("--sigma", help="σ of average sharpness.")] = 0.01,
    canonicalize: Annotated[
        bool | None,
        typer.Option(
            "--canonicalize/--no-canonicalize",
            help="Rebalance ReLU layers to the minimum-norm representative first"
            " (default: when the architecture allows it).",
        ),
    ] = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    quiet: QuietOpt = False,
    *,
    opts: LoadOptions,
) -> None:
    """Compute flatness/sharpness metrics and write the summary's `metrics` section."""
    names = check_names(metric) if metric else None
    radius = positive("--radius", radius)
    sigma = positive("--sigma", sigma)
    bundle, loaded = load_bundle(opts)
    space = param_space(bundle, opts)
    t0 = time.perf_counter()
    with progress_bars(quiet) as p:
        report = compute_metrics(
            space,
            names=names,
            seed=seed,
            canonicalize=canonicalize,
            radius=radius,
            sigma=sigma,
            progress=p,
        )
    elapsed = time.perf_counter() - t0
    path = Path(out) if out is not None else default_run_dir(f"{run_name(checkpoint)}-metrics")
    config = {
        **opts.to_config(loaded),
        "command": "metrics",
        "metrics": names or list(METRICS),
        "radius": radius,
        "sigma": sigma,
        "canonicalize": canonicalize,
    }
    summary: dict[str, Any] = {"metrics": report.to_dict(), "timing": {"metrics": elapsed}}
    if (path / "config.json").is_file():
        run = RunDir(path)  # add the metrics section to an existing run (e.g. a scan)
    else:
        run = RunDir.create(path, config)
        summary.update(
            {
                "name": run_name(checkpoint),
                "seed": seed,
                "versions": versions(),
                "model": {
                    "num_params": space.dim,
                    "format": loaded.format,
                    "sha256": loaded.sha256,
                    "factory": loaded.factory,
                    "path": loaded.path,
                },
                "data": bundle.data.describe(),
                "loss_function": bundle.loss.name,
                "loss_reduction": bundle.loss.reduction,
            }
        )
        for k in ("loss", "accuracy", "test_loss", "test_accuracy", "generalization_gap"):
            if k in report.values:
                summary[k] = report.value(k)
    run.update_summary(summary)
    out_console.print(metrics_table(report))
    state = "yes" if report.canonicalized else "no"
    out_console.print(f"canonicalized: {state}")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    out_console.print(f"wrote {run.summary_path}")
