"""Hessian-spectrum sharpness: λmax, trace, Frobenius norm and effective rank.

All four change under the rescaling symmetries of ReLU networks (Dinh et al. 2017):
scaling one layer by α and the next by 1/α leaves the function unchanged but multiplies
Hessian blocks by α^{±2}. Compute them at a canonical point
(:mod:`landscape.metrics.canonicalize`) to compare function-equivalent networks.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from landscape.engine import CurvatureOperator, Operator, ParamSpace
from landscape.hessian import frobenius_norm, hutchpp_trace, top_eigenpairs
from landscape.metrics._util import positive_int
from landscape.progress import Progress
from landscape.results import Estimate


def as_operator(
    obj: Operator | ParamSpace, theta: torch.Tensor | None = None, kind: str = "hessian"
) -> Operator:
    """Return ``obj`` if it is an operator, else the curvature of ``obj`` (a ParamSpace) at θ.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> as_operator(DenseOperator(torch.eye(2))).dim
        2
    """
    if isinstance(obj, ParamSpace):
        return CurvatureOperator(obj, theta, kind=kind)
    return obj


def lambda_max(
    op: Operator | ParamSpace,
    *,
    tol: float = 1e-6,
    max_iter: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> float:
    """Largest Hessian eigenvalue λmax (Lanczos, :func:`landscape.hessian.top_eigenpairs`).

    Formula: ``λmax = max_{‖v‖=1} vᵀ H v`` with ``H = ∇²L(θ)``. Reference: Keskar et al.
    2017 (sharpness as large curvature). Invariance: none — under the function-preserving
    rescaling ``W_l → αW_l, W_{l+1} → W_{l+1}/α`` of a ReLU net it can be made arbitrarily
    large (Dinh et al. 2017); invariant only when computed at a canonical point.

    Args:
        op: a Hessian operator, or a ParamSpace (its Hessian at ``theta0``).
        tol: relative residual tolerance of the eigenpair.
        max_iter: cap on Lanczos iterations.
        seed: seed of the starting vector.
        progress: optional progress reporter.

    Returns:
        λmax as a float.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> round(lambda_max(DenseOperator(torch.diag(torch.tensor([1.0, 3.0, 2.0])))), 6)
        3.0
    """
    pairs = top_eigenpairs(
        as_operator(op), 1, max_iter=max_iter, tol=tol, seed=seed, progress=progress
    )
    return float(pairs.values[0])


def trace(
    op: Operator | ParamSpace,
    *,
    num_matvecs: int = 99,
    seed: int = 0,
    progress: Progress | None = None,
) -> Estimate:
    """Hessian trace by Hutch++ (Meyer et al. 2021), with its standard error.

    Formula: ``tr H = Σ_i λ_i``; Hutch++ uses a rank-``m/3`` sketch plus Hutchinson on the
    rest. Reference: Yao et al. 2020 (PyHessian) for trace as a flatness measure.
    Invariance: none (rescaling changes it), except at a canonical point.

    Args:
        op: a Hessian operator, or a ParamSpace.
        num_matvecs: operator applications (a multiple of 3).
        seed: seed of the probes.
        progress: optional progress reporter.

    Returns:
        An :class:`Estimate` of the trace.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> round(trace(DenseOperator(torch.diag(torch.arange(1.0, 4.0)))).mean, 6)
        6.0
    """
    positive_int("num_matvecs", num_matvecs, 3)
    return hutchpp_trace(as_operator(op), num_matvecs, seed=seed, progress=progress)


def frobenius(
    op: Operator | ParamSpace,
    *,
    num_probes: int = 30,
    seed: int = 0,
    progress: Progress | None = None,
) -> Estimate:
    """Frobenius norm of the Hessian ``‖H‖_F = sqrt(Σ_i λ_i²)`` from Hutchinson probes.

    Formula: ``‖H‖_F² = E_z ‖H z‖²`` for isotropic probes ``z``. Reference: Hutchinson 1989;
    used as a sharpness measure e.g. by Jiang et al. 2019. Invariance: none, except at a
    canonical point.

    Args:
        op: a Hessian operator, or a ParamSpace.
        num_probes: number of probe vectors.
        seed: seed of the probes.
        progress: optional progress reporter.

    Returns:
        An :class:`Estimate` of ``‖H‖_F``.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> e = frobenius(DenseOperator(torch.eye(4) * 2), num_probes=4)
        >>> round(e.mean, 6)
        4.0
    """
    positive_int("num_probes", num_probes, 2)
    return frobenius_norm(as_operator(op), num_probes, seed=seed, progress=progress)


def effective_rank(eigenvalues: np.ndarray | list[float] | torch.Tensor) -> float:
    """Entropy effective rank of the positive part of a spectrum (Roy & Vetterli 2007).

    Formula: with ``p_i = λ_i⁺ / Σ_j λ_j⁺`` over the positive eigenvalues,
    ``erank = exp(−Σ_i p_i log p_i)``; it lies in ``[1, #positive]`` and equals ``r`` for
    ``r`` equal positive eigenvalues. Applied to a top-k spectrum it measures the top-k
    part only (at most k). Invariance: unchanged by an overall scale of H, but not by the
    layer rescalings of ReLU nets (they change eigenvalue ratios), except at a canonical
    point.

    Args:
        eigenvalues: eigenvalues in any order; non-positive ones are dropped.

    Returns:
        The effective rank, or NaN when no eigenvalue is positive.

    Example:
        >>> round(effective_rank([2.0, 2.0, 2.0, -1.0]), 6)
        3.0
    """
    lam = np.asarray(
        eigenvalues.detach().cpu() if isinstance(eigenvalues, torch.Tensor) else eigenvalues,
        dtype=np.float64,
    ).reshape(-1)
    pos = lam[np.isfinite(lam) & (lam > 0)]
    if pos.size == 0:
        return float("nan")
    p = pos / pos.sum()
    p = p[p > 0]
    return float(math.exp(-float(np.sum(p * np.log(p)))))
