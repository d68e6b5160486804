"""``landscape compare``: rank runs by flatness, against their generalization gap, with plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from landscape.cli.app import app
from landscape.cli.common import (
    BatchSizeOpt,
    DataOpt,
    DeviceOpt,
    DtypeOpt,
    LoadOptions,
    LossOpt,
    MaxSamplesOpt,
    ModelKwargsOpt,
    ModelOpt,
    QuietOpt,
    TrustOpt,
    console,
    friendly_errors,
    out_console,
    run_name,
)
from landscape.compare import (
    Comparison,
    compare_runs,
    format_value,
    load_runs,
    short_label,
    write_comparison,
)
from landscape.errors import ConfigError, RunDirError
from landscape.io.rundir import default_run_dir
from landscape.pipelines.scan import ScanConfig

FORMATS = ("png", "pdf", "svg")


def parse_formats(text: str) -> tuple[str, ...]:
    """Parse ``png,pdf`` into a tuple of figure formats.

    Example:
        >>> parse_formats("PNG, svg")
        ('png', 'svg')
    """
    fmts = tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    bad = [f for f in fmts if f not in FORMATS]
    if not fmts or bad:
        raise ConfigError(
            f"--format {text!r} is not supported; give a comma list of png, pdf, svg."
        )
    return fmts


def _shared_scan_config(
    run_dirs: list[Path], preset: str | None, overrides: dict[str, Any]
) -> tuple[ScanConfig, dict[str, Any]]:
    """One scan configuration for every checkpoint (taken from a given run if any)."""
    from landscape.cli.scan import build_scan_config
    from landscape.io.rundir import read_json

    base_opts: dict[str, Any] = {}
    if run_dirs and preset is None:
        cfg = read_json(run_dirs[0] / "config.json")
        scan = dict(cfg.get("scan") or {})
        for key in ("data", "loss", "max_samples", "test_fraction", "seed", "batch_size"):
            if cfg.get(key) is not None:
                base_opts[key] = cfg[key]
        fields = {f for f in ScanConfig.__dataclass_fields__}
        merged = {k: v for k, v in scan.items() if k in fields}
        merged.update({k: v for k, v in overrides.items() if v is not None})
        if "surface_grid" in merged:
            merged["surface_grid"] = tuple(merged["surface_grid"])
        sc = ScanConfig(**merged)
        sc.validate()
        return sc, base_opts
    return build_scan_config(preset, overrides), base_opts


def scan_checkpoints(
    checkpoints: list[Path],
    run_dirs: list[Path],
    out_dir: Path,
    opts: LoadOptions,
    given: dict[str, Any],
    preset: str | None,
    grid: tuple[int, ...] | None,
    quiet: bool,
) -> list[Path]:
    """Scan ``checkpoints`` into ``out_dir/runs/`` with ONE shared configuration.

    The scan settings and data options come from the first given run directory (so the
    new scans are comparable with it) unless a preset is named; options given on the
    command line override them. Finished scans are resumed, not recomputed.
    """
    from landscape.cli.scan import scan_checkpoint

    overrides: dict[str, Any] = {"seed": given.get("seed"), "surface_grid": grid}
    cfg, base = _shared_scan_config(run_dirs, preset, overrides)
    names: dict[str, int] = {}
    paths = []
    for ck in checkpoints:
        name = run_name(ck)
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:
            name = f"{name}-{names[name]}"
        o = LoadOptions(
            checkpoint=ck,
            model=opts.model,
            model_kwargs=opts.model_kwargs,
            trust=opts.trust,
            data=given.get("data") or base.get("data"),
            loss=given.get("loss") or base.get("loss"),
            max_samples=given.get("max_samples") or base.get("max_samples"),
            batch_size=opts.batch_size,
            test_fraction=given.get("test_fraction") or base.get("test_fraction", 0.2),
            device=opts.device,
            dtype=opts.dtype,
            seed=given["seed"] if given.get("seed") is not None else base.get("seed", 0),
        )
        console.print(f"scanning {ck} → {out_dir / 'runs' / name}")
        run_dir, _ = scan_checkpoint(
            o, cfg, out_dir / "runs" / name, resume=True, quiet=quiet, figures=False
        )
        paths.append(run_dir)
    return paths


def _cli_label(key: str, label: str) -> str:
    """A compact label that keeps the metrics section's spectral values apart."""
    short = short_label(key)
    if label.endswith("(canonicalized)"):
        return f"{short} (canon.)"
    if label.endswith("(metrics section)"):
        return f"{short} (metrics)"
    return short


def print_comparison(comparison: Comparison) -> None:
    """Print the metrics (value ± error, rank) and the correlations with the gap."""
    from rich.table import Table

    t = comparison.table
    tab = Table(title="landscape compare · rank 1 = flattest (or smallest gap)")
    tab.add_column("metric")
    for name in t.runs:
        tab.add_column(name, justify="right")
    tab.add_column("τ (gap)", justify="right")
    for r in t.rows:
        cells = []
        for v, k in zip(r.values, r.ranks, strict=True):
            text = format_value(v)
            if k is not None:
                text += f" [bold]({k})[/bold]" if k == 1 else f" ({k})"
            cells.append(text)
        c = t.correlation(r.key)
        tau = f"{c.kendall_tau:+.2f}" if c is not None and math.isfinite(c.kendall_tau) else ""
        style = "dim" if r.role in ("performance", "info") else None
        tab.add_row(_cli_label(r.key, r.label), *cells, tau, style=style)
    out_console.print(tab)
    if t.correlations:
        ct = Table(title="rank correlation with the generalization gap")
        for col in ("metric", "n", "Kendall τ", "p", "Spearman ρ", "p", "CI (τ)"):
            ct.add_column(col, justify="left" if col == "metric" else "right")
        for c in t.correlations:
            if not math.isfinite(c.kendall_tau):
                ct.add_row(
                    _cli_label(c.metric, t.row(c.metric).label), str(c.n), "—", "—", "—", "—", "—"
                )
                continue
            ci = (
                f"[{c.kendall_ci[0]:+.2f}, {c.kendall_ci[1]:+.2f}]"
                if c.ci_reliable
                else "too few runs"
            )
            ct.add_row(
                _cli_label(c.metric, t.row(c.metric).label),
                str(c.n),
                f"{c.kendall_tau:+.2f}",
                f"{c.kendall_p:.2g}",
                f"{c.spearman_rho:+.2f}",
                f"{c.spearman_p:.2g}",
                ci,
            )
        out_console.print(ct)
        out_console.print(f"[dim]{t.correlations[0].note}[/dim]")
    for note in (*comparison.check.notes, *t.notes):
        out_console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def write_outputs(
    comparison: Comparison,
    out_dir: Path,
    formats: tuple[str, ...],
    *,
    report: bool,
    render_3d: bool,
    title: str = "landscape comparison",
) -> dict[str, Any]:
    """Write table.csv/json, figures/ and (with ``report``) report.html into ``out_dir``."""
    from landscape.viz.compare_plots import comparison_figures
    from landscape.viz.report import figure_sources, write_comparison_report

    written: dict[str, Any] = dict(write_comparison(comparison, out_dir))
    fmts = formats if (not report or "png" in formats) else (*formats, "png")
    figs = comparison_figures(comparison, out_dir / "figures", fmts, render_3d=render_3d)
    written["figures"] = figs
    if report:
        written["report.html"] = write_comparison_report(
            comparison,
            figure_sources(figs.files),
            out_dir / "report.html",
            captions=figs.captions,
            skipped=figs.skipped,
            title=title,
        )
    return written


@app.command("compare")
@friendly_errors
def compare(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Run directories (from `landscape scan`) and/or checkpoint files."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Comparison directory (default runs/compare-<time>)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Compare even when scan settings differ.")
    ] = False,
    report: Annotated[
        bool, typer.Option("--report", help="Also write a self-contained report.html.")
    ] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="Figure formats, a comma list of png, pdf, svg.")
    ] = "png",
    surfaces: Annotated[
        bool,
        typer.Option(
            "--surfaces/--no-surfaces",
            help="Compare surfaces (needs one architecture); --no-surfaces: scalars only.",
        ),
    ] = True,
    render_3d: Annotated[
        bool, typer.Option("--render-3d/--no-render-3d", help="PyVista panel of the surfaces.")
    ] = True,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", help="Bootstrap replicates for the intervals.")
    ] = 2000,
    preset: Annotated[
        str | None,
        typer.Option("--preset", help="Scan preset for checkpoints (default: a given run's)."),
    ] = None,
    grid: Annotated[
        str | None, typer.Option("--grid", help="Surface grid for checkpoints, e.g. 21x21.")
    ] = None,
    model: ModelOpt = None,
    model_kwargs: ModelKwargsOpt = None,
    trust_checkpoint: TrustOpt = False,
    data: DataOpt = None,
    loss: LossOpt = None,
    max_samples: MaxSamplesOpt = None,
    batch_size: BatchSizeOpt = 1024,
    test_fraction: Annotated[
        float | None,
        typer.Option("--test-fraction", help="Held-out fraction when data has no test split."),
    ] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of checkpoint scans and the bootstrap.")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Rank runs by flatness, against their generalization gap, with plots and a report.

    Prints every metric with its error and rank, and the rank correlation of each metric
    with the generalization gap; writes table.csv/json, figures/ and report.html.

    Checkpoints are scanned first, all with one shared configuration (the first run
    directory's, or --preset), so their numbers are comparable.
    """
    from landscape.cli.scan import parse_grid

    formats = parse_formats(fmt)
    if bootstrap < 100:
        raise ConfigError(f"--bootstrap must be at least 100, got {bootstrap}.")
    if len(inputs) < 2:
        raise ConfigError(
            f"a comparison needs at least two runs, got {len(inputs)}; give two or more run"
            " directories or checkpoints."
        )
    run_dirs: list[Path] = []
    checkpoints: list[Path] = []
    order: list[tuple[str, int]] = []
    for p in inputs:
        if p.is_dir():
            order.append(("run", len(run_dirs)))
            run_dirs.append(p)
        elif p.is_file():
            order.append(("ckpt", len(checkpoints)))
            checkpoints.append(p)
        else:
            raise RunDirError(
                f"{p} does not exist; give run directories written by `landscape scan` or"
                " checkpoint files."
            )
    out_dir = out or default_run_dir("compare")
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"--out {out_dir} is a file; give a directory.")
    if any(out_dir.resolve() == r.resolve() for r in run_dirs):
        raise RunDirError(f"--out {out_dir} is one of the compared runs; choose another folder.")
    load_runs(run_dirs, arrays=False)  # fail fast on a broken run before scanning anything
    scanned: list[Path] = []
    if checkpoints:
        opts = LoadOptions(
            checkpoint=checkpoints[0],
            model=model,
            model_kwargs=model_kwargs,
            trust=trust_checkpoint,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
        )
        given = {
            "data": data,
            "loss": loss,
            "max_samples": max_samples,
            "test_fraction": test_fraction,
            "seed": seed,
        }
        scanned = scan_checkpoints(
            checkpoints,
            run_dirs,
            out_dir,
            opts,
            given,
            preset,
            parse_grid(grid) if grid else None,
            quiet,
        )
    paths = [run_dirs[i] if kind == "run" else scanned[i] for kind, i in order]
    cmp = compare_runs(paths, force=force, surfaces=surfaces, n_boot=bootstrap, seed=seed or 0)
    written = write_outputs(cmp, out_dir, formats, report=report, render_3d=render_3d)
    print_comparison(cmp)
    figs = written["figures"]
    for name, why in figs.skipped.items():
        console.print(f"[yellow]figure {name} skipped:[/yellow] {why}")
    out_console.print(f"comparison directory: [bold]{out_dir}[/bold]")
    if report:
        out_console.print(f"report: [bold]{written['report.html']}[/bold]")


def demo_compare(out: Path | None, *, seed: int, quick: bool, quiet: bool) -> Path:
    """``landscape demo --compare``: train, scan, compare and report the shipped example."""
    from landscape.cli.common import progress_bars
    from landscape.experiments.demo_compare import run_demo_compare

    out_dir = out or default_run_dir("demo-compare")
    with progress_bars(quiet) as prog:
        result = run_demo_compare(out_dir, seed=seed, quick=quick, progress=prog)
    from rich.table import Table

    tab = Table(title="demo runs (one initialization, trained to the same training loss)")
    for col in ("run", "epochs", "train loss", "test loss", "test acc", "seconds"):
        tab.add_column(col, justify="left" if col == "run" else "right")
    for path, st in zip(result.run_dirs, result.training, strict=True):
        tab.add_row(
            path.name,
            f"{st.get('epochs', float('nan')):.0f}",
            f"{st['train_loss']:.4f}",
            f"{st['test_loss']:.4f}",
            f"{st['test_accuracy']:.3f}",
            f"{st.get('seconds', float('nan')):.1f}",
        )
    out_console.print(tab)
    cmp = compare_runs(list(result.run_dirs), seed=seed)
    written = write_outputs(
        cmp, out_dir, ("png",), report=True, render_3d=True, title="landscape demo: sharp vs flat"
    )
    print_comparison(cmp)
    for name, why in written["figures"].skipped.items():
        console.print(f"[yellow]figure {name} skipped:[/yellow] {why}")
    out_console.print(f"comparison directory: [bold]{out_dir}[/bold]")
    out_console.print(f"report: [bold]{written['report.html']}[/bold]")
    return out_dir
