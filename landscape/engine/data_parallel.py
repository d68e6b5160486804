"""Data-parallel loss, gradient and curvature: per-rank shard sums, one ``all_reduce``."""

from __future__ import annotations

import torch

from landscape.engine.context import DistributedContext, resolve_context
from landscape.engine.curvature import CurvatureOperator
from landscape.engine.operators import LinearOperatorBase, Operator
from landscape.engine.params import ParamSpace
from landscape.engine.sharding import shard_bundle
from landscape.errors import ConfigError
from landscape.io.model_bundle import ModelBundle
from landscape.io.rundir import RunDir
from landscape.progress import Progress


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
        >>> from landscape.io import ModelBundle, load_data
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
        >>> from landscape.io import ModelBundle, load_data
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
        >>> from landscape.io import ModelBundle, load_data
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
        >>> from landscape.io import ModelBundle, load_data
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
