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
* **grid-parallel surfaces** (:mod:`landscape.surface.sharded`, built on this context).
  :func:`~landscape.surface.sharded.sharded_grid_eval` gives each rank a strided share of
  the grid points (evaluated over all the data); results are gathered to rank 0, which
  alone writes. Each rank checkpoints its own progress file, so an interrupted grid
  resumes (even with a different number of processes).

Only rank 0 reports progress and writes files; its bars advance by the all-reduced count
of work done on every rank.

This module gathers the engine's parts: the process group (:mod:`landscape.engine.context`),
data sharding (:mod:`landscape.engine.sharding`) and the data-parallel operator
(:mod:`landscape.engine.data_parallel`).
"""

from landscape.engine.context import (
    DEFAULT_TIMEOUT_S,
    DistributedContext,
    MainOnlyRun,
    backend_for,
    env_rank,
    env_world_size,
    is_main_process,
    resolve_context,
)
from landscape.engine.data_parallel import (
    DataParallel,
    DistributedOperator,
    distributed_evaluate,
    distributed_value_and_grad,
)
from landscape.engine.sharding import SHARD_MODES, shard_bounds, shard_bundle, shard_data

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "SHARD_MODES",
    "DataParallel",
    "DistributedContext",
    "DistributedOperator",
    "MainOnlyRun",
    "backend_for",
    "distributed_evaluate",
    "distributed_value_and_grad",
    "env_rank",
    "env_world_size",
    "is_main_process",
    "resolve_context",
    "shard_bounds",
    "shard_bundle",
    "shard_data",
]
