"""``landscape weights``: data-free weight spectra (ESD α, MP spikes, traps) of a checkpoint."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.table import Table

from landscape.cli.app import app
from landscape.cli.common import (
    DeviceOpt,
    ModelKwargsOpt,
    ModelOpt,
    OutOpt,
    OverwriteOpt,
    ParamsOpt,
    QuietOpt,
    SeedOpt,
    TrustOpt,
    friendly_errors,
    out_console,
    progress_bars,
    run_name,
)
from landscape.errors import ConfigError
from landscape.io.checkpoint import load_model, parse_model_kwargs
from landscape.io.model_bundle import parse_device, parse_dtype
from landscape.io.rundir import RunDir, default_run_dir, versions
from landscape.metrics.weight_spectra import WeightSpectra, weight_spectra


def _num(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) and math.isfinite(x) else "—"


def weights_table(spectra: WeightSpectra) -> Table:
    """A rich table with one row per weight matrix; layers without a fit say why.

    Example:
        >>> from torch import nn
        >>> weights_table(weight_spectra(nn.Linear(30, 20))).row_count
        1
    """
    table = Table(
        title="weight spectra (ESD of WᵀW/N)",
        title_justify="left",
        caption="srank = ‖W‖_F²/‖W‖₂² (stable rank); spikes: eigenvalues above the MP bulk;"
        " traps: spikes of the randomized W",
        caption_justify="left",
    )
    for col, just in (
        ("layer", "left"),
        ("shape", "left"),
        ("alpha", "right"),
        ("KS", "right"),
        ("srank", "right"),
        ("log‖W‖₂", "right"),
        ("spikes", "right"),
        ("traps", "right"),
    ):
        table.add_column(col, justify=just, no_wrap=True, min_width=len(col))  # type: ignore[arg-type]
    for lay in spectra.layers:
        pl = lay.power_law
        alpha = _num(pl.alpha, 2) if pl.fit else "not fit"
        table.add_row(
            lay.name,
            "×".join(str(s) for s in lay.shape),
            alpha,
            _num(pl.ks),
            _num(lay.stable_rank, 2),
            _num(lay.log_spectral_norm),
            str(lay.mp.spikes) if lay.mp.fit else "—",
            "—" if lay.traps is None else str(lay.traps),
            style=None if pl.fit else "dim",
        )
    return table


def _svd_dtype(name: str | None, device: torch.device) -> torch.dtype:
    dt = parse_dtype(name)
    if dt is None:
        return torch.float32 if device.type == "mps" else torch.float64
    if dt not in (torch.float32, torch.float64):
        raise ConfigError(f"--dtype {name} cannot run an SVD; use float32 or float64.")
    return dt


@app.command("weights")
@friendly_errors
def weights_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (any supported format).")],
    model: ModelOpt = None,
    model_kwargs: ModelKwargsOpt = None,
    trust_checkpoint: TrustOpt = False,
    device: DeviceOpt = None,
    dtype: Annotated[
        str | None,
        typer.Option("--dtype", help="Type of the SVDs: float64 (default) or float32."),
    ] = None,
    params: ParamsOpt = None,
    min_tail: Annotated[
        int, typer.Option("--min-tail", help="Fewest eigenvalues a power-law tail may hold.")
    ] = 10,
    traps: Annotated[
        bool,
        typer.Option("--traps/--no-traps", help="Count correlation traps (randomized ESDs)."),
    ] = True,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Render figures.")] = True,
    fmt: Annotated[
        str, typer.Option("--format", help="Figure formats, a comma list of png, pdf, svg.")
    ] = "png",
    quiet: QuietOpt = False,
) -> None:
    """Weight spectra without data: power-law α of each layer's ESD, MP spikes, traps."""
    if min_tail < 2:
        raise ConfigError(f"--min-tail must be at least 2 (got {min_tail}).")
    formats: tuple[str, ...] = ()
    if figures:
        from landscape.viz.style import check_formats

        formats = check_formats(fmt)
    dev = parse_device(device)
    loaded = load_model(
        checkpoint,
        model=model,
        model_kwargs=parse_model_kwargs(model_kwargs),
        trust=trust_checkpoint,
    )
    module = loaded.module  # a fresh module built by the loader, never the caller's object
    if dev is None:
        first = next(iter(module.parameters()), None)
        dev = first.device if first is not None else torch.device("cpu")
    else:
        module = module.to(dev)
    svd_dtype = _svd_dtype(dtype, dev)
    t0 = time.perf_counter()
    with progress_bars(quiet) as prog:
        spectra = weight_spectra(
            module,
            params=params,
            min_tail=min_tail,
            traps=traps,
            seed=seed,
            dtype=svd_dtype,
            progress=prog,
        )
    elapsed = time.perf_counter() - t0
    path = Path(out) if out is not None else default_run_dir(f"{run_name(checkpoint)}-weights")
    config: dict[str, Any] = {
        "command": "weights",
        "checkpoint": str(checkpoint),
        "model": model,
        "model_kwargs": parse_model_kwargs(model_kwargs),
        "device": str(dev),
        "checkpoint_sha256": loaded.sha256,
        "checkpoint_format": loaded.format,
        "weights": spectra.settings,
    }
    summary: dict[str, Any] = {"weights": spectra.to_dict(), "timing": {"weights": elapsed}}
    if (path / "config.json").is_file() and not overwrite:
        run = RunDir(path)  # add the weights section to an existing run (e.g. a scan)
    else:
        run = RunDir.create(path, config, overwrite=overwrite)
        summary.update(
            {
                "name": run_name(checkpoint),
                "seed": seed,
                "versions": versions(),
                "model": {
                    "num_params": sum(p.numel() for p in module.parameters()),
                    "format": loaded.format,
                    "sha256": loaded.sha256,
                    "factory": loaded.factory,
                    "path": loaded.path,
                },
            }
        )
    run.update_summary(summary)
    _write_arrays(run, spectra)
    out_console.print(weights_table(spectra))
    avg = spectra.averages()
    out_console.print(
        f"mean alpha {_num(avg['alpha'], 2)}, mean weighted alpha"
        f" {_num(avg['weighted_alpha'], 2)} over {spectra.to_dict()['num_fit']} fitted layers"
    )
    if figures:
        from landscape.viz.weight_plots import weight_figures

        weight_figures(spectra, run.subdir("figures"), formats=formats)
    out_console.print(f"wrote {run.summary_path}")


def _write_arrays(run: RunDir, spectra: WeightSpectra) -> None:
    """The concatenated ESDs into ``results.nc`` (``weights_esd``, ``weights_esd_layer``)."""
    import xarray as xr

    arrays = spectra.to_arrays()
    ds = xr.Dataset(
        {
            "weights_esd": ("weights_esd_index", arrays["weights_esd"]),
            "weights_esd_layer": ("weights_esd_index", arrays["weights_esd_layer"]),
        },
        attrs={"weights_layers": ",".join(lay.name for lay in spectra.layers)},
    )
    run.write_arrays(ds)
