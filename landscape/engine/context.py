"""The process group of a ``torchrun`` launch: ranks, collectives, rank-0-only writes."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from landscape import errors
from landscape.errors import ConfigError, LandscapeError
from landscape.io.rundir import RunDir, _deep_merge, _jsonable

T = TypeVar("T")

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
