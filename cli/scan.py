"""``landscape scan``: Hessian spectrum, trace, metrics and a surface for one checkpoint."""

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
from landscape.engine.distributed import is_main_process
from landscape.engine.memory import measure_peak_memory
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.io.presets import load_preset
from landscape.io.rundir import default_run_dir
from landscape.pipelines.scan import ScanConfig, run_scan

_VOLATILE = ("out", "overwrite", "resume", "quiet", "figures")


def _same_run(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in _VOLATILE}


def parse_grid(text: str) -> tuple[int, ...]:
    """Parse ``21x21`` / ``41`` / ``11x11x11`` into a tuple of point counts.

    Example:
        >>> parse_grid("21x31")
        (21, 31)
    """
    try:
        dims = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--grid {text!r} does not parse; write it like 21x21.") from None
    if not 1 <= len(dims) <= 3 or any(d < 2 for d in dims):
        raise ConfigError(f"--grid {text!r} needs 1 to 3 sizes of at least 2, like 21x21.")
    return dims


def build_scan_config(preset: str | None, overrides: dict[str, Any]) -> ScanConfig:
    """Merge a preset's ``[scan]`` table with explicit options (None means not given)."""
    base: dict[str, Any] = load_preset(preset or "scan_default", "scan")
    fields = {f.name for f in dataclasses.fields(ScanConfig)}
    unknown = sorted(set(base) - fields)
    if unknown:
        raise ConfigError(f"preset {preset} has unknown keys {', '.join(unknown)}; remove them.")
    base.update({k: v for k, v in overrides.items() if v is not None})
    if "surface_grid" in base:
        base["surface_grid"] = tuple(base["surface_grid"])
    if "metric_names" in base:
        base["metric_names"] = tuple(base["metric_names"])
    if isinstance(base.get("params"), str | list):
        base["params"] = (
            (base["params"],) if isinstance(base["params"], str) else tuple(base["params"])
        )
    cfg = ScanConfig(**base)
    cfg.validate()
    return cfg


def skipped_notes(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """``(what, why)`` for every stage and metric the scan skipped as not applicable.

    Example:
        >>> skipped_notes({"surface": {"skipped": "no"}, "metrics": {"skipped": {"a": "b"}}})
        [('surface', 'no'), ('a', 'b')]
    """
    out: list[tuple[str, str]] = []
    for stage in ("hessian", "per_layer", "metrics", "weights", "surface"):
        section = summary.get(stage)
        if isinstance(section, dict) and isinstance(section.get("skipped"), str):
            out.append((stage, section["skipped"]))
    metrics = summary.get("metrics")
    if isinstance(metrics, dict) and isinstance(metrics.get("skipped"), dict):
        out.extend((str(k), str(v)) for k, v in metrics["skipped"].items())
    return out


def trace_label(trace: Any) -> str:
    """The table label of the trace, naming its estimator.

    Example:
        >>> trace_label({"method": "krylov-deflated"}), trace_label({"method": "hutch++"})
        ('trace (Krylov-deflated)', 'trace (Hutch++)')
    """
    method = trace.get("method") if isinstance(trace, dict) else None
    names = {"krylov-deflated": "Krylov-deflated", "hutch++": "Hutch++"}
    return f"trace ({names.get(str(method), method)})" if method else "trace"


def matvec_budget(summary: dict[str, Any]) -> str:
    """Hessian-vector products per stage, as one table cell (empty when none ran).

    Example:
        >>> matvec_budget({"hessian": {"matvecs": 300, "sweep": {"matvecs": {"lanczos": 60,
        ...     "slq": 240, "trace": 0}}}, "metrics": {"details": {"hessian_matvecs": 0}}})
        'hessian 300 (Lanczos 60, SLQ 240, trace 0) · metrics 0'
    """
    parts: list[str] = []
    h = summary.get("hessian", {})
    if isinstance(h.get("matvecs"), int):
        text = f"hessian {h['matvecs']}"
        mv = h.get("sweep", {}).get("matvecs", {})
        if mv:
            text += f" (Lanczos {mv.get('lanczos')}, SLQ {mv.get('slq')}, trace {mv.get('trace')})"
        parts.append(text)
    if isinstance(h.get("per_layer_matvecs"), int):
        parts.append(f"per-layer {h['per_layer_matvecs']}")
    m = summary.get("metrics", {}).get("details", {})
    if isinstance(m.get("hessian_matvecs"), int):
        parts.append(f"metrics {m['hessian_matvecs']}")
    return " · ".join(parts)


def print_summary(summary: dict[str, Any], run_dir: Path) -> None:
    """Print the scan's key numbers as a table."""
    from rich.table import Table

    def fmt(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:.6g}"
        if isinstance(x, dict) and "mean" in x:
            m, s = x["mean"], x["stderr"]
            return f"{m:.6g} ± {s:.2g}" if isinstance(m, float) and isinstance(s, float) else str(m)
        if isinstance(x, list):
            return ", ".join(fmt(v) for v in x[:5])
        return "—" if x is None else str(x)

    t = Table(title=f"landscape scan · {summary.get('name', '')}", show_header=True)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    h = summary.get("hessian", {})
    rows = [
        (
            "parameters"
            + (f" ({', '.join(sel)})" if (sel := summary.get("config", {}).get("params")) else ""),
            summary.get("model", {}).get("num_params"),
        ),
        (
            "samples (train / test)",
            f"{summary.get('data', {}).get('num_samples')} / "
            f"{summary.get('data', {}).get('num_test_samples')}",
        ),
        ("train loss", summary.get("loss")),
        ("train accuracy", summary.get("accuracy")),
        ("test loss", summary.get("test_loss")),
        ("test accuracy", summary.get("test_accuracy")),
        ("top eigenvalues", h.get("top_eigenvalues")),
        ("bottom eigenvalues", h.get("bottom_eigenvalues")),
        (trace_label(h.get("trace")), h.get("trace")),
        ("Frobenius norm", h.get("frobenius")),
    ]
    metrics = summary.get("metrics", {})
    for key in ("eps_sharpness", "adaptive_sharpness", "average_sharpness", "pac_bayes_sigma"):
        if key in metrics:
            rows.append((key.replace("_", " "), metrics[key]))
    w = summary.get("weights")
    if isinstance(w, dict) and "skipped" not in w and "averages" in w:
        rows.append(
            (
                "weights: mean α (fitted layers)",
                (
                    f"{fmt(w['averages'].get('alpha'))} ({w.get('num_fit')}/{w.get('num_layers')})"
                    if w.get("num_fit")
                    else f"— (no layer large enough for a tail fit, 0/{w.get('num_layers')})"
                )
                + f", {w.get('mp_spikes')} MP spikes, {w.get('traps')} traps",
            )
        )
    if "surface" in summary and "skipped" not in summary["surface"]:
        s = summary["surface"]
        rows.append(("surface", f"{'x'.join(map(str, s['grid']))}, min loss {fmt(s['min_loss'])}"))
    for name, val in rows:
        t.add_row(name, fmt(val))
    if h.get("trace_note"):
        t.add_row("trace (note)", str(h["trace_note"]), style="yellow")
    budget = matvec_budget(summary)
    if budget:
        t.add_row("Hessian-vector products", budget)
    for name, reason in skipped_notes(summary):
        t.add_row(f"{name} (skipped)", reason, style="dim")
    out_console.print(t)
    per_layer = h.get("per_layer")
    if isinstance(per_layer, list) and per_layer:
        out_console.print(per_layer_table(per_layer))
    out_console.print(f"run directory: [bold]{run_dir}[/bold]")


def per_layer_table(rows: list[dict[str, Any]]) -> Any:
    """A rich table of ``hessian.per_layer`` rows (heads and sub-blocks indented).

    Example:
        >>> row = {"name": "0", "kind": "module", "num_params": 4, "lambda_max": 2.0,
        ...        "trace": {"mean": 3.0, "stderr": 0.0}, "top_eigenvalues": [2.0, 1.0]}
        >>> per_layer_table([row]).row_count
        1
    """
    from rich.table import Table

    def num(x: Any) -> str:
        return f"{x:.4g}" if isinstance(x, float) else str(x)

    t = Table(title="Hessian blocks (principal submatrices)", show_header=True)
    t.add_column("group")
    t.add_column("kind")
    t.add_column("params", justify="right")
    t.add_column("λmax", justify="right")
    t.add_column("trace", justify="right")
    t.add_column("top eigenvalues", justify="right")
    block: str | None = None
    for r in rows:
        kind, name = str(r.get("kind", "")), str(r.get("name"))
        if kind == "block":
            block = name
        nested = block is not None and name != block and name.startswith((block + ".", block + ":"))
        pad = ("    " if kind == "head" else "  ") if nested else ""
        tr = r.get("trace", {})
        m, se = tr.get("mean"), tr.get("stderr")
        trace = num(m) if not se else f"{num(m)} ± {se:.2g}"
        lam = num(r.get("lambda_max"))
        if not r.get("converged", True):
            lam += " [yellow](not converged)[/yellow]"
        top = ", ".join(num(v) for v in r.get("top_eigenvalues", []))
        style = "dim" if kind == "head" else None
        t.add_row(pad + name, kind, str(r.get("num_params")), lam, trace, top, style=style)
    return t


def scan_checkpoint(
    opts: LoadOptions,
    cfg: ScanConfig,
    out: Path | None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    quiet: bool = False,
    figures: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Load, scan, render figures and return ``(run_dir, summary)``.

    Under ``torchrun`` every rank scans its share and rank 0 alone writes and draws.
    """
    ctx = distributed_context(opts)
    try:
        with progress_bars(quiet or not ctx.is_main) as prog:
            bundle, loaded = load_bundle(opts)
            ParamSpace(bundle, params=cfg.params)  # a bad --params fails before the run dir
            out_dir = ctx.broadcast_object(out or default_run_dir(run_name(opts.checkpoint)))
            config = {"command": "scan", **opts.to_config(loaded), "scan": cfg.to_dict()}
            run = create_run(
                ctx, out_dir, config, overwrite=overwrite, resume=resume, compare_keys=_same_run
            )
            summary, peak = measure_peak_memory(
                lambda: run_scan(bundle, run, cfg, progress=prog, context=ctx), bundle.device
            )
            peak = ctx.max_int(peak)
            if ctx.is_main:
                extra: dict[str, Any] = {"peak_memory_bytes": peak}
                if ctx.is_distributed:
                    extra["distributed"] = {"world_size": ctx.world_size, "backend": ctx.backend}
                summary = run.update_summary(extra)
    finally:
        ctx.shutdown()
    if figures and ctx.is_main:
        from landscape.viz import scan_figures

        scan_figures(run.path)
    return run.path, summary


@app.command("scan")
@friendly_errors
@with_load_options()
def scan(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint file (.pt, .safetensors, .pt2, TorchScript).")
    ],
    seed: SeedOpt = 0,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    preset: Annotated[
        str | None,
        typer.Option("--preset", help="scan_default, scan_quick, scan_paper or a .toml file."),
    ] = None,
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="Largest eigenvalues to find.")
    ] = None,
    bottom_k: Annotated[
        int | None, typer.Option("--bottom-k", help="Most negative eigenvalues.")
    ] = None,
    trace_matvecs: Annotated[
        int | None,
        typer.Option(
            "--trace-matvecs",
            help="Most HVPs the trace and Frobenius probes spend of their own (they stop"
            " earlier at 1% and 2% relative standard error).",
        ),
    ] = None,
    tol: Annotated[
        float | None, typer.Option("--tol", help="Relative eigen-residual tolerance.")
    ] = None,
    exact: Annotated[
        bool, typer.Option("--exact", help="Dense float64 Hessian (≤5k params).")
    ] = False,
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="HVP: auto, cached, reverse, forward.")
    ] = None,
    surface: Annotated[
        bool, typer.Option("--surface/--no-surface", help="Quick 2D surface.")
    ] = True,
    grid: Annotated[str | None, typer.Option("--grid", help="Surface grid, e.g. 21x21.")] = None,
    metrics: Annotated[
        bool, typer.Option("--metrics/--no-metrics", help="Flatness metrics.")
    ] = True,
    per_layer: Annotated[
        bool,
        typer.Option(
            "--per-layer",
            help="Also λmax, trace and top-3 of the Hessian block of each module, block and"
            " attention head.",
        ),
    ] = False,
    weights: Annotated[
        bool,
        typer.Option("--weights/--no-weights", help="Data-free weight spectra (ESD α, MP)."),
    ] = True,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Render figures.")] = True,
    quiet: QuietOpt = False,
    *,
    opts: LoadOptions,
) -> None:
    """Scan a checkpoint: spectrum, trace, density, metrics, a 2D surface and figures."""
    overrides: dict[str, Any] = {
        "top_k": top_k,
        "bottom_k": bottom_k,
        "trace_matvecs": trace_matvecs,
        "tol": tol,
        "strategy": strategy,
        "seed": seed,
        "exact": exact or None,
        "surface_grid": parse_grid(grid) if grid else None,
        "params": tuple(opts.params) if opts.params else None,
        "per_layer": per_layer or None,
    }
    if not surface:
        overrides["surface"] = False
    if not metrics:
        overrides["metrics"] = False
    if not weights:
        overrides["weights"] = False
    cfg = build_scan_config(preset, overrides)
    run_dir, summary = scan_checkpoint(
        opts, cfg, out, overwrite=overwrite, resume=resume, quiet=quiet, figures=figures
    )
    if is_main_process():
        print_summary(summary, run_dir)
