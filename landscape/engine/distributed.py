"""Data- and grid-parallel evaluation on ``torchrun`` / ``torch.distributed``.

We do not build a cluster layer: processes are started by ``torchrun`` (one per GPU, or
several CPU processes), which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``. :meth:`DistributedContext.init_from_env` joins the
process group (NCCL for CUDA devices, gloo for CPUs) and is a no-op single process when
``WORLD_SIZE`` is unset.

Two kinds of parallelism:

* **data-parallel curvature and loss.** Each rank holds a shard of the training and test
  splits (:func:`shard_data`); its :class:`~landscape.engine.CurvatureOperator` returns
  the shard mean and :class:`DistributedOperator` returns ``Σ_r n_r·mean_r / N`` through
  one ``all_reduce``. Every Hessian routine only calls ``matvec`` / ``matmat`` and its own
  seeded RNG, so it runs unchanged and gives the same numbers on every rank.
* **grid-parallel surfaces.** :func:`sharded_grid_eval` gives each rank a strided share of
  the grid points (evaluated over all the data); results are gathered to rank 0, which
  alone writes. Each rank checkpoints its own progress file, so an interrupted grid
  resumes (even with a different number of processes).

Only rank 0 reports progress and writes files; its bars advance by the all-reduced count
of work done on every rank.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, overload

import numpy as np
import torch
import torch.distributed as dist

from landscape import errors
from landscape.engine.curvature import CurvatureOperator
from landscape.engine.operators import LinearOperatorBase, Operator
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError, DataError, LandscapeError
from landscape.io.data import DataSource
from landscape.io.model_bundle import ModelBundle
from landscape.io.rundir import RunDir, _deep_merge, _jsonable, atomic_write
from landscape.progress import Progress, tracked

T = TypeVar("T")

SHARD_MODES = ("contiguous", "strided")
DEFAULT_TIMEOUT_S = 1800.0


def backend_for(device: torch.device | str | None) -> str:
    """The collective backend for a device: ``nccl`` for CUDA, ``gloo`` otherwise.

    Example:
        >>> backend_for("cpu")
        'gloo'
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return "nccl" if dev.type == "cuda" else "gloo"


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset or empty).

    Example:
        >>> env_world_size() >= 1
        True
    """
    raw = os.environ.get("WORLD_SIZE", "").strip()
    if not raw:
        return 1
    try:
        n = int(raw)
    except ValueError:
        raise ConfigError(
            f"WORLD_SIZE={raw!r} is not a number; launch with torchrun or unset it."
        ) from None
    if n < 1:
        raise ConfigError(f"WORLD_SIZE={n} must be at least 1; launch with torchrun.")
    return n


def env_rank() -> int:
    """``RANK`` from the environment (0 when unset).

    Example:
        >>> env_rank() >= 0
        True
    """
    raw = os.environ.get("RANK", "").strip()
    return int(raw) if raw.isdigit() else 0


def is_main_process() -> bool:
    """Whether this process is rank 0 (true in a single process).

    Example:
        >>> is_main_process()
        True
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_rank() == 0


@dataclass
class DistributedContext:
    """Rank, world size and collectives of this process (a single process by default).

    Every collective is a cheap no-op when ``world_size == 1``, so code written against a
    context runs unchanged in one process.

    Attributes:
        rank: global rank of this process.
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        backend: ``nccl``, ``gloo`` or ``None`` (single process).
        device: device this rank computes on.
        owns_group: whether this context created the process group (and destroys it).

    Example:
        >>> ctx = DistributedContext()
        >>> ctx.is_main, ctx.all_reduce_sum(torch.ones(2)).tolist()
        (True, [1.0, 1.0])
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    # -- construction -------------------------------------------------------------
    @classmethod
    def init_from_env(
        cls,
        device: torch.device | str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> DistributedContext:
        """Join the process group described by torchrun's environment variables.

        With ``WORLD_SIZE`` unset (or 1) this returns a single-process context and starts
        nothing. A CUDA device without an index becomes ``cuda:LOCAL_RANK``.

        Args:
            device: where this rank computes (default CPU); picks the backend.
            timeout_s: collective timeout.

        Returns:
            The context.

        Raises:
            ConfigError: when the torchrun variables are inconsistent or missing.

        Example:
            >>> DistributedContext.init_from_env().world_size  # no torchrun: one process
            1
        """
        dev = torch.device(device) if device is not None else torch.device("cpu")
        world = env_world_size()
        if world == 1 and not (dist.is_available() and dist.is_initialized()):
            return cls(device=dev)
        if not dist.is_available():
            raise ConfigError("this PyTorch build has no torch.distributed; run without torchrun.")
        if dist.is_initialized():
            return cls.from_process_group(dev)
        for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(var):
                raise ConfigError(
                    f"WORLD_SIZE is set but {var} is not; launch with `torchrun` (it sets"
                    " RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)."
                )
        rank = env_rank()
        if not 0 <= rank < world:
            raise ConfigError(f"RANK={rank} is outside [0, {world}); launch with torchrun.")
        local_rank = int(os.environ.get("LOCAL_RANK", rank) or rank)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError("a CUDA device was asked for but none is visible; use cpu.")
            if dev.index is None:
                dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
            torch.cuda.set_device(dev)
        backend = backend_for(dev)
        dist.init_process_group(
            backend,
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
        return cls(rank, world, local_rank, backend, dev, owns_group=True)

    @classmethod
    def from_process_group(cls, device: torch.device | str | None = None) -> DistributedContext:
        """Wrap an already initialized default process group (or a single process).

        Example:
            >>> DistributedContext.from_process_group().world_size
            1
        """
        dev = torch.device(device) if device is not None else torch.device("cpu")
        if not (dist.is_available() and dist.is_initialized()):
            return cls(device=dev)
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank) or rank)
        return cls(rank, world, local_rank, str(dist.get_backend()), dev, owns_group=False)

    # -- properties ---------------------------------------------------------------
    @property
    def is_distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that prints and writes)."""
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Where tensors must live for collectives (the GPU for NCCL, else the CPU)."""
        if self.backend == "nccl":
            return self.device if self.device.type == "cuda" else torch.device("cuda")
        return torch.device("cpu")

    # -- collectives --------------------------------------------------------------
    def barrier(self) -> None:
        """Wait for every rank."""
        if self.is_distributed:
            dist.barrier()

    def _reduce(self, t: torch.Tensor, op: str) -> torch.Tensor:
        if not self.is_distributed:
            return t
        buf = t.detach().to(self.comm_device, copy=True).contiguous()
        dist.all_reduce(buf, op=getattr(dist.ReduceOp, op))
        return buf.to(t.device)

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (a new tensor on ``t``'s device; ``t`` untouched)."""
        return self._reduce(t, "SUM")

    def all_reduce_max(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise maximum over ranks."""
        return self._reduce(t, "MAX")

    def sum_int(self, n: int) -> int:
        """Sum of a Python integer over ranks."""
        if not self.is_distributed:
            return int(n)
        return int(self.all_reduce_sum(torch.tensor([n], dtype=torch.int64)).item())

    def max_int(self, n: int) -> int:
        """Maximum of a Python integer over ranks."""
        if not self.is_distributed:
            return int(n)
        return int(self.all_reduce_max(torch.tensor([n], dtype=torch.int64)).item())

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Rank ``src``'s tensor on every rank (same shape and dtype on every rank)."""
        if not self.is_distributed:
            return t
        buf = t.detach().to(self.comm_device, copy=True).contiguous()
        dist.broadcast(buf, src=src)
        return buf.to(t.device)

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s picklable object on every rank."""
        if not self.is_distributed:
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        """Picklable objects of every rank, as a list on rank ``dst`` (``None`` elsewhere)."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, out, dst=dst)
        return out

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Picklable objects of every rank, on every rank."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 and give its result to every rank (collective).

        A :class:`~landscape.errors.LandscapeError` raised on rank 0 is raised on every
        rank with the same message, so no rank waits for one that has given up.

        Example:
            >>> DistributedContext().on_main(lambda: 42)
            42
        """
        if not self.is_distributed:
            return fn()
        payload: tuple[bool, Any] = (True, None)
        if self.is_main:
            try:
                payload = (True, fn())
            except LandscapeError as exc:
                payload = (False, (type(exc).__name__, str(exc)))
        ok, value = self.broadcast_object(payload)
        if not ok:
            name, msg = value
            cls = getattr(errors, name, LandscapeError)
            raise cls(msg)
        return value

    def shutdown(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    def main_only(self, run: RunDir) -> RunDir:
        """A run directory that writes on rank 0 only (see :class:`MainOnlyRun`).

        Collective: every rank must call it. Rank 0 gets ``run`` itself.
        """
        if not self.is_distributed:
            return run
        summary = self.broadcast_object(run.summary() if self.is_main else None)
        if self.is_main:
            return run
        return MainOnlyRun(run.path, summary)


def resolve_context(context: DistributedContext | None = None) -> DistributedContext:
    """``context``, or the current process group's (a single process when there is none).

    Example:
        >>> resolve_context().world_size
        1
    """
    return context if context is not None else DistributedContext.from_process_group()


class MainOnlyRun(RunDir):
    """A :class:`RunDir` for ranks other than 0: writes go to memory, never to disk.

    The summary starts as rank 0's (broadcast by :meth:`DistributedContext.main_only`),
    so resume decisions are the same on every rank.
    """

    def __init__(self, path: Path, summary: dict[str, Any] | None = None) -> None:
        super().__init__(path)
        self._summary: dict[str, Any] = dict(summary or {})

    def summary(self) -> dict[str, Any]:
        """The in-memory summary."""
        return self._summary

    def update_summary(self, section: dict[str, Any]) -> dict[str, Any]:
        """Merge ``section`` in memory only."""
        _deep_merge(self._summary, _jsonable(section))
        return self._summary

    def write_arrays(self, dataset: Any) -> None:
        """Do nothing (rank 0 writes)."""

    def subdir(self, name: str) -> Path:
        """The path of a subdirectory, not created."""
        return self.path / name


# -- data sharding ---------------------------------------------------------------------
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
        >>> from landscape.io import load_data
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
        >>> from landscape.io import load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> shard_bundle(b, DistributedContext()) is b
        True
    """
    if not context.is_distributed:
        return bundle
    return replace(
        bundle, data=shard_data(bundle.data, context.rank, context.world_size, mode=mode)
    )


# -- data-parallel curvature -----------------------------------------------------------
class DistributedOperator(LinearOperatorBase):
    """Data-parallel curvature: the all-reduced, sample-weighted mean of shard operators.

    Each rank's ``local_op`` returns the mean over its ``n_local`` samples; this operator
    returns ``Σ_r n_r·(A_r v) / N`` on every rank, where ``N = Σ_r n_r``. It satisfies the
    :class:`~landscape.engine.Operator` protocol, so every estimator runs unchanged; run
    the same calls with the same seeds on every rank.

    Args:
        local_op: this rank's operator on its shard.
        n_local: samples in this rank's shard.
        n_total: samples over all ranks (all-reduced when ``None``).
        context: the distributed context (default: the current process group).

    Example:
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> local = CurvatureOperator(ParamSpace(b))
        >>> op = DistributedOperator(local, local.n)
        >>> torch.allclose(op.matvec(torch.ones(op.dim)), local.matvec(torch.ones(op.dim)))
        True
    """

    def __init__(
        self,
        local_op: Operator,
        n_local: int,
        n_total: int | None = None,
        context: DistributedContext | None = None,
    ) -> None:
        self.context = resolve_context(context)
        self.local_op = local_op
        self.n_local = int(n_local)
        self.n_total = int(n_total) if n_total is not None else self.context.sum_int(n_local)
        if self.n_total <= 0:
            raise ConfigError("the data is empty on every rank; give data.")
        self.weight = self.n_local / self.n_total
        self.dim = local_op.dim
        self.device = local_op.device
        self.dtype = local_op.dtype
        self.matvecs = 0

    @property
    def strategy(self) -> str:
        """The local operator's HVP strategy (``distributed`` if it has none)."""
        return str(getattr(self.local_op, "strategy", "distributed"))

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Apply the data-parallel operator to one vector of shape ``(dim,)``."""
        self.matvecs += 1
        return self.context.all_reduce_sum(self.local_op.matvec(v) * self.weight)

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """Apply the data-parallel operator to each row of ``vs`` (shape ``(k, dim)``)."""
        if vs.dim() == 1:
            return self.matvec(vs)
        self.matvecs += int(vs.shape[0])
        return self.context.all_reduce_sum(self.local_op.matmat(vs) * self.weight)

    def release(self) -> None:
        """Free the local operator's caches."""
        rel = getattr(self.local_op, "release", None)
        if rel is not None:
            rel()


@torch.no_grad()
def _local_sums(space: ParamSpace, theta: torch.Tensor, split: str) -> tuple[float, int, int]:
    total = 0.0
    correct = 0
    classification = space.bundle.loss.classification
    for x, y in space.chunks(split):
        out = space.forward(theta, x)
        total += float(space.bundle.loss.chunk_sum(out, y))
        if classification and out.dim() >= 2 and not y.is_floating_point():
            correct += int((out.argmax(dim=-1) == y).sum())
    return total, correct, space.num_samples(split)


def distributed_evaluate(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    split: str = "train",
    context: DistributedContext | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy over all ranks' shards (the same on every rank).

    Args:
        space: this rank's parameter space on its data shard.
        theta: the point (default ``space.theta0``).
        split: ``train`` or ``test``.
        context: the distributed context.

    Returns:
        ``(loss, accuracy)``; accuracy is NaN for regression, both NaN without data.

    Example:
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> s = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> distributed_evaluate(s) == s.evaluate()
        True
    """
    ctx = resolve_context(context)
    theta = space.theta0 if theta is None else theta
    total, correct, n = _local_sums(space, theta, split)
    if ctx.is_distributed:
        red = ctx.all_reduce_sum(
            torch.tensor([total, float(correct), float(n)], dtype=torch.float64)
        )
        total, correct, n = float(red[0]), int(round(float(red[1]))), int(round(float(red[2])))
    if n == 0:
        return float("nan"), float("nan")
    acc = correct / n if space.bundle.loss.classification else float("nan")
    return total / n, acc


def distributed_value_and_grad(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    split: str = "train",
    context: DistributedContext | None = None,
) -> tuple[float, torch.Tensor]:
    """Mean loss and its gradient over all ranks' shards (the same on every rank).

    Example:
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> s = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> distributed_value_and_grad(s)[1].shape
        torch.Size([33])
    """
    ctx = resolve_context(context)
    theta = space.theta0 if theta is None else theta
    total = 0.0
    g_sum = torch.zeros_like(theta)
    for x, y in space.chunks(split):
        loss, g, _ = space.grad_graph(theta, x, y, create_graph=False)
        total += float(loss)
        g_sum += g.detach()
    n = space.num_samples(split)
    if ctx.is_distributed:
        packed = torch.cat(
            [
                g_sum.double(),
                torch.tensor([total, float(n)], dtype=torch.float64, device=g_sum.device),
            ]
        )
        red = ctx.all_reduce_sum(packed)
        g_sum = red[:-2].to(theta.dtype)
        total, n = float(red[-2]), int(round(float(red[-1])))
    if n == 0:
        raise ConfigError(f"the {split} split is empty; give data for it.")
    return total / n, g_sum / n


class DataParallel:
    """A model's parameter space with this rank's data shard and collectives.

    In one process it is a thin pass-through to :class:`ParamSpace` and
    :class:`CurvatureOperator`; under torchrun the same calls shard the data, all-reduce
    and give identical numbers on every rank.

    Attributes:
        space: the full-data parameter space (for work that is not sharded).
        local: the parameter space on this rank's shard (``space`` in one process).
        context: the distributed context.

    Example:
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> dp = DataParallel(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> dp.evaluate() == dp.space.evaluate()
        True
    """

    def __init__(
        self,
        bundle: ModelBundle,
        context: DistributedContext | None = None,
        *,
        mode: str = "contiguous",
        space: ParamSpace | None = None,
    ) -> None:
        self.context = resolve_context(context)
        self.space = space if space is not None else ParamSpace(bundle)
        if self.context.is_distributed:
            shard = shard_bundle(bundle, self.context, mode=mode)
            self.local = ParamSpace(shard, params=self.space.params)
        else:
            self.local = self.space

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.context.is_main

    def evaluate(
        self, theta: torch.Tensor | None = None, split: str = "train"
    ) -> tuple[float, float]:
        """Mean loss and accuracy over the whole split (see :func:`distributed_evaluate`)."""
        if not self.context.is_distributed:
            return self.space.evaluate(theta, split)
        return distributed_evaluate(self.local, theta, split, self.context)

    def value_and_grad(
        self, theta: torch.Tensor | None = None, split: str = "train"
    ) -> tuple[float, torch.Tensor]:
        """Mean loss and gradient over the whole split."""
        if not self.context.is_distributed:
            return self.space.value_and_grad(theta, split)
        return distributed_value_and_grad(self.local, theta, split, self.context)

    def operator(
        self,
        theta: torch.Tensor | None = None,
        *,
        kind: str = "hessian",
        strategy: str = "auto",
        split: str = "train",
    ) -> CurvatureOperator | DistributedOperator:
        """The curvature operator over the whole split (data-parallel under torchrun)."""
        if not self.context.is_distributed:
            return CurvatureOperator(self.space, theta, kind=kind, strategy=strategy, split=split)
        local = CurvatureOperator(self.local, theta, kind=kind, strategy=strategy, split=split)
        return DistributedOperator(
            local, local.n, self.space.num_samples(split), context=self.context
        )

    def main_only(self, run: RunDir) -> RunDir:
        """``run`` on rank 0, an in-memory stand-in elsewhere (collective)."""
        return self.context.main_only(run)

    def progress(self, progress: Progress | None) -> Progress | None:
        """``progress`` on rank 0, ``None`` on the others."""
        return progress if self.context.is_main else None


# -- grid-parallel surfaces ------------------------------------------------------------
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


def _load_progress(path: Path, names: Sequence[str]) -> dict[int, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if list(z["names"].tolist()) != list(names):
                return {}
            return {
                int(i): np.asarray(v, dtype=np.float64)
                for i, v in zip(z["idx"], z["values"], strict=True)
            }
    except (OSError, ValueError, KeyError):
        return {}


def _save_progress(path: Path, results: dict[int, np.ndarray], names: Sequence[str]) -> None:
    idx = np.asarray(sorted(results), dtype=np.int64)
    vals = (
        np.stack([results[int(i)] for i in idx])
        if len(idx)
        else np.zeros((0, len(names)), dtype=np.float64)
    )

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, idx=idx, values=vals, names=np.asarray(list(names)))

    atomic_write(path, write)


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
        >>> from landscape.io import load_data
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
        >>> from landscape.io import load_data
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
        own = _load_progress(_progress_file(pdir, key, ctx.rank), names)
        if ctx.is_main and pdir.is_dir():
            for f in sorted(pdir.glob(f"grid-{key}-rank*.npz")):
                vouched.update(_load_progress(f, names))
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
                    _save_progress(_progress_file(pdir, key, ctx.rank), own, names)
                    last_flush = time.monotonic()
            task.advance(ctx.sum_int(len(idx)))
    if pdir is not None and new:
        _save_progress(_progress_file(pdir, key, ctx.rank), own, names)

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
