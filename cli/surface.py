"""``landscape surface``: filter-normalized (or checkpoint-defined) 1D/2D/3D loss surfaces."""

from __future__ import annotations

import time
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
    param_space,
    progress_bars,
    run_name,
    with_load_options,
)
from landscape.errors import ConfigError

KINDS = ("filter", "layer", "none", "pca", "interpolate", "plane", "eigen")
DEFAULT_GRID = {1: "51", 2: "21x21", 3: "11x11x11"}


def _checkpoint_list(
    checkpoints: list[Path] | None, extra: list[Path] | None, trajectory: Path | None
) -> list[Path]:
    from landscape.surface.directions import trajectory_files

    paths: list[Path] = []
    for p in checkpoints or []:
        paths += [Path(s) for s in str(p).split(",") if s]
    if extra:
        if not checkpoints:
            raise ConfigError(
                f"unexpected extra arguments {' '.join(map(str, extra))}; give one checkpoint"
                " PATH, and further checkpoints after --checkpoints."
            )
        paths += list(extra)
    if trajectory is not None:
        paths += trajectory_files(trajectory)
    return paths


def _auto_range(kind: str, dirs: Any, dims: int) -> str:
    """A range that shows the checkpoints that define the slice, with a margin."""
    import numpy as np

    if kind == "interpolate":
        return "-0.5:1.5"
    pts = None
    if kind == "plane" and dirs.anchors is not None:
        pts = np.asarray(dirs.anchors, dtype=float).T
    elif kind == "pca" and dirs.trajectory is not None:
        pts = np.vstack([np.asarray(dirs.trajectory, dtype=float), np.zeros((1, dirs.dims))])
    if pts is None:
        return "-1:1"
    parts = []
    for k in range(dims):
        lo, hi = float(pts[:, k].min()), float(pts[:, k].max())
        span = max(hi - lo, 1e-3 * max(1.0, abs(hi)))
        parts.append(f"{lo - 0.25 * span:.6g}:{hi + 0.25 * span:.6g}")
    return ",".join(parts)


@app.command("surface")
@friendly_errors
@with_load_options()
def surface(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint whose model and data to use.")],
    extra: Annotated[
        list[Path] | None,
        typer.Argument(hidden=True, help="More --checkpoints (as in --checkpoints A B C)."),
    ] = None,
    dims: Annotated[
        int | None, typer.Option("--dims", help="1, 2 or 3 (default from --grid or kind).")
    ] = None,
    grid: Annotated[
        str | None, typer.Option("--grid", help="Points per axis: 51x51, 41, 21x31x11.")
    ] = None,
    range_: Annotated[
        str | None,
        typer.Option("--range", help="-1:1, or per axis -1:1,-0.5:0.5 (default by kind)."),
    ] = None,
    directions: Annotated[
        str,
        typer.Option(
            "--directions", help="filter|layer|none (random), pca, interpolate, plane, eigen."
        ),
    ] = "filter",
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoints", help="Checkpoints for pca/interpolate/plane: --checkpoints A B C."
        ),
    ] = None,
    trajectory: Annotated[
        Path | None, typer.Option("--trajectory", help="Folder of checkpoints for pca.")
    ] = None,
    directions_file: Annotated[
        Path | None,
        typer.Option("--directions-file", help="Reuse a directions.pt from an earlier run."),
    ] = None,
    keep_biases: Annotated[
        bool, typer.Option("--keep-biases", help="Perturb biases and norm layers too.")
    ] = False,
    orthogonalize: Annotated[
        bool, typer.Option("--orthogonalize", help="Gram-Schmidt d2 (d3) against d1.")
    ] = False,
    recompute_bn: Annotated[
        bool,
        typer.Option("--recompute-bn", help="Re-estimate BatchNorm statistics at each point."),
    ] = False,
    bf16: Annotated[
        bool, typer.Option("--bf16", help="bfloat16 autocast (error vs fp32 is reported).")
    ] = False,
    compile_: Annotated[
        str, typer.Option("--compile", help="auto (fastest overall), on, off (exact loop).")
    ] = "auto",
    method: Annotated[
        str, typer.Option("--method", help="auto, fused (CPU default), loop or vmap (GPU default).")
    ] = "auto",
    points_per_batch: Annotated[
        int | None, typer.Option("--points-per-batch", help="Grid points per batch.")
    ] = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
    *,
    opts: LoadOptions,
) -> None:
    """Evaluate a loss surface on a 1D/2D/3D grid and write it to a run directory."""
    from landscape.io.rundir import RunDir, default_run_dir, versions
    from landscape.surface import (
        GridSpec,
        eigen_directions,
        evaluate_surface,
        interpolation_direction,
        load_checkpoints,
        load_directions,
        pca_directions,
        plane_directions,
        random_directions,
        save_directions,
    )
    from landscape.surface.grid import parse_grid, parse_range

    t0 = time.perf_counter()
    kind = directions.lower()
    if kind not in KINDS:
        raise ConfigError(f"--directions {directions!r} is unknown; use one of {', '.join(KINDS)}.")
    compile_map: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}
    if compile_.lower() not in compile_map:
        raise ConfigError(f"--compile {compile_!r} is unknown; use auto, on or off.")
    paths = _checkpoint_list(checkpoints, extra, trajectory)
    if kind == "interpolate" and len(paths) != 2:
        raise ConfigError(
            f"--directions interpolate needs exactly 2 --checkpoints (A B), got {len(paths)}."
        )
    if kind == "plane" and len(paths) != 3:
        raise ConfigError(
            f"--directions plane needs exactly 3 --checkpoints (A B C), got {len(paths)}."
        )
    if kind == "pca" and len(paths) < 2:
        raise ConfigError(
            f"--directions pca needs at least 2 checkpoints (--checkpoints or --trajectory),"
            f" got {len(paths)}."
        )
    if kind in ("filter", "layer", "none", "eigen") and paths:
        raise ConfigError(
            f"--checkpoints/--trajectory are for pca, interpolate or plane, not {kind};"
            " drop them or change --directions."
        )
    sizes = parse_grid(grid) if grid is not None else None
    if dims is None:
        if sizes is not None and len(sizes) > 1:
            dims = len(sizes)
        else:
            dims = 1 if kind == "interpolate" else 2
    if not 1 <= dims <= 3:
        raise ConfigError(f"--dims must be 1, 2 or 3, got {dims}.")
    if kind == "interpolate" and dims != 1:
        raise ConfigError("--directions interpolate gives a 1D line; use --dims 1.")
    if kind == "plane" and dims != 2:
        raise ConfigError("--directions plane gives a 2D plane; use --dims 2.")
    grid_text = grid if grid is not None else DEFAULT_GRID[dims]
    if range_ is not None:
        parse_range(range_, dims)
    GridSpec.parse(grid_text, range_ or "-1:1", dims)  # validate before loading anything

    bundle, loaded = load_bundle(opts)
    space = param_space(bundle, opts)
    ignore = "none" if keep_biases else "biasbn"
    with progress_bars(quiet) as progress:
        if directions_file is not None:
            dirs = load_directions(directions_file, space)
            if dirs.dims != dims:
                raise ConfigError(
                    f"{directions_file} holds {dirs.dims} directions but --dims is {dims};"
                    " make them agree."
                )
        elif kind in ("filter", "layer", "none"):
            dirs = random_directions(
                space,
                dims,
                normalization=kind,
                ignore=ignore,
                orthogonalize_=orthogonalize,
                seed=seed,
            )
        elif kind == "eigen":
            from landscape.hessian import top_eigenpairs

            dirs = eigen_directions(space, top_eigenpairs, dims, seed=seed, progress=progress)
        else:
            vecs = load_checkpoints(
                space,
                paths,
                model=opts.model,
                model_kwargs=_kwargs(opts.model_kwargs),
                trust=opts.trust,
            )
            if kind == "interpolate":
                dirs = interpolation_direction(space, vecs[0], vecs[1])
            elif kind == "plane":
                dirs = plane_directions(space, vecs[0], vecs[1], vecs[2])
            else:
                dirs = pca_directions(space, vecs, dims)
        range_text = range_ or _auto_range(kind, dirs, dims)
        spec = GridSpec.parse(grid_text, range_text, dims)
        cfg: dict[str, Any] = {
            "command": "surface",
            **opts.to_config(loaded),
            "surface": {
                "dims": dims,
                "grid": list(spec.shape),
                "range": [list(r) for r in spec.ranges],
                "directions": kind,
                "checkpoints": [str(p) for p in paths],
                "directions_file": str(directions_file) if directions_file else None,
                "keep_biases": keep_biases,
                "orthogonalize": orthogonalize,
                "recompute_bn": recompute_bn,
                "bf16": bf16,
                "method": method,
            },
        }
        out_dir = out or default_run_dir(f"{run_name(checkpoint)}-surface")
        run = RunDir.create(
            out_dir, cfg, overwrite=overwrite, resume=resume, compare_keys=_same_run_keys
        )
        save_directions(run.path / "directions.pt", dirs)
        result = evaluate_surface(
            space,
            dirs,
            spec,
            recompute_bn=recompute_bn,
            method=method,
            compile=compile_map[compile_.lower()],
            points_per_batch=points_per_batch,
            bf16=bf16,
            progress_file=run.path / "progress" / "surface.npz",
            resume=resume,
            progress=progress,
        )
    run.write_arrays(result.to_dataset())
    summary = run.summary()
    section: dict[str, Any] = {"surface": result.to_dict()}
    if "name" not in summary:
        section.update(
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
    section["timing"] = {"surface": round(time.perf_counter() - t0, 3)}
    run.update_summary(section)
    written = _render(run.path)
    s = result.to_dict()
    out_console.print(
        f"surface {result.grid_label} ({kind}) written to {run.path}: centre loss"
        f" {s['center_loss']:.6g}, min {s['min_loss']:.6g}"
        + (f", {len(written)} figure/VTK files" if written else "")
    )


def _same_run_keys(cfg: dict[str, Any]) -> dict[str, Any]:
    """The configuration that must match to resume (``format_version`` is added on write)."""
    return {k: v for k, v in cfg.items() if k != "format_version"}


def _kwargs(text: str | None) -> dict[str, Any]:
    from landscape.io.checkpoint import parse_model_kwargs

    return parse_model_kwargs(text)


def _render(run_dir: Path) -> list[Path]:
    """The surface's figures and VTK files."""
    from landscape.viz import surface_figures, write_vtk

    return [*surface_figures(run_dir), *write_vtk(run_dir)]
