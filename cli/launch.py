"""Running a command under ``torchrun``: join the process group, let rank 0 own the run.

Not a command module: ``cli/scan.py`` calls these so that
``torchrun --nproc-per-node N $(which landscape) scan ...`` shards the work over N
processes, while a plain ``landscape scan`` stays a single process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from landscape.engine.distributed import DistributedContext, env_world_size
from landscape.io.rundir import RunDir


def distributed_context(opts: Any) -> DistributedContext:
    """Join torchrun's process group (a no-op single process without torchrun).

    A ``--device cuda`` without an index becomes ``cuda:LOCAL_RANK`` on each rank, and
    ``opts.device`` is updated so the model lands there.
    """
    if env_world_size() == 1:
        return DistributedContext()
    ctx = DistributedContext.init_from_env(opts.device)
    if ctx.device.type == "cuda":
        opts.device = str(ctx.device)
    return ctx


def create_run(
    ctx: DistributedContext,
    out_dir: Path,
    config: dict[str, Any],
    *,
    overwrite: bool = False,
    resume: bool = False,
    compare_keys: Callable[[dict[str, Any]], Any] | None = None,
) -> RunDir:
    """Create the run directory on rank 0 (its errors raised on every rank)."""
    path = ctx.on_main(
        lambda: (
            RunDir.create(
                out_dir, config, overwrite=overwrite, resume=resume, compare_keys=compare_keys
            ).path
        )
    )
    return RunDir(path)
