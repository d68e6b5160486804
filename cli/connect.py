"""``landscape connect``: loss barriers between two checkpoints (linear, aligned, curved)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from landscape.basins.connect import CURVES, check_same_layout
from landscape.cli.app import app
from landscape.cli.common import (
    LoadOptions,
    OutOpt,
    OverwriteOpt,
    QuietOpt,
    SeedOpt,
    friendly_errors,
    load_bundle,
    out_console,
    progress_bars,
    run_name,
    with_load_options,
)
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.io.rundir import RunDir, default_run_dir
from landscape.pipelines.connect import ConnectConfig, run_connect


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return "—" if x is None else str(x)


def print_connect(summary: dict[str, Any], run_dir: Path) -> None:
    """Print each path's barrier, its position and the endpoint losses as a table."""
    from rich.table import Table

    c = summary.get("connect", {})
    t = Table(title=f"landscape connect · {summary.get('name', '')}", show_header=True)
    for col in ("path", "barrier", "t_max", "L(0)", "L(1)", "max L", "min acc"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for name in ("linear", "aligned", "curve"):
        p = c.get(name)
        if not p:
            continue
        loss = [v for v in p["loss"] if isinstance(v, float)]
        acc = [v for v in p["acc"] if isinstance(v, float)]
        label = name
        if name == "curve":
            label = f"{p.get('kind')}" + (" (aligned B)" if p.get("endpoint") == "aligned" else "")
        t.add_row(
            label,
            _fmt(p["barrier"]),
            _fmt(p["t_max"]),
            _fmt(p["loss"][0]),
            _fmt(p["loss"][-1]),
            _fmt(max(loss) if loss else None),
            _fmt(min(acc) if acc else None),
        )
    for name, why in c.get("skipped", {}).items():
        t.add_row(name, "skipped", "", "", "", "", why)
    out_console.print(t)
    if "plane" in c:
        pl = c["plane"]
        out_console.print(
            f"plane through A, B and the bend: {pl['grid'][0]}×{pl['grid'][1]} points, loss"
            f" {_fmt(pl['min_loss'])} to {_fmt(pl['max_loss'])}"
        )
    if c.get("repaired_batchnorm"):
        out_console.print("BatchNorm statistics recomputed on the training data at every point.")
    out_console.print(f"run directory: [bold]{run_dir}[/bold]")


@app.command("connect")
@friendly_errors
@with_load_options(checkpoint="checkpoint_a", exclude=("params",))
def connect(
    checkpoint_a: Annotated[Path, typer.Argument(help="First checkpoint (the reference).")],
    checkpoint_b: Annotated[Path, typer.Argument(help="Second checkpoint (same architecture).")],
    curve: Annotated[
        str | None,
        typer.Option("--curve", help=f"Also train a curve: {' or '.join(CURVES)}."),
    ] = None,
    points: Annotated[int, typer.Option("--points", help="Points on each path (t-grid).")] = 25,
    align: Annotated[
        bool,
        typer.Option("--align/--no-align", help="Also the path to the permutation-aligned B."),
    ] = True,
    curve_steps: Annotated[
        int, typer.Option("--curve-steps", help="Optimizer steps of the curve's bend.")
    ] = 500,
    curve_lr: Annotated[float, typer.Option("--curve-lr", help="Adam learning rate.")] = 1e-2,
    curve_batch_size: Annotated[
        int, typer.Option("--curve-batch-size", help="Samples per curve step.")
    ] = 128,
    curve_endpoint: Annotated[
        str, typer.Option("--curve-endpoint", help="End the curve at the raw or aligned B.")
    ] = "raw",
    split: Annotated[
        str, typer.Option("--split", help="Split whose loss defines the barriers.")
    ] = "train",
    repair: Annotated[
        bool | None,
        typer.Option(
            "--repair-bn/--no-repair-bn",
            help="Recompute BatchNorm statistics at each point (default: when the model has BN).",
            show_default=False,
        ),
    ] = None,
    plane: Annotated[
        str | None,
        typer.Option(
            "--plane",
            help="Also the loss on the plane through A, B and the curve's bend, on this grid"
            " (e.g. 21x21; needs --curve).",
        ),
    ] = None,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Render figures.")] = True,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    *,
    opts: LoadOptions,
) -> None:
    """Loss barriers between two minima: straight, permutation-aligned and trained curve."""
    opts_a = opts
    opts_b = dataclasses.replace(opts_a, checkpoint=checkpoint_b)
    cfg = ConnectConfig(
        points=points,
        align=align,
        curve=curve,
        curve_steps=curve_steps,
        curve_lr=curve_lr,
        curve_batch_size=curve_batch_size,
        curve_endpoint=curve_endpoint,
        split=split,
        repair=repair,
        seed=seed,
        plane=plane,
    )
    with progress_bars(quiet) as prog:
        bundle_a, loaded_a = load_bundle(opts_a)
        bundle_b, loaded_b = load_bundle(opts_b)
        space_a, space_b = ParamSpace(bundle_a), ParamSpace(bundle_b)
        check_same_layout(space_a, space_b, (checkpoint_a.name, checkpoint_b.name))
        if split == "test" and space_a.num_samples("test") == 0:
            raise ConfigError("--split test needs a test split; give --test-fraction > 0.")
        name = f"{run_name(checkpoint_a)}-{run_name(checkpoint_b)}-connect"
        config = {
            "command": "connect",
            **opts_a.to_config(loaded_a),
            "checkpoint_b": opts_b.to_config(loaded_b)["checkpoint"],
            "checkpoint_b_sha256": loaded_b.sha256,
            "connect": cfg.to_dict(),
        }
        run = RunDir.create(Path(out or default_run_dir(name)), config, overwrite=overwrite)
        summary, result = run_connect(space_a, space_b.theta0, run, cfg, progress=prog)
    if figures:
        from landscape.viz.connect_plots import plot_connectivity, plot_plane

        plot_connectivity(result, run.subdir("figures") / "connect.png")
        if plane is not None:
            plot_plane(run.path, run.subdir("figures") / "connect_plane.png")
    print_connect(summary, run.path)


__all__ = ["connect", "print_connect"]
