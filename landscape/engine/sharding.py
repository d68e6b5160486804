"""Data sharding for data-parallel runs: each rank holds a contiguous or strided share."""

from __future__ import annotations

from dataclasses import replace
from typing import overload

import torch

from landscape.engine.context import DistributedContext  # noqa: F401
from landscape.errors import ConfigError, DataError
from landscape.io.data import DataSource
from landscape.io.model_bundle import ModelBundle

SHARD_MODES = ("contiguous", "strided")


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, stop)`` of rank's contiguous shard of ``n`` items (sizes differ by ≤ 1).

    Example:
        >>> [shard_bounds(10, r, 3) for r in range(3)]
        [(0, 3), (3, 6), (6, 10)]
    """
    return n * rank // world, n * (rank + 1) // world


@overload
def _shard(t: torch.Tensor, rank: int, world: int, mode: str) -> torch.Tensor: ...
@overload
def _shard(t: None, rank: int, world: int, mode: str) -> None: ...
def _shard(t: torch.Tensor | None, rank: int, world: int, mode: str) -> torch.Tensor | None:
    if t is None:
        return None
    if mode == "strided":
        return t[rank::world]
    a, b = shard_bounds(int(t.shape[0]), rank, world)
    return t[a:b]


def shard_data(data: DataSource, rank: int, world: int, *, mode: str = "contiguous") -> DataSource:
    """This rank's shard of the training and test splits.

    Every sample is in exactly one shard; shard sizes differ by at most one. Shards are
    views of the original tensors (nothing is copied, nothing moves to a device).

    Args:
        data: the full data.
        rank: this process's rank.
        world: number of processes.
        mode: ``contiguous`` (blocks, keeps chunk locality) or ``strided`` (every
            ``world``-th sample, balances sorted data).

    Returns:
        The shard, with the same name and batch size.

    Raises:
        ConfigError: on a bad rank, world size or mode.
        DataError: when the training split has fewer samples than processes.

    Example:
        >>> from landscape.io import ModelBundle, load_data
        >>> d = load_data("synthetic", max_samples=10)
        >>> [shard_data(d, r, 3).num_train for r in range(3)]
        [3, 3, 4]
    """
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"rank {rank} of world size {world} is invalid; launch with torchrun.")
    if mode not in SHARD_MODES:
        raise ConfigError(f"unknown shard mode {mode!r}; use one of {', '.join(SHARD_MODES)}.")
    if world == 1:
        return data
    if data.num_train < world:
        raise DataError(
            f"{data.num_train} training samples cannot be split over {world} processes;"
            " use fewer processes or more data."
        )
    return replace(
        data,
        x_train=_shard(data.x_train, rank, world, mode),
        y_train=_shard(data.y_train, rank, world, mode),
        x_test=_shard(data.x_test, rank, world, mode),
        y_test=_shard(data.y_test, rank, world, mode),
    )


def shard_bundle(
    bundle: ModelBundle, context: DistributedContext, *, mode: str = "contiguous"
) -> ModelBundle:
    """The same bundle (same private module) with this rank's shard of the data.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> shard_bundle(b, DistributedContext()) is b
        True
    """
    if not context.is_distributed:
        return bundle
    return replace(
        bundle, data=shard_data(bundle.data, context.rank, context.world_size, mode=mode)
    )
