"""Lottery tickets by iterative magnitude pruning with rewinding, and their basins.

Iterative magnitude pruning (IMP; Frankle & Carbin 2019) with weight rewinding (Frankle
et al. 2020, *Linear mode connectivity and the lottery ticket hypothesis*):

1. Train the dense network for ``T`` steps from θ_0, keeping the training state at step
   ``k`` (the rewind point: weights and SGD momentum).
2. Round ``r``: prune the fraction ``p`` of the remaining prunable weights with the
   smallest magnitude in the network trained in round ``r − 1``, globally across layers
   (prunable: the weights of ``Linear`` and ``Conv`` layers; biases and norm parameters are
   never pruned). Rewind the survivors to their values at step ``k``, the optimizer state
   with them (the pruned momentum zeroed), and train steps ``k … T`` again with the mask
   applied: gradients of pruned weights are zeroed before each step and the weights
   themselves after it, so they stay exactly zero. After ``r`` rounds a fraction
   ``≈ (1 − p)^r`` of the prunable weights remains (each round prunes
   ``round(p · remaining)``).

At every sparsity level (level 0 is the dense network itself) the experiment measures:

* the ticket's train/test loss and accuracy;
* the **instability** test: a second copy of the ticket trained from the same rewind point
  with a different data order (the ticket is the first copy), and the barrier of the
  linear path between the two copies, ``B = max_t L(θ(t)) − (L(θ_a) + L(θ_b)) / 2`` on the
  training loss (:func:`landscape.basins.connect.linear_path`; both copies share the mask,
  so the pruned weights stay zero along the path);
* the **ticket–dense** barrier: the same on the linear path from the dense network to the
  ticket;
* a basin measure: λ_max and the trace (Hutch++) of the training-loss Hessian of the
  ticket restricted to its unpruned coordinates (the principal submatrix of the full
  Hessian, :class:`landscape.engine.restrict.RestrictedOperator`), i.e. the curvature
  of the sparse network's own loss surface; for the dense network the full Hessian.

Everything is repeated across seeds (initialization and data order) and summarized per
level by the mean and a 95 % Student-t interval. **Verdict rule:** a barrier is "same
basin" when the upper end of its interval is below ``max(threshold, rel_threshold ×
mean endpoint loss)`` (defaults 0.05 nats and 5 %), else "different basin"; with one seed
there is no interval and the verdict is "undecided (one seed)".
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats as sps
from torch import nn

from landscape.basins.connect import PathResult, linear_path
from landscape.engine import ParamSpace
from landscape.engine.curvature import CurvatureOperator
from landscape.engine.restrict import RestrictedOperator
from landscape.errors import ConfigError
from landscape.hessian.eigenpairs import top_eigenpairs
from landscape.hessian.hutchpp import hutchpp_trace
from landscape.io.data import DataSource, load_data
from landscape.io.losses import LossSpec, resolve_loss
from landscape.io.model_bundle import ModelBundle, call_model
from landscape.io.rundir import RunDir, versions
from landscape.models import mlp
from landscape.progress import Progress, tracked
from landscape.results import Estimate, _json_float

Mask = dict[str, torch.Tensor]
"""Parameter name → boolean tensor of its shape (``True``: the weight is kept)."""

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
COPY_ORDER_OFFSET = 10_007
"""The second copy's data-order seed is the run's seed plus this."""


# -- masks --------------------------------------------------------------------------


def prunable_names(model: nn.Module) -> list[str]:
    """Names of the prunable parameters: the ``weight`` of each Linear/Conv layer.

    Example:
        >>> prunable_names(mlp(64, 8, 10))
        ['1.weight', '3.weight']
    """
    out = []
    for mname, mod in model.named_modules():
        if isinstance(mod, PRUNABLE) and getattr(mod, "weight", None) is not None:
            out.append(f"{mname}.weight" if mname else "weight")
    return out


def full_mask(model: nn.Module) -> Mask:
    """A mask that keeps every prunable weight.

    Example:
        >>> {k: v.all().item() for k, v in full_mask(mlp(64, 8, 10)).items()}
        {'1.weight': True, '3.weight': True}
    """
    params = dict(model.named_parameters())
    return {n: torch.ones_like(params[n], dtype=torch.bool) for n in prunable_names(model)}


def mask_count(mask: Mask) -> tuple[int, int]:
    """``(kept, total)`` prunable weights.

    Example:
        >>> mask_count({"w": torch.tensor([True, False, True])})
        (2, 3)
    """
    kept = sum(int(m.sum()) for m in mask.values())
    return kept, sum(m.numel() for m in mask.values())


def magnitude_prune(weights: Mapping[str, torch.Tensor], mask: Mask, fraction: float) -> Mask:
    """Prune the ``fraction`` of the kept weights with the smallest magnitude, globally.

    ``round(fraction · kept)`` weights are removed across all tensors of ``mask`` at once
    (ties broken by position: tensor order, then flat index). Already pruned weights stay
    pruned.

    Args:
        weights: parameter name → tensor (at least the names of ``mask``).
        mask: the current mask.
        fraction: in ``[0, 1)``.

    Returns:
        The new mask (the old one is not modified).

    Example:
        >>> w = {"a": torch.tensor([0.1, -3.0]), "b": torch.tensor([0.5, -0.2, 2.0])}
        >>> m = {"a": torch.ones(2, dtype=torch.bool), "b": torch.ones(3, dtype=torch.bool)}
        >>> {k: v.tolist() for k, v in magnitude_prune(w, m, 0.4).items()}
        {'a': [False, True], 'b': [True, False, True]}
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"--prune-fraction must be in [0, 1), got {fraction}.")
    names = list(mask)
    mags = torch.cat([weights[n].detach().abs().reshape(-1).double().cpu() for n in names])
    keep = torch.cat([mask[n].reshape(-1).cpu() for n in names])
    kept = int(keep.sum())
    n_prune = int(round(fraction * kept))
    new = keep.clone()
    if n_prune > 0:
        score = torch.where(keep, mags, torch.full_like(mags, math.inf))
        order = torch.argsort(score, stable=True)
        new[order[:n_prune]] = False
    out: Mask = {}
    offset = 0
    for n in names:
        k = mask[n].numel()
        out[n] = new[offset : offset + k].view(mask[n].shape).to(mask[n].device)
        offset += k
    return out


def remaining_schedule(total: int, fraction: float, rounds: int) -> list[int]:
    """Kept weights after each of ``0 … rounds`` rounds (``≈ total · (1 − p)^r``).

    Example:
        >>> remaining_schedule(1000, 0.2, 3)
        [1000, 800, 640, 512]
    """
    out = [total]
    for _ in range(rounds):
        out.append(out[-1] - int(round(fraction * out[-1])))
    return out


@torch.no_grad()
def apply_mask(model: nn.Module, mask: Mask) -> None:
    """Zero the pruned weights of ``model`` in place (a model this module owns)."""
    params = dict(model.named_parameters())
    for n, m in mask.items():
        params[n].mul_(m.to(params[n].dtype))


# -- training -----------------------------------------------------------------------


@dataclass(frozen=True)
class TrainState:
    """A snapshot of training: the step, the parameters and the optimizer state."""

    step: int
    params: dict[str, torch.Tensor] = field(repr=False)
    optimizer: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class LotteryTrain:
    """Training settings of every network of the experiment (SGD with momentum).

    Attributes:
        epochs: passes over the training data (``T = epochs · steps per epoch``).
        batch_size: minibatch size.
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0

    def validate(self) -> None:
        """Raise :class:`ConfigError` on settings that cannot train."""
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("training needs epochs ≥ 1 and batch_size ≥ 1.")
        if not self.lr > 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ConfigError("training needs lr > 0, momentum in [0, 1) and weight_decay ≥ 0.")


def steps_per_epoch(num_train: int, batch_size: int) -> int:
    """Minibatches per epoch (the last one may be smaller).

    Example:
        >>> steps_per_epoch(100, 32)
        4
    """
    return -(-num_train // batch_size)


def _epoch_order(order_seed: int, epoch: int, n: int) -> torch.Tensor:
    s = int(np.random.SeedSequence([order_seed, epoch]).generate_state(1)[0])
    return torch.randperm(n, generator=torch.Generator().manual_seed(s))


def _optimizer(model: nn.Module, cfg: LotteryTrain) -> torch.optim.SGD:
    return torch.optim.SGD(
        list(model.parameters()), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def train_masked(
    model: nn.Module,
    data: DataSource,
    cfg: LotteryTrain,
    *,
    mask: Mask | None = None,
    order_seed: int = 0,
    start: TrainState | None = None,
    snapshot_step: int | None = None,
    loss: LossSpec | None = None,
) -> TrainState | None:
    """Train ``model`` in place from ``start`` (or step 0) to step ``T`` with ``mask``.

    The data order of epoch ``e`` depends only on ``(order_seed, e)``, so a run resumed
    from step ``k`` sees the same minibatches as the uninterrupted run. With a mask the
    pruned weights (and their momentum) are zeroed at the start, their gradients before
    each step and the weights after it.

    Args:
        model: the module to train (owned by the caller).
        data: training data.
        cfg: training settings.
        mask: weights to keep (``None``: dense).
        order_seed: seed of the data order.
        start: state to resume from (loaded into ``model``; ``None``: its current
            weights at step 0 with a fresh optimizer).
        snapshot_step: return the training state at this step (``None``: none).
        loss: the loss (default inferred from the targets).

    Returns:
        The state at ``snapshot_step`` (``None`` if not asked for or not reached).

    Example:
        >>> torch.manual_seed(0) and None
        >>> m = mlp(64, 8, 10)
        >>> d = load_data("digits", max_samples=64)
        >>> train_masked(m, d, LotteryTrain(epochs=1), snapshot_step=1).step
        1
    """
    spec = loss or resolve_loss(None, data.y_train)
    x, y = data.x_train, data.y_train
    n = int(x.shape[0])
    spe = steps_per_epoch(n, cfg.batch_size)
    total = cfg.epochs * spe
    opt = _optimizer(model, cfg)
    params = dict(model.named_parameters())
    step = 0
    if start is not None:
        with torch.no_grad():
            for k, v in start.params.items():
                params[k].copy_(v)
        opt.load_state_dict(copy.deepcopy(start.optimizer))
        step = start.step
    masks = {params[k]: m.to(params[k].dtype) for k, m in (mask or {}).items()}
    if masks:
        with torch.no_grad():
            for p, m in masks.items():
                p.mul_(m)
                buf = opt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(m)
    snap: TrainState | None = None

    def snapshot() -> TrainState:
        return TrainState(
            step,
            {k: v.detach().clone() for k, v in params.items()},
            copy.deepcopy(opt.state_dict()),
        )

    model.train()
    if snapshot_step == step:
        snap = snapshot()
    while step < total:
        epoch, pos = divmod(step, spe)
        perm = _epoch_order(order_seed, epoch, n)
        for i in range(pos * cfg.batch_size, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            out = call_model(model, x[idx], data)
            lval = spec.chunk_sum(out, y[idx]) / max(spec.chunk_units(y[idx]), 1)
            lval.backward()
            for p, m in masks.items():
                if p.grad is not None:
                    p.grad.mul_(m)
            opt.step()
            if masks:
                with torch.no_grad():
                    for p, m in masks.items():
                        p.mul_(m)
            step += 1
            if snapshot_step == step:
                snap = snapshot()
    model.eval()
    opt.zero_grad(set_to_none=True)
    return snap


# -- statistics ---------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """Mean of per-seed values with a two-sided Student-t confidence interval.

    Attributes:
        mean: the sample mean.
        low: lower end (NaN for fewer than two finite values).
        high: upper end (NaN likewise).
        n: the number of finite values.
        level: the confidence level.

    Example:
        >>> iv = Interval.of([1.0, 2.0, 3.0])
        >>> iv.mean, round(iv.high - iv.mean, 3)
        (2.0, 2.484)
    """

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    @classmethod
    def of(cls, values: Sequence[float], level: float = 0.95) -> Interval:
        """The mean and t-interval of the finite ``values``."""
        v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
        if v.size == 0:
            return cls(math.nan, math.nan, math.nan, 0, level)
        m = float(v.mean())
        if v.size < 2:
            return cls(m, math.nan, math.nan, 1, level)
        half = float(sps.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
        return cls(m, m - half, m + half, int(v.size), level)

    @property
    def half_width(self) -> float:
        """``high − mean`` (NaN without an interval)."""
        return self.high - self.mean

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "mean": _json_float(self.mean),
            "low": _json_float(self.low),
            "high": _json_float(self.high),
            "n": self.n,
            "level": self.level,
        }


def basin_verdict(
    barrier: Interval, endpoint_loss: float, threshold: float, rel_threshold: float
) -> tuple[str, float]:
    """``("same basin" | "different basin" | "undecided (one seed)", cutoff)``.

    Same basin when the interval's upper end is below
    ``cutoff = max(threshold, rel_threshold · endpoint_loss)``.

    Example:
        >>> basin_verdict(Interval(0.01, 0.0, 0.02, 3), 0.2, 0.05, 0.05)
        ('same basin', 0.05)
        >>> basin_verdict(Interval(0.5, 0.3, 0.7, 3), 0.2, 0.05, 0.05)[0]
        'different basin'
    """
    cutoff = (
        max(threshold, rel_threshold * endpoint_loss) if math.isfinite(endpoint_loss) else threshold
    )
    if barrier.n < 2:
        return "undecided (one seed)", cutoff
    return ("same basin" if barrier.high < cutoff else "different basin"), cutoff


# -- results ------------------------------------------------------------------------


@dataclass(frozen=True)
class Curvature:
    """Hessian λ_max and trace (restricted to the unpruned coordinates).

    Attributes:
        lambda_max: the largest eigenvalue.
        converged: whether its Lanczos residual met the tolerance.
        trace: the Hutch++ trace estimate.
        dim: the number of coordinates the operator acts on.
    """

    lambda_max: float
    converged: bool
    trace: Estimate
    dim: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "lambda_max": _json_float(self.lambda_max),
            "converged": self.converged,
            "trace": self.trace.to_dict(),
            "dim": self.dim,
        }


@dataclass(frozen=True)
class LevelRun:
    """One sparsity level of one seed.

    Attributes:
        level: the pruning round (0: dense).
        kept: prunable weights kept.
        total: prunable weights in all.
        train_loss: the ticket's training loss.
        train_acc: its training accuracy.
        test_loss: its test loss.
        test_acc: its test accuracy.
        copy_test_acc: the second copy's test accuracy.
        instability: the linear path between the two copies (training loss).
        dense_path: the linear path from the dense network to the ticket.
        curvature: the ticket's restricted Hessian measures (``None``: not measured).
    """

    level: int
    kept: int
    total: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    copy_test_acc: float
    instability: PathResult
    dense_path: PathResult
    curvature: Curvature | None = None

    @property
    def remaining(self) -> float:
        """The fraction of prunable weights kept."""
        return self.kept / self.total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "level": self.level,
            "kept": self.kept,
            "total": self.total,
            "remaining": self.remaining,
            "train_loss": _json_float(self.train_loss),
            "train_acc": _json_float(self.train_acc),
            "test_loss": _json_float(self.test_loss),
            "test_acc": _json_float(self.test_acc),
            "copy_test_acc": _json_float(self.copy_test_acc),
            "instability": self.instability.to_dict(),
            "dense_path": self.dense_path.to_dict(),
            "curvature": None if self.curvature is None else self.curvature.to_dict(),
        }


@dataclass(frozen=True)
class SeedRun:
    """All levels of one seed.

    Attributes:
        seed: seed of the initialization and the ticket's data order.
        rewind_step: the step rewound to.
        total_steps: training steps of every network.
        levels: one :class:`LevelRun` per round (level 0 is the dense network).
    """

    seed: int
    rewind_step: int
    total_steps: int
    levels: tuple[LevelRun, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "seed": self.seed,
            "rewind_step": self.rewind_step,
            "total_steps": self.total_steps,
            "levels": [lv.to_dict() for lv in self.levels],
        }


@dataclass(frozen=True)
class LevelSummary:
    """One sparsity level across seeds: means, 95 % t-intervals and verdicts.

    Attributes:
        level: the pruning round.
        remaining: fraction of prunable weights kept.
        test_acc: the ticket's test accuracy.
        train_loss: its training loss.
        instability: barrier between the two copies.
        dense_barrier: barrier between the dense network and the ticket.
        lambda_max: restricted Hessian λ_max of the ticket.
        trace: restricted Hessian trace of the ticket.
        stability: verdict of the instability barrier.
        stability_cutoff: the cutoff it was compared with.
        dense_verdict: verdict of the ticket–dense barrier.
        dense_cutoff: the cutoff it was compared with.
    """

    level: int
    remaining: float
    test_acc: Interval
    train_loss: Interval
    instability: Interval
    dense_barrier: Interval
    lambda_max: Interval
    trace: Interval
    stability: str
    stability_cutoff: float
    dense_verdict: str
    dense_cutoff: float

    def sentence(self) -> str:
        """The verdict in one sentence."""

        def bound(iv: Interval) -> str:
            return "no interval" if iv.n < 2 else f"upper bound {iv.high:.3g}"

        dense = (
            "the ticket is the dense network"
            if self.dense_verdict == "same network"
            else f"ticket and dense network: {self.dense_verdict}"
            f" ({bound(self.dense_barrier)} vs cutoff {self.dense_cutoff:.3g})"
        )
        return (
            f"At {100 * self.remaining:.1f}% of the weights, the two copies: {self.stability}"
            f" ({bound(self.instability)} vs cutoff {self.stability_cutoff:.3g}); {dense}."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "level": self.level,
            "remaining": self.remaining,
            "test_acc": self.test_acc.to_dict(),
            "train_loss": self.train_loss.to_dict(),
            "instability": self.instability.to_dict(),
            "dense_barrier": self.dense_barrier.to_dict(),
            "lambda_max": self.lambda_max.to_dict(),
            "trace": self.trace.to_dict(),
            "stability": self.stability,
            "stability_cutoff": self.stability_cutoff,
            "dense_verdict": self.dense_verdict,
            "dense_cutoff": self.dense_cutoff,
            "sentence": self.sentence(),
        }


# -- configuration and run ----------------------------------------------------------


@dataclass(frozen=True)
class LotteryConfig:
    """Settings of the lottery experiment.

    Attributes:
        data: dataset name (see :func:`landscape.io.data.load_data`).
        max_samples: cap on training (and test) samples.
        hidden: hidden widths of the ReLU MLP.
        train: training settings.
        rounds: pruning rounds (levels ``0 … rounds``).
        prune_fraction: fraction of the remaining weights pruned per round.
        rewind_step: the step rewound to (``None``: one epoch).
        seeds: seeds of initialization and data order.
        points: t-grid size of every linear path.
        threshold: absolute barrier cutoff of the verdict (nats).
        rel_threshold: cutoff relative to the mean endpoint loss.
        curvature: measure the restricted Hessian λ_max and trace.
        trace_matvecs: Hutch++ budget of the trace.
    """

    data: str = "digits"
    max_samples: int | None = None
    hidden: tuple[int, ...] = (32,)
    train: LotteryTrain = field(default_factory=LotteryTrain)
    rounds: int = 5
    prune_fraction: float = 0.2
    rewind_step: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    points: int = 11
    threshold: float = 0.05
    rel_threshold: float = 0.05
    curvature: bool = True
    trace_matvecs: int = 30

    def __post_init__(self) -> None:
        self.train.validate()
        if self.rounds < 0:
            raise ConfigError(f"--rounds must be ≥ 0, got {self.rounds}.")
        if not 0.0 <= self.prune_fraction < 1.0:
            raise ConfigError(f"--prune-fraction must be in [0, 1), got {self.prune_fraction}.")
        if self.rewind_step is not None and self.rewind_step < 0:
            raise ConfigError(f"--rewind-step must be ≥ 0, got {self.rewind_step}.")
        if not self.seeds:
            raise ConfigError("give at least one seed.")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds must be distinct.")
        if self.points < 2:
            raise ConfigError(f"paths need at least 2 points, got {self.points}.")
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError("hidden widths must be positive.")
        if self.threshold < 0 or self.rel_threshold < 0:
            raise ConfigError("barrier thresholds must be ≥ 0.")
        if self.trace_matvecs < 6:
            raise ConfigError(f"trace_matvecs must be ≥ 6, got {self.trace_matvecs}.")

    @classmethod
    def quick(cls, **overrides: Any) -> LotteryConfig:
        """A seconds-long configuration (600 digits, 16 hidden units, 3 rounds, 3 seeds)."""
        base: dict[str, Any] = {
            "max_samples": 600,
            "hidden": (16,),
            "train": LotteryTrain(epochs=6),
            "rounds": 3,
            "points": 7,
            "trace_matvecs": 12,
        }
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "data": self.data,
            "max_samples": self.max_samples,
            "hidden": list(self.hidden),
            "train": {
                "epochs": self.train.epochs,
                "batch_size": self.train.batch_size,
                "lr": self.train.lr,
                "momentum": self.train.momentum,
                "weight_decay": self.train.weight_decay,
            },
            "rounds": self.rounds,
            "prune_fraction": self.prune_fraction,
            "rewind_step": self.rewind_step,
            "seeds": list(self.seeds),
            "points": self.points,
            "threshold": self.threshold,
            "rel_threshold": self.rel_threshold,
            "curvature": self.curvature,
            "trace_matvecs": self.trace_matvecs,
        }


@dataclass(frozen=True)
class LotteryResult:
    """The experiment's outcome.

    Attributes:
        config: what was run.
        runs: one :class:`SeedRun` per seed.
        levels: one :class:`LevelSummary` per sparsity level.
        seconds: wall time.
    """

    config: LotteryConfig
    runs: tuple[SeedRun, ...]
    levels: tuple[LevelSummary, ...]
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "config": self.config.to_dict(),
            "levels": [lv.to_dict() for lv in self.levels],
            "runs": [r.to_dict() for r in self.runs],
            "seconds": self.seconds,
        }


def _theta(space: ParamSpace, model: nn.Module) -> torch.Tensor:
    return space.flatten({k: v.detach() for k, v in model.named_parameters()}).to(
        space.device, space.dtype
    )


def kept_indices(space: ParamSpace, mask: Mask) -> torch.Tensor:
    """Indices into θ of the coordinates a mask keeps (tensors it does not name kept whole).

    Example:
        >>> from landscape.io import load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> keep = torch.zeros(3, 10, dtype=torch.bool)
        >>> keep[0, 1] = True
        >>> kept_indices(sp, {"weight": keep}).tolist()  # the weight kept, then the 3 biases
        [1, 30, 31, 32]
    """
    parts = []
    for info in space.infos:
        if info.name in mask:
            parts.append(info.offset + torch.nonzero(mask[info.name].reshape(-1).cpu()).view(-1))
        else:
            parts.append(torch.arange(info.offset, info.offset + info.numel))
    return torch.cat(parts)


def restricted_curvature(
    space: ParamSpace, theta: torch.Tensor, mask: Mask | None, *, matvecs: int, seed: int
) -> Curvature:
    """λ_max and Hutch++ trace of the Hessian at θ restricted to the kept coordinates.

    Args:
        space: the parameter space.
        theta: the point.
        mask: the kept weights (``None``: every coordinate).
        matvecs: Hutch++ budget.
        seed: seed of the Lanczos start and the probes.

    Returns:
        The measures.
    """
    op: Any = CurvatureOperator(space, theta)
    if mask is not None:
        idx = kept_indices(space, mask)
        if idx.numel() < space.dim:
            op = RestrictedOperator(op, idx)
    eig = top_eigenpairs(op, 1, seed=seed)
    tr = hutchpp_trace(op, min(matvecs, max(6, 3 * int(op.dim))), seed=seed)
    return Curvature(float(eig.values[0]), bool(eig.converged[0]), tr, int(op.dim))


def _run_seed(cfg: LotteryConfig, data: DataSource, seed: int, task: Any) -> SeedRun:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dense = mlp(int(np.prod(data.x_train.shape[1:])), list(cfg.hidden), _num_classes(data))
    spe = steps_per_epoch(int(data.x_train.shape[0]), cfg.train.batch_size)
    total_steps = cfg.train.epochs * spe
    k = spe if cfg.rewind_step is None else cfg.rewind_step
    rewind = train_masked(dense, data, cfg.train, order_seed=seed, snapshot_step=k)
    assert rewind is not None
    space = ParamSpace(ModelBundle.from_module(dense, data))
    theta_dense = _theta(space, dense)
    mask = full_mask(dense)
    prev = dense
    levels: list[LevelRun] = []
    for level in range(cfg.rounds + 1):
        if level == 0:
            ticket = dense
        else:
            mask = magnitude_prune(dict(prev.named_parameters()), mask, cfg.prune_fraction)
            ticket = copy.deepcopy(dense)
            train_masked(ticket, data, cfg.train, mask=mask, order_seed=seed, start=rewind)
        twin = copy.deepcopy(dense)
        train_masked(
            twin,
            data,
            cfg.train,
            mask=mask,
            order_seed=seed + COPY_ORDER_OFFSET,
            start=rewind,
        )
        th_t, th_c = _theta(space, ticket), _theta(space, twin)
        tl, ta = space.evaluate(th_t, "train")
        vl, va = space.evaluate(th_t, "test")
        _, ca = space.evaluate(th_c, "test")
        inst = linear_path(space, th_t, th_c, points=cfg.points)
        dpath = linear_path(space, theta_dense, th_t, points=cfg.points)
        curv = (
            restricted_curvature(
                space, th_t, None if level == 0 else mask, matvecs=cfg.trace_matvecs, seed=seed
            )
            if cfg.curvature
            else None
        )
        kept, total = mask_count(mask)
        levels.append(LevelRun(level, kept, total, tl, ta, vl, va, ca, inst, dpath, curv))
        prev = ticket
        task.advance()
    return SeedRun(seed, k, total_steps, tuple(levels))


def _num_classes(data: DataSource) -> int:
    ys = [data.y_train] + ([data.y_test] if data.y_test is not None else [])
    return int(torch.cat([y.reshape(-1) for y in ys]).max()) + 1


def summarize(runs: Sequence[SeedRun], cfg: LotteryConfig) -> tuple[LevelSummary, ...]:
    """Per-level means, t-intervals and verdicts across seeds."""
    out = []
    for level in range(cfg.rounds + 1):
        rows = [r.levels[level] for r in runs]

        def iv(get: Any, rows: list[LevelRun] = rows) -> Interval:
            return Interval.of([float(get(x)) for x in rows])

        inst_end = float(
            np.mean([0.5 * (x.instability.loss[0] + x.instability.loss[-1]) for x in rows])
        )
        dense_end = float(
            np.mean([0.5 * (x.dense_path.loss[0] + x.dense_path.loss[-1]) for x in rows])
        )
        inst = iv(lambda x: x.instability.barrier)
        dbar = iv(lambda x: x.dense_path.barrier)
        sv, sc = basin_verdict(inst, inst_end, cfg.threshold, cfg.rel_threshold)
        if level == 0:
            dv, dc = "same network", 0.0
        else:
            dv, dc = basin_verdict(dbar, dense_end, cfg.threshold, cfg.rel_threshold)
        out.append(
            LevelSummary(
                level,
                rows[0].remaining,
                iv(lambda x: x.test_acc),
                iv(lambda x: x.train_loss),
                inst,
                dbar,
                iv(lambda x: x.curvature.lambda_max if x.curvature else math.nan),
                iv(lambda x: x.curvature.trace.mean if x.curvature else math.nan),
                sv,
                sc,
                dv,
                dc,
            )
        )
    return tuple(out)


def run_lottery(
    cfg: LotteryConfig,
    out_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> LotteryResult:
    """Run IMP with rewinding for every seed, measure each level and summarize.

    Args:
        cfg: the configuration.
        out_dir: run directory (``config.json``, ``summary.json`` with a ``lottery``
            section, ``results.nc`` with the paths); ``None``: nothing written.
        overwrite: replace an existing run in ``out_dir``.
        progress: optional progress reporter (one step per level and seed).

    Returns:
        The result.

    Example:
        >>> cfg = LotteryConfig.quick(max_samples=100, rounds=1, seeds=(0,), curvature=False,
        ...                          train=LotteryTrain(epochs=2))
        >>> [round(lv.remaining, 2) for lv in run_lottery(cfg).levels]
        [1.0, 0.8]
    """
    t0 = time.perf_counter()
    data = load_data(cfg.data, max_samples=cfg.max_samples)
    if data.keyed or data.y_train.is_floating_point():
        raise ConfigError("the lottery experiment needs a classification dataset (e.g. digits).")
    spe = steps_per_epoch(int(data.x_train.shape[0]), cfg.train.batch_size)
    if cfg.rewind_step is not None and cfg.rewind_step > cfg.train.epochs * spe:
        raise ConfigError(
            f"--rewind-step {cfg.rewind_step} is past the end of training"
            f" ({cfg.train.epochs * spe} steps); lower it."
        )
    run = None
    if out_dir is not None:
        run = RunDir.create(
            out_dir,
            {"experiment": "lottery", **cfg.to_dict(), "versions": versions()},
            overwrite=overwrite,
            compare_keys=lambda c: {k: v for k, v in c.items() if k != "versions"},
        )
    runs = []
    with tracked(progress, "lottery tickets", len(cfg.seeds) * (cfg.rounds + 1)) as task:
        for seed in cfg.seeds:
            runs.append(_run_seed(cfg, data, seed, task))
    levels = summarize(runs, cfg)
    result = LotteryResult(cfg, tuple(runs), levels, time.perf_counter() - t0)
    if run is not None:
        run.update_summary({"lottery": result.to_dict()})
        run.write_arrays(_dataset(result))
    return result


def _dataset(result: LotteryResult) -> Any:
    import xarray as xr

    runs = result.runs
    t = runs[0].levels[0].instability.t
    shape = (len(runs), len(runs[0].levels), len(t))
    inst = np.empty(shape)
    dense = np.empty(shape)
    for i, r in enumerate(runs):
        for j, lv in enumerate(r.levels):
            inst[i, j] = lv.instability.loss
            dense[i, j] = lv.dense_path.loss
    coords = {
        "seed": [r.seed for r in runs],
        "level": [lv.level for lv in runs[0].levels],
        "t": t,
    }
    dims = ("seed", "level", "t")
    return xr.Dataset(
        {
            "lottery_instability_loss": (dims, inst),
            "lottery_dense_path_loss": (dims, dense),
            "lottery_remaining": (("level",), [lv.remaining for lv in result.levels]),
        },
        coords=coords,
    )


def with_overrides(cfg: LotteryConfig, **kw: Any) -> LotteryConfig:
    """``cfg`` with the given fields replaced (``None`` values ignored)."""
    return replace(cfg, **{k: v for k, v in kw.items() if v is not None})
