"""``landscape basins``: LLC, prior mass, functional dimension, P(f) and more of one checkpoint."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from landscape.cli.app import app
from landscape.cli.common import (
    LoadOptions,
    OutOpt,
    QuietOpt,
    SeedOpt,
    friendly_errors,
    load_bundle,
    out_console,
    progress_bars,
    run_name,
    with_load_options,
)
from landscape.errors import ConfigError
from landscape.experiments.basins_run import (
    DEFAULT_MEASURES,
    MEASURES,
    BasinsConfig,
    BasinsRun,
    run_basins,
)
from landscape.io.presets import load_preset
from landscape.io.rundir import RunDir, default_run_dir, read_json, write_json
from landscape.results import Estimate, _json_float


def build_basins_config(
    measures: list[str] | None,
    config_file: Path | None,
    seed: int,
    overrides: dict[str, Any],
) -> BasinsConfig:
    """Defaults, then a TOML file's ``[basins]`` table, then explicit options."""
    table: dict[str, Any] = load_preset(str(config_file), "basins") if config_file else {}
    if measures:
        table["measures"] = list(dict.fromkeys(measures))
    llc = dict(table.get("llc", {}))
    for key, val in overrides.items():
        if val is None:
            continue
        if key.startswith("llc_"):
            llc[key[4:]] = val
        else:
            table[key] = val
    llc["seed"] = seed
    table["llc"] = llc
    table["seed"] = seed
    return BasinsConfig.from_dict(table)


def _fmt(x: Any) -> str:
    """A table cell: floats to 6 significant digits, an estimate as ``mean ± stderr``."""
    if isinstance(x, Estimate):
        m, s = _json_float(x.mean), _json_float(x.stderr)
        if isinstance(m, float) and isinstance(s, float):
            return f"{m:.6g} ± {s:.2g}"
        return str(m)
    if isinstance(x, float | np.floating):
        return f"{float(x):.6g}"
    return "—" if x is None else str(x)


def print_basins(result: BasinsRun, run_dir: Path) -> None:
    """Print the basin measures as a table."""
    from rich.table import Table

    b = result.measures
    t = Table(title=f"landscape basins · {result.name}", show_header=True)
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("notes")
    t.add_row("parameters", _fmt(result.num_params), "")
    t.add_row("train loss", _fmt(result.loss), "")
    if b.llc is not None:
        llc = b.llc
        notes = f"β = {_fmt(llc.beta)}, n = {llc.n}, ‖∇L‖ = {_fmt(llc.grad_norm)}"
        notes += f", γ/(nβ) = {_fmt(llc.localization_scale)}"
        notes += f", R̂ {_fmt(llc.r_hat)}, MALA {_fmt(llc.mala_acceptance)}"
        if llc.dropped_chains:
            notes += f", [yellow]{llc.dropped_chains} unstable chains dropped[/yellow]"
        if not llc.trustworthy:
            why = [n for n in llc.notes[1:] if ">" in n or "not" in n]
            notes += ", [yellow]outside its calibrated regime"
            notes += f": {why[0]}[/yellow]" if why else "[/yellow]"
        if math.isfinite(llc.llc.mean) and llc.llc.mean < 0:
            notes += ", [yellow]negative: θ is not a local minimum[/yellow]"
        t.add_row("local learning coefficient", _fmt(llc.llc), notes)
    if b.mass is not None:
        pm = b.mass
        lo, hi = pm.ci
        notes = (
            f"{pm.definition} basin, cutoff {_fmt(pm.cutoff)}; {pm.sigma_description};"
            f" 95% CI [{_fmt(lo)}, {_fmt(hi)}]; {pm.num_rays} rays, ESS {_fmt(pm.ess)},"
            f" {pm.flat_rays} flat"
        )
        if pm.dominated:
            notes += ", [yellow]carried by few rays (a lower-bound-like estimate)[/yellow]"
        t.add_row("log prior mass of the basin", _fmt(pm.log_mass), notes)
    for kind, v in b.volume.items():
        lo, hi = v.ci
        t.add_row(
            f"log basin volume ({kind})",
            _fmt(v.log_volume),
            f"95% CI [{_fmt(lo)}, {_fmt(hi)}], Δ = {_fmt(v.delta)},"
            f" {v.num_rays} rays, {v.unbounded} unbounded",
        )
    if b.jacobian is not None:
        j = b.jacobian
        state = "plateau" if j.plateau else "[yellow]no plateau[/yellow]"
        if j.saturated:
            state = "[yellow]capped by the inputs[/yellow]"
        extra = (
            f"; deficit {j.deficit} = symmetries {j.symmetry_dim} + excess {j.excess_deficit}"
            if j.symmetry_dim is not None
            else f"; deficit {j.deficit} (symmetries unknown for this model)"
        )
        t.add_row(
            "functional dimension",
            str(j.rank),
            f"of d = {j.dim} on {j.num_samples} inputs ({state}){extra};"
            f" effective rank {_fmt(j.effective_rank)}",
        )
    if b.compress is not None:
        c = b.compress
        t.add_row("prunable fraction", _fmt(c.prunable_fraction), f"Δ = {_fmt(c.delta)}")
        t.add_row("quantization bits", str(c.quant_bits), "uniform, per tensor")
        t.add_row(
            "description length (bits)",
            _fmt(c.description_bits),
            f"{_fmt(c.description_bits_per_param)} bits/parameter",
        )
    if b.curvature is not None:
        cv = b.curvature
        t.add_row("Hessian λ_max", _fmt(cv.lambda_max), "")
        t.add_row("Hessian trace", _fmt(cv.trace), "Hutch++")
    for name, why in b.skipped.items():
        t.add_row(name, "skipped", why)
    out_console.print(t)
    out_console.print(f"run directory: [bold]{run_dir}[/bold]")


def _open_run(out: Path, config: dict[str, Any]) -> RunDir:
    """Reuse a run directory that already holds a run (e.g. a scan); else create one."""
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = read_json(cfg_path)
        if old.get("checkpoint_sha256") not in (None, config.get("checkpoint_sha256")):
            raise ConfigError(
                f"--out {out} holds a run of a different checkpoint; choose another --out."
            )
        old["basins"] = config["basins"]
        write_json(cfg_path, old)
        return RunDir(out)
    return RunDir.create(out, config)


@app.command("basins")
@friendly_errors
@with_load_options()
def basins(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint file (.pt, .safetensors, .pt2, TorchScript).")
    ],
    measure: Annotated[
        list[str] | None,
        typer.Option(
            "--measure",
            "-m",
            help=f"Measure to run (repeat): {', '.join(MEASURES)}."
            f" Default: {', '.join(DEFAULT_MEASURES)}.",
        ),
    ] = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file with a [basins] table.")
    ] = None,
    delta: Annotated[
        float | None,
        typer.Option("--delta", help="Loss rise Δ bounding the basin of the Lebesgue volume."),
    ] = None,
    basin: Annotated[
        str | None,
        typer.Option(
            "--basin",
            help="Basin whose prior mass is measured: kl (output KL on held-out inputs) or loss.",
        ),
    ] = None,
    cutoff: Annotated[
        float | None,
        typer.Option("--cutoff", help="KL cutoff ε (nats) or loss rise Δ bounding that basin."),
    ] = None,
    rays: Annotated[
        int | None, typer.Option("--rays", help="Rays per prior-mass and volume estimate.")
    ] = None,
    prior_samples: Annotated[
        int | None,
        typer.Option("--prior-samples", help="Initializations sampled for P(f) (--measure prior)."),
    ] = None,
    chains: Annotated[int | None, typer.Option("--chains", help="SGLD chains for the LLC.")] = None,
    draws: Annotated[int | None, typer.Option("--draws", help="SGLD draws per chain.")] = None,
    sigma: Annotated[
        float | None, typer.Option("--sigma", help="Gaussian noise σ defining the MSE NLL.")
    ] = None,
    jacobian_samples: Annotated[
        int | None, typer.Option("--jacobian-samples", help="Samples in the Jacobian.")
    ] = None,
    quiet: QuietOpt = False,
    *,
    opts: LoadOptions,
) -> None:
    """Measure a checkpoint's basin: LLC, prior mass, functional dimension, P(f), curvature."""
    cfg = build_basins_config(
        measure,
        config,
        seed,
        {
            "volume_delta": delta,
            "volume_rays": rays,
            "mass_rays": rays,
            "mass_definition": basin,
            "mass_cutoff": cutoff,
            "prior_samples": prior_samples,
            "jacobian_samples": jacobian_samples,
            "llc_chains": chains,
            "llc_draws": draws,
            "llc_sigma": sigma,
        },
    )
    with progress_bars(quiet) as prog:
        bundle, loaded = load_bundle(opts)
        out_dir = out or default_run_dir(f"{run_name(checkpoint)}-basins")
        run = _open_run(
            Path(out_dir),
            {"command": "basins", **opts.to_config(loaded), "basins": cfg.to_dict()},
        )
        result = run_basins(bundle, run, cfg, progress=prog, params=opts.params or None)
    print_basins(result, run.path)


__all__ = ["basins", "build_basins_config", "print_basins"]
