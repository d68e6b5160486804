"""Loss-increase sharpness: worst case in a ball (ε and adaptive) and average case.

* ``eps_sharpness``: ``max_{‖δ‖₂ ≤ ε} L(θ+δ) − L(θ)`` (Keskar et al. 2017, in the L2
  form used by SAM, Foret et al. 2021), by projected normalized gradient ascent with
  restarts. Near a minimum ``≈ ε² λmax / 2``. Not reparameterization invariant.
* ``adaptive_sharpness``: ``max_{‖δ ⊘ (|θ|+η)‖₂ ≤ ρ} L(θ+δ) − L(θ)`` (Kwon et al. 2021,
  ASAM; Andriushchenko et al. 2023). With ``η = 0`` it is exactly invariant to every
  elementwise rescaling ``θ → s ⊙ θ`` (``s > 0``) that leaves the network function
  unchanged, e.g. the layer/neuron rescalings of ReLU networks.
* ``average_sharpness``: ``E_δ[L(θ+δ)] − L(θ)`` with ``δ ~ N(0, σ² diag(c)²)`` where ``c``
  is 1 (isotropic), ``|θ|`` (elementwise) or the filter norm per filter; near a minimum
  ``≈ σ² tr(diag(c) H diag(c)) / 2``. Monte Carlo with antithetic pairs.

The ascent only takes improving steps: a reported value is a loss increase that is
actually attained inside the ball (δ = 0 included, so it is ≥ 0), and it never overstates
the true maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from landscape.engine import ParamSpace
from landscape.metrics._util import (
    check_split,
    loss_at,
    noise_scale,
    normal,
    point,
    positive,
    positive_int,
)
from landscape.progress import Progress, tracked
from landscape.results import Estimate, _json_float

MAX_STEP = 1024.0
MIN_STEP = 1.0 / 64.0


@dataclass(frozen=True)
class SharpnessResult:
    """The outcome of a worst-case sharpness search.

    Attributes:
        value: the largest loss increase found, ``L(θ+δ*) − L(θ)``.
        radius: the ball radius (ε, or ρ in the rescaled coordinates when adaptive).
        adaptive: whether the ball is in ``|θ|``-rescaled coordinates.
        base_loss: ``L(θ)``.
        restart_values: the best increase of each restart.
        evaluations: gradient evaluations used.
        delta_norm: ``‖δ*‖₂`` of the best perturbation, in parameter coordinates.
        eta: the offset η of the adaptive scaling (0 when not adaptive).
    """

    value: float
    radius: float
    adaptive: bool
    base_loss: float
    restart_values: tuple[float, ...]
    evaluations: int
    delta_norm: float
    eta: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "value": _json_float(self.value),
            "radius": self.radius,
            "adaptive": self.adaptive,
            "base_loss": _json_float(self.base_loss),
            "restart_values": [_json_float(v) for v in self.restart_values],
            "evaluations": self.evaluations,
            "delta_norm": _json_float(self.delta_norm),
            "eta": self.eta,
        }


def _value_and_grad(
    space: ParamSpace, theta: torch.Tensor, split: str
) -> tuple[float, torch.Tensor]:
    return space.value_and_grad(theta, split)


def _ascent(
    space: ParamSpace,
    theta: torch.Tensor,
    scale: torch.Tensor | None,
    radius: float,
    restarts: int,
    steps: int,
    seed: int,
    split: str,
    progress: Progress | None,
    description: str,
) -> tuple[float, float, list[float], int, float]:
    """Maximise ``L(θ + c⊙u)`` over ``‖u‖ ≤ radius`` (``c`` = ``scale`` or 1).

    Projected normalized gradient ascent with a step that doubles after an improving step
    and halves after a failed one (only improving steps are accepted). Restart 0 starts
    along the gradient (a random direction if it vanishes), the others at random points
    of the sphere.
    """
    c = torch.ones_like(theta) if scale is None else scale
    base, g0 = _value_and_grad(space, theta, split)
    gen = torch.Generator().manual_seed(seed)
    evals = 1
    best, best_norm = 0.0, 0.0
    per_restart: list[float] = []

    def project(u: torch.Tensor) -> torch.Tensor:
        n = float(u.norm())
        return u * (radius / n) if n > radius else u

    with tracked(progress, description, restarts * steps) as task:
        for r in range(restarts):
            gu0 = c * g0
            if r == 0 and float(gu0.norm()) > 0:
                u = gu0 * (radius / float(gu0.norm()))
            else:
                z = normal((theta.numel(),), gen, theta)
                u = z * (radius / float(z.norm()))
            val, g = _value_and_grad(space, theta + c * u, split)
            evals += 1
            step = 1.0
            for _ in range(steps):
                gu = c * g
                gn = float(gu.norm())
                if gn == 0 or not math.isfinite(gn) or step < MIN_STEP:
                    task.advance()
                    continue
                cand = project(u + gu * (step * radius / gn))
                cval, cg = _value_and_grad(space, theta + c * cand, split)
                evals += 1
                task.advance()
                if cval > val:
                    u, val, g = cand, cval, cg
                    step = min(2 * step, MAX_STEP)
                else:
                    step /= 2
            inc = val - base
            per_restart.append(inc)
            if inc > best:
                best, best_norm = inc, float((c * u).norm())
    return best, base, per_restart, evals, best_norm


def eps_sharpness(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    radius: float = 0.05,
    restarts: int = 3,
    steps: int = 20,
    seed: int = 0,
    split: str = "train",
    progress: Progress | None = None,
) -> SharpnessResult:
    """Worst-case loss increase in an L2 ball of radius ε around θ.

    Formula: ``S_ε(θ) = max_{‖δ‖₂ ≤ ε} L(θ+δ) − L(θ)``; for a quadratic at its minimum
    ``S_ε = ε² λmax / 2``. Reference: Keskar et al. 2017 (box form), Foret et al. 2021
    (SAM, L2 ball). Invariance: none (depends on the parameterization; Dinh et al. 2017).

    Args:
        space: the model, data and loss.
        theta: the point (default the model's parameters).
        radius: ε > 0.
        restarts: number of ascent runs (the first starts along the gradient).
        steps: ascent steps per restart (one gradient evaluation each).
        seed: seed of the random starts.
        split: data split the loss is taken on.
        progress: optional progress reporter.

    Returns:
        A :class:`SharpnessResult` (``.value`` is the increase, ``.radius`` is ε).

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic", max_samples=64))
        >>> eps_sharpness(ParamSpace(b), radius=0.01, steps=3).value > 0
        True
    """
    radius = positive("radius", radius)
    positive_int("restarts", restarts)
    positive_int("steps", steps, 0)
    check_split(space, split)
    th = point(space, theta)
    best, base, per, evals, dn = _ascent(
        space, th, None, radius, restarts, steps, seed, split, progress, "ε-sharpness"
    )
    return SharpnessResult(best, radius, False, base, tuple(per), evals, dn)


def adaptive_sharpness(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    radius: float = 0.05,
    eta: float = 0.0,
    restarts: int = 3,
    steps: int = 20,
    seed: int = 0,
    split: str = "train",
    progress: Progress | None = None,
) -> SharpnessResult:
    """Worst-case loss increase in a ball of the ``|θ|``-rescaled coordinates.

    Formula: ``S^a_ρ(θ) = max_{‖δ ⊘ (|θ|+η)‖₂ ≤ ρ} L(θ+δ) − L(θ)``, i.e. ``δ = (|θ|+η) ⊙ u``
    with ``‖u‖₂ ≤ ρ``; for a quadratic at its minimum it is ``ρ² λmax(DHD) / 2`` with
    ``D = diag(|θ|+η)``. Reference: Kwon et al. 2021 (ASAM), Andriushchenko et al. 2023
    (elementwise adaptive sharpness). Invariance: with ``η = 0``, exactly invariant to every
    positive elementwise rescaling that preserves the function (ReLU layer and neuron
    rescalings); coordinates with ``θ_i = 0`` are not perturbed.

    Args:
        space: the model, data and loss.
        theta: the point (default the model's parameters).
        radius: ρ > 0 (relative size of the perturbation).
        eta: offset η ≥ 0 added to ``|θ|`` (0 keeps exact invariance; ASAM uses 0.01).
        restarts: number of ascent runs.
        steps: ascent steps per restart.
        seed: seed of the random starts.
        split: data split.
        progress: optional progress reporter.

    Returns:
        A :class:`SharpnessResult` with ``adaptive=True`` (``.radius`` is ρ).

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic", max_samples=64))
        >>> adaptive_sharpness(ParamSpace(b), radius=0.1, steps=3).adaptive
        True
    """
    radius = positive("radius", radius)
    try:
        eta = float(eta)
    except (TypeError, ValueError):
        eta = -1.0
    if not math.isfinite(eta) or eta < 0:
        from landscape.errors import ConfigError

        raise ConfigError(f"eta must be a number ≥ 0, got {eta!r}.")
    positive_int("restarts", restarts)
    positive_int("steps", steps, 0)
    check_split(space, split)
    th = point(space, theta)
    scale = th.abs() + eta
    best, base, per, evals, dn = _ascent(
        space, th, scale, radius, restarts, steps, seed, split, progress, "adaptive sharpness"
    )
    return SharpnessResult(best, radius, True, base, tuple(per), evals, dn, eta)


def average_sharpness(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    sigma: float = 0.01,
    num_samples: int = 50,
    scale: str = "none",
    seed: int = 0,
    split: str = "train",
    progress: Progress | None = None,
) -> Estimate:
    """Average loss increase under Gaussian weight noise, Monte Carlo with stderr.

    Formula: ``A_σ(θ) = E_{z~N(0,I)}[L(θ + σ c⊙z)] − L(θ)`` with ``c = 1`` (``scale="none"``),
    ``c = |θ|`` (``"element"``) or ``c_i = ‖θ_f‖/√n_f`` for the filter ``f`` holding ``i``
    (``"filter"``: rows of weight tensors, each 1-D tensor one group). For a quadratic at
    its minimum ``A_σ = σ² tr(CHC)/2`` with ``C = diag(c)``, so ``σ² tr(H)/2`` isotropically.
    Estimated with antithetic pairs ``(L(θ+δ) + L(θ−δ))/2 − L(θ)``, which cancel the
    gradient term; the standard error is over pairs. Reference: Hochreiter & Schmidhuber
    1997, Neyshabur et al. 2017 (expected sharpness), Andriushchenko et al. 2023.
    Invariance: ``"element"`` is invariant to function-preserving elementwise rescalings;
    ``"filter"`` to layer rescalings; ``"none"`` to neither.

    Args:
        space: the model, data and loss.
        theta: the point (default the model's parameters).
        sigma: noise level σ > 0.
        num_samples: number of antithetic pairs (2 loss evaluations each).
        scale: ``none``, ``element`` or ``filter``.
        seed: seed of the noise.
        split: data split.
        progress: optional progress reporter.

    Returns:
        An :class:`Estimate` (``n`` = pairs).

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic", max_samples=64))
        >>> average_sharpness(ParamSpace(b), sigma=0.01, num_samples=4).n
        4
    """
    sigma = positive("sigma", sigma)
    positive_int("num_samples", num_samples, 2)
    check_split(space, split)
    th = point(space, theta)
    c = noise_scale(space, th, scale)
    diffs = perturbed_increase(
        space, th, c, sigma, num_samples, seed, split, progress, "average sharpness"
    )
    d = torch.tensor(diffs, dtype=torch.float64)
    se = float(d.std(unbiased=True) / math.sqrt(len(diffs)))
    return Estimate(float(d.mean()), se, len(diffs), f"mc-antithetic/{scale}")


def perturbed_increase(
    space: ParamSpace,
    theta: torch.Tensor,
    scale: torch.Tensor | None,
    sigma: float,
    num_samples: int,
    seed: int,
    split: str,
    progress: Progress | None = None,
    description: str = "noise",
    quantity: Any = None,
    base: float | None = None,
) -> list[float]:
    """Antithetic loss increases ``(q(θ+δ_i) + q(θ−δ_i))/2 − q(θ)``, ``δ_i = σ c⊙z_i``.

    The ``z_i`` depend only on ``seed`` (common random numbers across σ).

    Args:
        space: the model, data and loss.
        theta: the point.
        scale: per-coordinate multipliers ``c`` or ``None``.
        sigma: noise level.
        num_samples: number of pairs.
        seed: seed of the ``z_i``.
        split: data split.
        progress: optional progress reporter.
        description: progress label.
        quantity: ``q(space, θ, split) -> float`` (default the mean loss).
        base: ``q(θ)`` if already known.

    Returns:
        One increase per pair.
    """
    q = quantity or loss_at
    b = q(space, theta, split) if base is None else base
    gen = torch.Generator().manual_seed(seed)
    out: list[float] = []
    with tracked(progress, description, num_samples) as task:
        for _ in range(num_samples):
            z = normal((theta.numel(),), gen, theta)
            delta = sigma * (z if scale is None else scale * z)
            plus = q(space, theta + delta, split)
            minus = q(space, theta - delta, split)
            out.append(0.5 * (plus + minus) - b)
            task.advance()
    return out
