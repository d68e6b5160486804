"""Surfaces with grid points shared out over torchrun ranks.

The surface package evaluates points (:class:`landscape.surface.PointEvaluator`: the
compiled loop on CPUs, vmap over points with bf16 and channels_last on GPUs);
:func:`landscape.surface.sharded.sharded_grid_eval` gives each rank a strided share of
the points, keeps one progress file per rank and gathers the values. Together they make
:func:`sharded_surface`, the distributed counterpart of
:func:`landscape.surface.evaluate_surface`, which the scan uses under torchrun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.engine.distributed import DistributedContext, resolve_context
from landscape.engine.params import ParamSpace
from landscape.progress import Progress
from landscape.surface.sharded import sharded_grid_eval


def sharded_surface(
    space: ParamSpace,
    directions: Any,
    grid: Any,
    *,
    context: DistributedContext | None = None,
    test: bool = True,
    progress: Progress | None = None,
    progress_dir: str | Path | None = None,
    points_per_batch: int | None = None,
    max_new_points: int | None = None,
    **options: Any,
) -> Any:
    """Evaluate a surface with the grid points strided over the ranks.

    Every rank returns the same :class:`~landscape.surface.Surface` (values gathered on
    rank 0 and broadcast); in one process this is a plain grid evaluation.

    Args:
        space: the parameter space with all the data (each point uses the whole split).
        directions: :class:`~landscape.surface.Directions`, one per grid axis.
        grid: the :class:`~landscape.surface.GridSpec`.
        context: the distributed context (default: the current process group).
        test: also evaluate the test split when the data has one.
        progress: progress reporter (rank 0 draws; it counts every rank's points).
        progress_dir: where each rank keeps its progress file (enables resuming).
        points_per_batch: points per evaluator call (default 16 on accelerators, 8 on CPUs).
        max_new_points: stop after this many new points per rank (rerun to resume).
        **options: :class:`~landscape.surface.PointEvaluator` options (method, compile,
            first_layer, chunk_size, bf16, recompute_bn).

    Returns:
        The surface; ``complete`` is false when ``max_new_points`` stopped it early.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> from landscape.surface import GridSpec, random_directions
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> s = sharded_surface(space, random_directions(space, 2), GridSpec.parse("5x3"),
        ...                     compile=False)
        >>> s.shape
        (5, 3)
    """
    from landscape.surface import PointEvaluator, Surface

    ctx = resolve_context(context)
    splits = ("train", "test") if test and space.bundle.data.has_test else ("train",)
    ev = PointEvaluator(space, directions, splits=splits, **options)
    names = tuple(f"{s}_{q}" for s in splits for q in ("loss", "accuracy"))

    def evaluate(coords: torch.Tensor) -> np.ndarray:
        res = ev.evaluate(coords.detach().cpu().numpy().astype(np.float64))
        return np.stack([np.asarray(res[k], dtype=np.float64) for k in names], axis=1)

    points = torch.as_tensor(np.asarray(grid.points(), dtype=np.float64))
    vectors = torch.stack([v.detach().to(space.device, space.dtype) for v in directions.vectors])
    block = points_per_batch or (16 if space.device.type != "cpu" else 8)
    vals = sharded_grid_eval(
        space,
        points,
        vectors,
        theta=directions.origin.to(space.device, space.dtype),
        context=ctx,
        progress=progress,
        progress_dir=progress_dir,
        evaluate=evaluate,
        names=names,
        block_size=block,
        max_new_points=max_new_points,
        to_all=True,
    )
    assert vals is not None  # to_all: every rank gets the values
    shape = tuple(grid.shape)
    axes = tuple(np.asarray(a, dtype=np.float64) for a in grid.coordinates())
    center = tuple(grid.center_index())
    train_loss = vals.column("train_loss").reshape(shape)
    if all(a[i] == 0.0 for a, i in zip(axes, center, strict=True)):
        center_loss = float(train_loss[center])
    else:
        center_loss = float(ev.evaluate(np.zeros((1, len(shape))))["train_loss"][0])
    test_loss = vals.column("test_loss").reshape(shape) if "test_loss" in names else None
    test_acc = vals.column("test_accuracy").reshape(shape) if "test_accuracy" in names else None
    d = directions
    return Surface(
        axes,
        train_loss,
        vals.column("train_accuracy").reshape(shape),
        test_loss,
        test_acc,
        kind=d.kind,
        normalization=d.normalization,
        ignore=d.ignore,
        seed=d.seed,
        center_loss=center_loss,
        explained_variance=d.explained_variance,
        anchors=d.anchors,
        trajectory=d.trajectory,
        complete=bool(np.isfinite(vals.values).any(axis=1).all()),
        info={
            "method": ev.method,
            "world_size": ctx.world_size,
            "points_evaluated": vals.evaluated,
            "points_resumed": vals.resumed,
        },
    )


def sharded_quick_surface(
    space: ParamSpace,
    *,
    grid: tuple[int, ...] = (21, 21),
    span: float = 1.0,
    seed: int = 0,
    progress: Progress | None = None,
    context: DistributedContext | None = None,
) -> Any:
    """:func:`landscape.surface.quick_surface` with the grid strided over the ranks.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> sharded_quick_surface(space, grid=(5, 5)).shape
        (5, 5)
    """
    from landscape.surface import GridSpec, random_directions

    g = GridSpec(tuple(grid), ((-float(span), float(span)),) * len(grid))
    dirs = random_directions(space, len(grid), normalization="filter", ignore="biasbn", seed=seed)
    return sharded_surface(space, dirs, g, context=context, progress=progress)
