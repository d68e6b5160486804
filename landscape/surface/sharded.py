"""Grid-parallel surfaces: points strided over ranks, per-rank progress files, rank 0 gathers."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.engine.context import DistributedContext, resolve_context
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.progress import Progress, tracked
from landscape.surface.progress import load_progress, save_progress


@dataclass(frozen=True)
class GridValues:
    """Values of a function on grid points, gathered from every rank.

    Attributes:
        values: array of shape ``(points, len(names))`` (float64, NaN/Inf kept).
        names: what each column holds, e.g. ``("train_loss", "train_accuracy")``.
        evaluated: points evaluated by this call (all ranks together).
        resumed: points taken from progress files.
    """

    values: np.ndarray
    names: tuple[str, ...]
    evaluated: int
    resumed: int

    def column(self, name: str) -> np.ndarray:
        """One column by name."""
        return self.values[:, self.names.index(name)]

    def to_dict(self) -> dict[str, Any]:
        """Counts (the values go to ``results.nc``)."""
        return {
            "points": int(self.values.shape[0]),
            "names": list(self.names),
            "evaluated": self.evaluated,
            "resumed": self.resumed,
        }


def grid_key(
    points: torch.Tensor, directions: torch.Tensor, theta: torch.Tensor, names: Sequence[str]
) -> str:
    """A short hash identifying a grid (points, directions, centre, quantities).

    Example:
        >>> len(grid_key(torch.zeros(3, 1), torch.ones(1, 4), torch.zeros(4), ["train_loss"]))
        16
    """
    h = hashlib.sha256()
    for t in (points, directions, theta):
        a = t.detach().to("cpu", torch.float64).contiguous().numpy()
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(",".join(names).encode())
    return h.hexdigest()[:16]


def _progress_file(progress_dir: Path, key: str, rank: int) -> Path:
    return progress_dir / f"grid-{key}-rank{rank}.npz"


def _load_rank_file(path: Path, key: str, size: int, names: Sequence[str]) -> dict[int, np.ndarray]:
    """Points done in one rank's progress file (the shared, checked format)."""
    got = load_progress(path, key, size, names)
    if got is None:
        return {}
    done, arrays = got
    vals = np.stack([arrays[n] for n in names], axis=1)
    return {int(i): vals[i] for i in np.flatnonzero(done)}


def _save_rank_file(
    path: Path, key: str, size: int, results: dict[int, np.ndarray], names: Sequence[str]
) -> None:
    done = np.zeros(size, dtype=bool)
    arrays = {n: np.full(size, np.nan, dtype=np.float64) for n in names}
    for i, v in results.items():
        done[i] = True
        for j, n in enumerate(names):
            arrays[n][i] = v[j]
    save_progress(path, key, done, arrays)


def point_evaluator(
    space: ParamSpace,
    directions: torch.Tensor,
    theta: torch.Tensor | None = None,
    splits: Sequence[str] = ("train",),
) -> Callable[[torch.Tensor], np.ndarray]:
    """The default grid evaluator: loss and accuracy at ``θ + Σ_i c_i d_i`` per split.

    Args:
        space: the parameter space (all the data).
        directions: tensor ``(dims, dim)``.
        theta: the centre (default ``space.theta0``).
        splits: splits to evaluate.

    Returns:
        A function mapping coefficients ``(B, dims)`` to an array ``(B, 2·len(splits))``.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> s = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> point_evaluator(s, torch.zeros(1, s.dim))(torch.zeros(2, 1)).shape
        (2, 2)
    """
    center = (space.theta0 if theta is None else theta).detach()
    dirs = directions.to(device=center.device, dtype=center.dtype)

    def evaluate(coeffs: torch.Tensor) -> np.ndarray:
        rows = []
        for c in coeffs.to(device=center.device, dtype=center.dtype):
            th = center + c @ dirs
            row: list[float] = []
            for split in splits:
                row.extend(space.evaluate(th, split))
            rows.append(row)
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), 2 * len(splits))

    return evaluate


def sharded_grid_eval(
    space: ParamSpace,
    points: torch.Tensor,
    directions: torch.Tensor,
    *,
    theta: torch.Tensor | None = None,
    splits: Sequence[str] | None = None,
    context: DistributedContext | None = None,
    progress: Progress | None = None,
    progress_dir: str | Path | None = None,
    evaluate: Callable[[torch.Tensor], np.ndarray] | None = None,
    names: Sequence[str] | None = None,
    block_size: int = 1,
    max_new_points: int | None = None,
    flush_seconds: float = 10.0,
    to_all: bool = False,
) -> GridValues | None:
    """Evaluate grid points ``θ + Σ_i c_i d_i`` with the points strided over ranks.

    Each rank evaluates every ``world``-th pending point over all the data, checkpoints its
    results to its own progress file (when ``progress_dir`` is given) and sends them to
    rank 0, which returns them all. Rerunning with the same grid skips every point
    already in a progress file, whatever the number of processes was.

    Args:
        space: parameter space with all the data (each point uses the full splits).
        points: coefficients, tensor ``(P, dims)``.
        directions: tensor ``(dims, dim)``.
        theta: the centre (default ``space.theta0``).
        splits: splits to evaluate (default train, and test when present).
        context: the distributed context (default: the current process group).
        progress: progress reporter (used on rank 0 only; counts every rank's points).
        progress_dir: where to keep per-rank progress files (``None``: no resume).
        evaluate: maps coefficients ``(B, dims)`` to values ``(B, len(names))``; the
            default loops over :meth:`ParamSpace.evaluate` (see :func:`point_evaluator`).
        names: column names of ``evaluate``'s output (default ``<split>_loss``,
            ``<split>_accuracy`` per split).
        block_size: points per call of ``evaluate``.
        max_new_points: stop after this many new points per rank (time-boxed jobs; rerun
            to resume). ``None``: finish the grid.
        flush_seconds: minimum time between progress-file writes.
        to_all: return the values on every rank (default: rank 0 only, ``None`` elsewhere).

    Returns:
        The :class:`GridValues` on rank 0 (and every rank with ``to_all``), else ``None``.
        Points not evaluated yet (with ``max_new_points``) are NaN.

    Raises:
        ConfigError: on mismatched shapes.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> s = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> g = sharded_grid_eval(s, torch.linspace(-1, 1, 5)[:, None], torch.randn(1, s.dim))
        >>> g.values.shape
        (5, 4)
    """
    ctx = resolve_context(context)
    if points.dim() != 2 or directions.dim() != 2 or points.shape[1] != directions.shape[0]:
        raise ConfigError(
            f"grid points {tuple(points.shape)} and directions {tuple(directions.shape)} do not"
            " fit; give points (P, dims) and directions (dims, dim)."
        )
    if directions.shape[1] != space.dim:
        raise ConfigError(
            f"directions have {directions.shape[1]} entries but the model has {space.dim}"
            " parameters; recompute the directions for this model."
        )
    if block_size < 1:
        raise ConfigError(f"block size must be at least 1, got {block_size}.")
    center = (space.theta0 if theta is None else theta).detach()
    if splits is None:
        splits = ("train", "test") if space.bundle.data.has_test else ("train",)
    if names is None:
        names = tuple(f"{s}_{q}" for s in splits for q in ("loss", "accuracy"))
    names = tuple(names)
    fn = evaluate if evaluate is not None else point_evaluator(space, directions, center, splits)
    num_points = int(points.shape[0])

    # what is done already: rank 0 vouches for every visible file, others for their own
    pdir = Path(progress_dir) if progress_dir is not None else None
    key = grid_key(points, directions, center, names) if pdir is not None else ""
    own: dict[int, np.ndarray] = {}
    vouched: dict[int, np.ndarray] = {}
    if pdir is not None:
        own = _load_rank_file(_progress_file(pdir, key, ctx.rank), key, num_points, names)
        if ctx.is_main and pdir.is_dir():
            for f in sorted(pdir.glob(f"grid-{key}-rank*.npz")):
                vouched.update(_load_rank_file(f, key, num_points, names))
        vouched.update(own)
    done: set[int] = set()
    for part in ctx.all_gather_object(sorted(vouched)):
        done.update(int(i) for i in part)
    pending = [i for i in range(num_points) if i not in done]
    mine = pending[ctx.rank :: ctx.world_size]
    if max_new_points is not None:
        mine = mine[: max(0, int(max_new_points))]
    rounds = ctx.max_int(-(-len(mine) // block_size))
    total = ctx.sum_int(len(mine))

    new: dict[int, np.ndarray] = {}
    last_flush = time.monotonic()
    with tracked(progress if ctx.is_main else None, "surface grid", total) as task:
        for r in range(rounds):
            idx = mine[r * block_size : (r + 1) * block_size]
            if idx:
                vals = np.asarray(fn(points[idx]), dtype=np.float64).reshape(len(idx), len(names))
                for i, v in zip(idx, vals, strict=True):
                    new[i] = v
                    own[i] = v
                if pdir is not None and time.monotonic() - last_flush >= flush_seconds:
                    _save_rank_file(
                        _progress_file(pdir, key, ctx.rank), key, num_points, own, names
                    )
                    last_flush = time.monotonic()
            task.advance(ctx.sum_int(len(idx)))
    if pdir is not None and new:
        _save_rank_file(_progress_file(pdir, key, ctx.rank), key, num_points, own, names)

    send = dict(new) if ctx.is_main else {**vouched, **new}
    parts = ctx.gather_object(send)
    result: GridValues | None = None
    if ctx.is_main:
        assert parts is not None
        values = np.full((num_points, len(names)), np.nan, dtype=np.float64)
        merged: dict[int, np.ndarray] = dict(vouched)
        for part in parts:
            merged.update(part)
        for i, v in merged.items():
            values[i] = v
        result = GridValues(values, names, total, len(done))
    if to_all:
        result = ctx.broadcast_object(result)
    return result


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
