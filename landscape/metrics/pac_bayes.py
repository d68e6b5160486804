"""Sharpness-based PAC-Bayes measure (Jiang et al. 2019, "Fantastic generalization measures").

Find the largest noise level σ' such that the expected increase of the training loss
(or of the 0-1 error) under isotropic Gaussian weight noise stays below a threshold,

    σ' = max { σ : E_{u~N(0,σ²I)}[q(θ+u)] − q(θ) ≤ threshold },

by bracketing and then safeguarded interpolation of ``log Δ`` against ``log σ`` (exact for
a quadratic, where ``Δ ∝ σ²``) with common random numbers (the same noise directions
``z_i`` for every σ, so the estimated deviation is a smooth function of σ).
Then report the PAC-Bayes term of Jiang et al. (their "pacbayes.orig", with the prior
centred at the origin):

    B(θ) = ‖θ‖₂² / (4σ'²) + log(m / σ') + 10,

where ``m`` is the number of training samples and the constant 10 stands in for the
confidence term, exactly as in that paper; and the flatness part ``1/σ'²`` ("pacbayes.flatness").
Jiang et al. measured the deviation of the 0-1 training error with threshold 0.1;
``quantity="error"`` does that, the default ``quantity="loss"`` uses the training loss.

For a quadratic ``L(θ*+u) − L(θ*) = uᵀHu/2`` the deviation is ``σ² tr(H)/2``, hence
``σ' = sqrt(2·threshold / tr H)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from landscape.engine import ParamSpace
from landscape.errors import ConfigError, NotApplicable
from landscape.metrics._util import (
    check_split,
    error_at,
    loss_at,
    point,
    positive,
    positive_int,
)
from landscape.metrics.sharpness import perturbed_increase
from landscape.progress import Progress, tracked
from landscape.results import _json_float

QUANTITIES = ("loss", "error")
JIANG_CONSTANT = 10.0


@dataclass(frozen=True)
class PacBayesResult:
    """The PAC-Bayes noise level and bound term.

    Attributes:
        sigma: σ', the largest σ found with deviation ≤ threshold.
        sigma_stderr: Monte Carlo standard error of σ' by the delta method, assuming the
            deviation grows like σ² near σ' (``σ'·se(Δ)/(2Δ)``).
        threshold: the allowed deviation.
        deviation: estimated deviation ``Δ(σ')``.
        deviation_stderr: its standard error over noise pairs.
        bound: ``‖θ‖²/(4σ'²) + log(m/σ') + 10``.
        flatness: ``1/σ'²``.
        theta_norm: ``‖θ‖₂``.
        num_train: ``m``.
        quantity: ``loss`` or ``error``.
        num_samples: antithetic noise pairs per σ.
        evaluations: number of σ values tried.
        bracketed: whether σ' lies between a σ that met the threshold and one that did
            not (false when the search ran out of evaluations first).
    """

    sigma: float
    sigma_stderr: float
    threshold: float
    deviation: float
    deviation_stderr: float
    bound: float
    flatness: float
    theta_norm: float
    num_train: int
    quantity: str
    num_samples: int
    evaluations: int
    bracketed: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {k: _json_float(v) if isinstance(v, float) else v for k, v in vars(self).items()}


def pac_bayes_bound(theta_norm: float, sigma: float, m: int) -> float:
    """The PAC-Bayes term of Jiang et al. 2019: ``‖θ‖²/(4σ²) + log(m/σ) + 10``.

    Example:
        >>> round(pac_bayes_bound(2.0, 1.0, 1), 6)
        11.0
    """
    if sigma <= 0 or not math.isfinite(sigma):
        return float("inf") if sigma <= 0 else math.log(m / sigma) + JIANG_CONSTANT
    return theta_norm**2 / (4 * sigma**2) + math.log(m / sigma) + JIANG_CONSTANT


def _next_sigma(
    lo: float, hi: float, d_lo: float, d_hi: float, threshold: float, rel_tol: float, bisect: bool
) -> float:
    """Next σ inside ``(lo, hi)``: interpolate ``log Δ`` linearly in ``log σ``.

    Near a minimum ``Δ ∝ σ²``, so the interpolation is exact for a quadratic. The point is
    kept at least ``rel_tol/2`` (relative) from both ends, and after two steps that moved
    the same end a plain bisection in ``log σ`` is taken instead.
    """
    a, b = math.log(lo), math.log(hi)
    if bisect or d_lo <= 0 or d_hi <= d_lo:
        t = 0.5
    else:
        t = (math.log(threshold) - math.log(d_lo)) / (math.log(d_hi) - math.log(d_lo))
    margin = math.log1p(rel_tol / 2)
    x = min(max(a + t * (b - a), a + margin), b - margin)
    return math.exp(x)


def pac_bayes_sigma(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    threshold: float = 0.1,
    quantity: str = "loss",
    num_samples: int = 20,
    sigma_init: float = 0.01,
    rel_tol: float = 1e-3,
    max_evaluations: int = 60,
    seed: int = 0,
    split: str = "train",
    progress: Progress | None = None,
) -> PacBayesResult:
    """Largest Gaussian noise level with bounded expected deviation, and the PAC-Bayes term.

    Formula: ``σ' = max{σ : E_{u~N(0,σ²I)}[q(θ+u)] − q(θ) ≤ threshold}`` (bisection on
    ``log σ``, safeguarded log-log interpolation, antithetic Monte Carlo with common random
    numbers) and
    ``B = ‖θ‖²/(4σ'²) + log(m/σ') + 10``. On a quadratic ``σ' = sqrt(2·threshold/tr H)``.
    Reference: Jiang et al. 2019, "Fantastic generalization measures and where to find
    them" (pacbayes.orig / pacbayes.flatness), after Neyshabur et al. 2017 and Dziugaite &
    Roy 2017. Invariance: none (isotropic noise and ‖θ‖ both depend on the
    parameterization), except at a canonical point.

    Args:
        space: the model, data and loss.
        theta: the point (default the model's parameters).
        threshold: allowed deviation (> 0); Jiang et al. use 0.1.
        quantity: ``loss`` (mean training loss) or ``error`` (0-1 training error).
        num_samples: antithetic noise pairs per σ.
        sigma_init: first σ tried.
        rel_tol: stop when the bracket ``[lo, hi]`` has ``hi/lo − 1 ≤ rel_tol``.
        max_evaluations: cap on the number of σ values tried.
        seed: seed of the noise directions.
        split: data split (``train`` as in the bound).
        progress: optional progress reporter.

    Returns:
        A :class:`PacBayesResult`.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic", max_samples=64))
        >>> r = pac_bayes_sigma(ParamSpace(b), num_samples=2, rel_tol=0.1)
        >>> r.sigma > 0
        True
    """
    threshold = positive("threshold", threshold)
    sigma_init = positive("sigma_init", sigma_init)
    rel_tol = positive("rel_tol", rel_tol)
    positive_int("num_samples", num_samples, 2)
    positive_int("max_evaluations", max_evaluations, 2)
    if quantity not in QUANTITIES:
        raise ConfigError(f"unknown quantity {quantity!r}; use one of {', '.join(QUANTITIES)}.")
    if quantity == "error" and not space.bundle.loss.classification:
        raise NotApplicable("quantity='error' needs a classification loss; use quantity='loss'.")
    check_split(space, split)
    th = point(space, theta)
    q = loss_at if quantity == "loss" else error_at
    base = q(space, th, split)
    cache: dict[float, tuple[float, float]] = {}

    def deviation(sigma: float) -> tuple[float, float]:
        if sigma not in cache:
            d = torch.tensor(
                perturbed_increase(
                    space,
                    th,
                    None,
                    sigma,
                    num_samples,
                    seed,
                    split,
                    description="pac-bayes",
                    quantity=q,
                    base=base,
                ),  # fmt: skip
                dtype=torch.float64,
            )
            cache[sigma] = (float(d.mean()), float(d.std() / math.sqrt(d.numel())))
            task.advance()
        return cache[sigma]

    with tracked(progress, "pac-bayes σ", max_evaluations) as task:
        lo, hi = 0.0, math.inf
        s = sigma_init
        kept = ""  # which end the last step kept (for the Illinois-style safeguard)
        while len(cache) < max_evaluations:
            if deviation(s)[0] <= threshold:
                lo, side = s, "hi"
                if math.isinf(hi):
                    s *= 4.0
                    continue
            else:
                hi, side = s, "lo"
                if lo == 0.0:
                    s /= 4.0
                    continue
            if hi / lo - 1.0 <= rel_tol:
                break
            s = _next_sigma(lo, hi, cache[lo][0], cache[hi][0], threshold, rel_tol, kept == side)
            kept = side
    if lo == 0.0:
        sigma, (dev, dev_se) = 0.0, deviation(min(cache))
    else:
        sigma = lo
        dev, dev_se = cache[lo]
    if sigma > 0 and dev > 0:
        sigma_se = sigma * dev_se / (2 * dev)
    else:
        sigma_se = float("nan")
    norm = float(th.norm())
    m = space.num_units("train")  # samples, or tokens for a per-token loss
    return PacBayesResult(
        sigma=sigma,
        sigma_stderr=sigma_se,
        threshold=threshold,
        deviation=dev,
        deviation_stderr=dev_se,
        bound=pac_bayes_bound(norm, sigma, m),
        flatness=1.0 / sigma**2 if sigma > 0 else float("inf"),
        theta_norm=norm,
        num_train=m,
        quantity=quantity,
        num_samples=num_samples,
        evaluations=len(cache),
        bracketed=lo > 0 and math.isfinite(hi),
    )
