"""Mode connectivity: loss along linear, permutation-aligned and trained curved paths.

For two minima θ_a and θ_b the loss is evaluated along a path θ(t), t ∈ [0, 1], and the
barrier is the height of its highest point above the mean of the endpoint losses,

    B = max_t L(θ(t)) − (L(θ(0)) + L(θ(1))) / 2,

at ``t_max`` (on a uniform t-grid that includes both ends). Paths:

* ``linear``: θ(t) = (1 − t) θ_a + t θ_b.
* ``aligned``: the same after permuting θ_b's hidden units onto θ_a by weight matching
  (:func:`landscape.basins.symmetry.match_permutations`; Ainsworth et al. 2023).
* ``bezier``: θ(t) = (1 − t)² θ_a + 2t(1 − t) θ_c + t² θ_b, and ``polychain``: θ_a → θ_c → θ_b,
  with the bend θ_c trained by minimizing E_{t∼U(0,1)} L(θ(t)) from the midpoint
  (Garipov et al. 2018).

For models with BatchNorm the running statistics at each point of a path are recomputed
from the training data with the point's weights (train-mode passes on a private copy of the
module, cumulative averages), as the interpolated weights make the endpoints' statistics
wrong (Jordan et al. 2023, *REPAIR*, renormalization without the rescaling step). Curves
are trained with batch statistics in the forward pass. The user's model is never modified.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from landscape.basins.symmetry import Alignment, match_permutations, weight_matching
from landscape.engine.attention import math_attention
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError, NotApplicable
from landscape.io.model_bundle import call_model
from landscape.progress import Progress, tracked
from landscape.results import _json_float

CURVES = ("bezier", "polychain")


@dataclass(frozen=True)
class PathResult:
    """Loss and accuracy along a path and its barrier.

    Attributes:
        t: path coordinates in [0, 1] (both ends included).
        loss: mean loss at each ``t``.
        acc: accuracy at each ``t`` (NaN for regression losses).
        barrier: ``max_t loss − (loss[0] + loss[-1]) / 2``.
        t_max: the ``t`` of the maximum.
    """

    t: np.ndarray
    loss: np.ndarray
    acc: np.ndarray
    barrier: float
    t_max: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "barrier": _json_float(self.barrier),
            "t_max": _json_float(self.t_max),
            "t": [float(v) for v in self.t],
            "loss": [_json_float(v) for v in self.loss],
            "acc": [_json_float(v) for v in self.acc],
        }


def path_barrier(t: np.ndarray, loss: np.ndarray) -> tuple[float, float]:
    """``(max loss − mean of the endpoint losses, t of the max)``; inf if a value is not finite.

    Example:
        >>> path_barrier(np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.2]))
        (0.9, 0.5)
    """
    loss = np.asarray(loss, dtype=np.float64)
    if not np.isfinite(loss).all():
        bad = int(np.flatnonzero(~np.isfinite(loss))[0])
        return float("inf"), float(t[bad])
    i = int(np.argmax(loss))
    return float(loss[i] - 0.5 * (loss[0] + loss[-1])), float(t[i])


def has_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` holds a BatchNorm layer that tracks running statistics."""
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        for m in module.modules()
    )


def check_same_layout(space_a: ParamSpace, space_b: ParamSpace, names: tuple[str, str]) -> None:
    """Raise a one-line :class:`ConfigError` unless both spaces hold the same named shapes.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> d = load_data("synthetic")
        >>> a = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), d))
        >>> b = ParamSpace(ModelBundle.from_module(nn.Sequential(nn.Linear(10, 3)), d))
        >>> check_same_layout(a, b, ("a.pt", "b.pt"))
        Traceback (most recent call last):
        ...
        landscape.errors.ConfigError: a.pt and b.pt have different architectures: parameter...
    """
    la = {i.name: i.shape for i in space_a.infos}
    lb = {i.name: i.shape for i in space_b.infos}
    if la == lb and list(la) == list(lb):
        return
    na, nb = names
    for name, shape in la.items():
        if name not in lb:
            why = f"parameter {name!r} is in {na} but not in {nb}"
            break
        if lb[name] != shape:
            why = f"parameter {name!r} has shape {list(shape)} in {na} and {list(lb[name])} in {nb}"
            break
    else:
        extra = next((n for n in lb if n not in la), None)
        why = (
            f"parameter {extra!r} is in {nb} but not in {na}"
            if extra is not None
            else "their parameters come in a different order"
        )
    raise ConfigError(
        f"{na} and {nb} have different architectures: {why}; connect two checkpoints of one model."
    )


def t_grid(points: int) -> np.ndarray:
    """``points`` uniform values of t in [0, 1] (at least 2)."""
    if points < 2:
        raise ConfigError(f"a path needs at least 2 points, got {points}.")
    return np.linspace(0.0, 1.0, points)


def curve_point(
    kind: str, t: float | torch.Tensor, a: torch.Tensor, c: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """θ(t) on a ``bezier`` (quadratic) or ``polychain`` (one bend at t = ½) curve.

    Example:
        >>> a, c, b = torch.zeros(1), torch.ones(1), torch.full((1,), 4.0)
        >>> float(curve_point("bezier", 0.5, a, c, b)), float(curve_point("polychain", 0.75, a, c, b))
        (1.5, 2.5)
    """
    if kind == "bezier":
        return (1 - t) ** 2 * a + 2 * t * (1 - t) * c + t**2 * b
    if kind == "polychain":
        if float(t) < 0.5:
            return a + 2 * t * (c - a)
        return c + (2 * t - 1) * (b - c)
    raise ConfigError(f"unknown curve {kind!r}; use one of {', '.join(CURVES)}.")


class _Evaluator:
    """Loss and accuracy at points θ, recomputing BatchNorm statistics when asked."""

    def __init__(self, space: ParamSpace, split: str, repair: bool) -> None:
        self.space = space
        self.split = split
        self.repair = repair
        self._module: nn.Module | None = None

    def _copy(self) -> nn.Module:
        if self._module is None:
            m = copy.deepcopy(self.space.bundle.module)
            for mod in m.modules():
                if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    mod.momentum = None  # cumulative average over the whole pass
            m.eval()
            self._module = m
        return self._module

    @torch.no_grad()
    def __call__(self, theta: torch.Tensor) -> tuple[float, float]:
        sp = self.space
        if not self.repair:
            return sp.evaluate(theta, self.split)
        m = self._copy()
        named = dict(m.named_parameters())
        for info in sp.infos:
            named[info.name].copy_(theta[info.slice].view(info.shape))
        bns = [mod for mod in m.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
        for bn in bns:
            bn.reset_running_stats()
            bn.train()
        data = sp.bundle.data
        for x, _ in sp.chunks("train"):
            call_model(m, x, data)
        for bn in bns:
            bn.eval()
        if sp.num_samples(self.split) == 0:
            return float("nan"), float("nan")
        spec = sp.bundle.loss
        n = sp.num_units(self.split)
        total, correct = 0.0, 0
        counted = spec.classification or spec.correct is not None
        for x, y in sp.chunks(self.split):
            out = call_model(m, x, data)
            total += float(spec.chunk_sum(out, y).to(torch.float64))
            if spec.correct is not None:
                correct += int(spec.correct(out, y))
            elif counted and out.dim() >= 2 and not y.is_floating_point():
                correct += int((out.argmax(dim=-1) == y).sum())
            else:
                counted = False
        return total / n, (correct / n if counted else float("nan"))


def _resolve_repair(space: ParamSpace, repair: bool | None) -> bool:
    bn = has_batchnorm(space.bundle.module)
    if repair is None:
        return bn and not space.scripted
    if repair and space.scripted:
        raise ConfigError("BatchNorm recomputation needs an eager model, not TorchScript.")
    return bool(repair) and bn


def evaluate_path(
    space: ParamSpace,
    point: Any,
    *,
    points: int = 25,
    split: str = "train",
    repair: bool | None = None,
    progress: Progress | None = None,
    label: str = "path",
) -> PathResult:
    """Loss and accuracy at ``point(t)`` on a uniform t-grid, and the barrier.

    Args:
        space: the parameter space (its data and loss).
        point: maps ``t`` (a float) to θ(t).
        points: grid size.
        split: ``train`` or ``test``.
        repair: recompute BatchNorm statistics at each point (``None``: when the model has
            BatchNorm).
        progress: optional progress reporter (one step per point).
        label: progress description.

    Returns:
        The path's values and barrier.
    """
    t = t_grid(points)
    ev = _Evaluator(space, split, _resolve_repair(space, repair))
    loss = np.empty(points)
    acc = np.empty(points)
    with tracked(progress, label, points) as task:
        for i, ti in enumerate(t):
            theta = point(float(ti)).to(space.device, space.dtype)
            loss[i], acc[i] = ev(theta)
            task.advance()
    bar, tm = path_barrier(t, loss)
    return PathResult(t, loss, acc, bar, tm)


def linear_path(
    space: ParamSpace,
    theta_a: torch.Tensor,
    theta_b: torch.Tensor,
    *,
    points: int = 25,
    split: str = "train",
    repair: bool | None = None,
    progress: Progress | None = None,
) -> PathResult:
    """Loss along θ(t) = (1 − t) θ_a + t θ_b (see :func:`evaluate_path`).

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> abs(linear_path(sp, sp.theta0, sp.theta0, points=5).barrier) < 1e-12
        True
    """
    a = theta_a.detach().to(space.device, space.dtype)
    b = theta_b.detach().to(space.device, space.dtype)
    return evaluate_path(
        space,
        lambda t: (1 - t) * a + t * b,
        points=points,
        split=split,
        repair=repair,
        progress=progress,
        label="linear path",
    )


def align_permutations(
    space: ParamSpace, theta_a: torch.Tensor, theta_b: torch.Tensor, *, seed: int = 0
) -> Alignment:
    """θ_b's hidden units permuted onto θ_a: MLP weight matching, else the Sequential spec.

    Raises:
        NotApplicable: for models neither covers (naming the unsupported layer).
    """
    if space.params is not None:
        raise NotApplicable("permutation alignment needs every parameter; drop --params.")
    try:
        return match_permutations(space, theta_a, theta_b, seed=seed)
    except NotApplicable as exc:
        try:
            return weight_matching(space, theta_a, theta_b, seed=seed)
        except ConfigError:
            raise exc from None


@dataclass(frozen=True)
class CurveConfig:
    """How the bend of a curve is trained.

    Attributes:
        kind: ``bezier`` or ``polychain``.
        steps: optimizer steps.
        lr: learning rate.
        batch_size: samples per step (the whole training split if larger).
        optimizer: ``adam`` or ``sgd`` (momentum 0.9).
        seed: seed of the t draws and minibatches.
    """

    kind: str = "bezier"
    steps: int = 500
    lr: float = 1e-2
    batch_size: int = 128
    optimizer: str = "adam"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in CURVES:
            raise ConfigError(f"unknown curve {self.kind!r}; use one of {', '.join(CURVES)}.")
        if self.steps < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError("curve training needs steps ≥ 0, batch_size ≥ 1 and lr > 0.")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; use adam or sgd.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "kind": self.kind,
            "steps": self.steps,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class TrainedCurve:
    """A trained curve: its bend θ_c and the minibatch loss history."""

    kind: str
    control: torch.Tensor
    history: np.ndarray = field(repr=False)


@math_attention()
def train_curve(
    space: ParamSpace,
    theta_a: torch.Tensor,
    theta_b: torch.Tensor,
    config: CurveConfig | None = None,
    *,
    progress: Progress | None = None,
) -> TrainedCurve:
    """Train the bend θ_c of a curve from θ_a to θ_b (Garipov et al. 2018).

    θ_c starts at the midpoint; each step draws ``t ~ U(0, 1)`` and a minibatch and takes
    an optimizer step on the loss at θ(t) with respect to θ_c. Models with BatchNorm use
    batch statistics (train mode) on a private copy.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> tc = train_curve(sp, sp.theta0, sp.theta0 + 1, CurveConfig(steps=3))
        >>> tc.control.shape == sp.theta0.shape, len(tc.history)
        (True, 3)
    """
    cfg = config or CurveConfig()
    a = theta_a.detach().to(space.device, space.dtype)
    b = theta_b.detach().to(space.device, space.dtype)
    c = (0.5 * (a + b)).clone().requires_grad_(True)
    opt: torch.optim.Optimizer = (
        torch.optim.Adam([c], lr=cfg.lr)
        if cfg.optimizer == "adam"
        else torch.optim.SGD([c], lr=cfg.lr, momentum=0.9)
    )
    data = space.bundle.data
    spec = space.bundle.loss
    n = space.num_samples("train")
    if n == 0:
        raise ConfigError("curve training needs training data; the train split is empty.")
    bn = has_batchnorm(space.bundle.module) and not space.scripted
    module = copy.deepcopy(space.bundle.module).train() if bn else None
    g = torch.Generator().manual_seed(cfg.seed)
    history = np.empty(cfg.steps)
    batch = min(cfg.batch_size, n)
    with tracked(progress, f"training {cfg.kind}", cfg.steps) as task:
        for step in range(cfg.steps):
            t = float(torch.rand((), generator=g))
            idx = torch.randperm(n, generator=g)[:batch]
            x = space.bundle.to_device(data.x_train[idx])
            y = space.bundle.to_device(data.y_train[idx])
            theta = curve_point(cfg.kind, t, a, c, b)
            if module is not None:
                params = space.unflatten(theta)
                params.update({k: v.clone() for k, v in space.buffers.items()})
                with torch.enable_grad():
                    out = functional_call(module, params, (x,), strict=False)
            else:
                out = space.forward(theta, x)
            loss = spec.chunk_sum(out, y) / max(spec.chunk_units(y), 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history[step] = float(loss.detach())
            task.advance()
    return TrainedCurve(cfg.kind, c.detach().clone(), history)


def curve_path(
    space: ParamSpace,
    theta_a: torch.Tensor,
    control: torch.Tensor,
    theta_b: torch.Tensor,
    kind: str,
    *,
    points: int = 25,
    split: str = "train",
    repair: bool | None = None,
    progress: Progress | None = None,
) -> PathResult:
    """Loss along a ``bezier`` or ``polychain`` curve with bend ``control``."""
    a = theta_a.detach().to(space.device, space.dtype)
    c = control.detach().to(space.device, space.dtype)
    b = theta_b.detach().to(space.device, space.dtype)
    curve_point(kind, 0.0, a, c, b)  # validates kind
    return evaluate_path(
        space,
        lambda t: curve_point(kind, t, a, c, b),
        points=points,
        split=split,
        repair=repair,
        progress=progress,
        label=f"{kind} curve",
    )


@dataclass(frozen=True)
class Connectivity:
    """Paths between two minima.

    Attributes:
        linear: the straight path.
        aligned: the straight path to the permutation-aligned θ_b (``None`` if skipped).
        curve: the trained curve (``None`` if none was asked for).
        alignment: the weight-matching result (``None`` if skipped).
        curve_config: how the curve was trained.
        curve_endpoint: ``raw`` or ``aligned``: which θ_b the curve ends at.
        control: the curve's bend θ_c.
        repaired: whether BatchNorm statistics were recomputed along the paths.
        skipped: why a path was skipped, by name.
    """

    linear: PathResult
    aligned: PathResult | None = None
    curve: PathResult | None = None
    alignment: Alignment | None = None
    curve_config: CurveConfig | None = None
    curve_endpoint: str | None = None
    control: torch.Tensor | None = field(default=None, repr=False)
    repaired: bool = False
    skipped: dict[str, str] = field(default_factory=dict)

    def paths(self) -> dict[str, PathResult]:
        """The evaluated paths by name (``linear``, ``aligned``, ``curve``)."""
        out = {"linear": self.linear}
        if self.aligned is not None:
            out["aligned"] = self.aligned
        if self.curve is not None:
            out["curve"] = self.curve
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields: one entry per path, plus alignment and curve facts."""
        d: dict[str, Any] = {k: v.to_dict() for k, v in self.paths().items()}
        if self.alignment is not None:
            al = self.alignment.to_dict()
            d["aligned"]["alignment"] = {k: al[k] for k in ("iterations", "similarity")}
        if self.curve is not None and self.curve_config is not None:
            d["curve"].update(self.curve_config.to_dict())
            d["curve"]["endpoint"] = self.curve_endpoint
        d["repaired_batchnorm"] = bool(self.repaired)
        if self.skipped:
            d["skipped"] = dict(self.skipped)
        return d


def mode_connectivity(
    space: ParamSpace,
    theta_a: torch.Tensor,
    theta_b: torch.Tensor,
    *,
    align: bool = True,
    curve: CurveConfig | None = None,
    curve_endpoint: str = "raw",
    points: int = 25,
    split: str = "train",
    repair: bool | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> Connectivity:
    """Linear, aligned and (optionally) curved paths between θ_a and θ_b.

    Args:
        space: θ_a's parameter space (data, loss, layout); θ_b must share its layout.
        theta_a: first minimum.
        theta_b: second minimum.
        align: also evaluate the straight path to θ_b permuted onto θ_a; a model the
            permutation spec does not cover records why under ``skipped``.
        curve: train and evaluate a curve (``None``: no curve).
        curve_endpoint: end the curve at the ``raw`` θ_b or the ``aligned`` one.
        points: t-grid size of every path.
        split: the split whose loss defines the barriers.
        repair: recompute BatchNorm statistics along the paths (``None``: if the model has
            BatchNorm).
        seed: seed of the weight matching's group order.
        progress: optional progress reporter.

    Returns:
        The evaluated paths.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> r = mode_connectivity(sp, sp.theta0, sp.theta0 * 0.5, points=5)
        >>> sorted(r.paths()), "aligned" in r.skipped
        (['linear'], True)
    """
    if theta_a.shape != (space.dim,) or theta_b.shape != (space.dim,):
        raise ConfigError(
            f"both endpoints must be vectors of {space.dim} parameters, got"
            f" {tuple(theta_a.shape)} and {tuple(theta_b.shape)}."
        )
    if curve_endpoint not in ("raw", "aligned"):
        raise ConfigError(f"curve_endpoint must be raw or aligned, got {curve_endpoint!r}.")
    rep = _resolve_repair(space, repair)
    kw: dict[str, Any] = {"points": points, "split": split, "repair": rep, "progress": progress}
    lin = linear_path(space, theta_a, theta_b, **kw)
    skipped: dict[str, str] = {}
    alignment: Alignment | None = None
    aligned: PathResult | None = None
    if align:
        try:
            alignment = align_permutations(space, theta_a, theta_b, seed=seed)
        except NotApplicable as exc:
            skipped["aligned"] = str(exc)
        else:
            aligned = linear_path(space, theta_a, alignment.theta, **kw)
    cpath: PathResult | None = None
    control: torch.Tensor | None = None
    end = None
    if curve is not None:
        end = "aligned" if curve_endpoint == "aligned" and alignment is not None else "raw"
        b = alignment.theta if end == "aligned" and alignment is not None else theta_b
        trained = train_curve(space, theta_a, b, curve, progress=progress)
        control = trained.control
        cpath = curve_path(space, theta_a, control, b, curve.kind, **kw)
    return Connectivity(
        lin,
        aligned,
        cpath,
        alignment,
        curve,
        end,
        control,
        rep,
        skipped,
    )
