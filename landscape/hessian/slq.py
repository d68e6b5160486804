"""Spectral density by stochastic Lanczos quadrature (Ubaru, Chen, Saad 2017).

Each run starts Lanczos from a normalized Rademacher vector ``v``; the Ritz values
``θ_j`` and the squared first components ``w_j`` of the eigenvectors of ``T`` are the nodes
and weights of a Gauss quadrature for ``vᵀ f(A) v``, whose expectation is ``tr f(A) / dim``.
The density is the quadrature of a Gaussian kernel (Ghorbani, Krishnan, Xiao 2019),
averaged over runs. The runs advance together, one ``matmat`` per Lanczos step.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch

from landscape.engine import Operator
from landscape.errors import ConfigError
from landscape.hessian.probes import draw_probes, make_generator
from landscape.progress import Progress, tracked
from landscape.results import SpectralDensity

_BREAKDOWN_EPS = 100.0


def batched_lanczos(
    op: Operator,
    starts: torch.Tensor,
    steps: int,
    progress: Progress | None,
    *,
    first_products: list[torch.Tensor] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run Lanczos with full reorthogonalization from each row of ``starts`` together.

    Args:
        op: the symmetric operator.
        starts: start vectors as rows ``(runs, dim)`` (normalized here).
        steps: Lanczos steps per run.
        progress: optional progress reporter (one step per Lanczos step of all runs).
        first_products: when a list is given, ``A v₀`` of the normalized starts (shape
            ``(runs, dim)``) is appended to it: the first step's products, for estimators
            that use the same probes (trace and Frobenius residuals).

    Returns:
        Per run, the diagonal and off-diagonal of its tridiagonal matrix (a run stops
        early when its Krylov space is invariant, where its quadrature is already exact).

    Example:
        >>> from landscape.engine import DenseOperator
        >>> op = DenseOperator(torch.diag(torch.arange(1.0, 5.0, dtype=torch.float64)))
        >>> (d, e), = batched_lanczos(op, torch.ones(1, 4, dtype=torch.float64), 4, None)
        >>> round(float(d.sum()), 9)  # tr T = tr A once the space is the whole space
        10.0
    """
    runs, dim = starts.shape
    q = torch.zeros(runs, steps, dim, device=op.device, dtype=op.dtype)
    v = starts / torch.linalg.vector_norm(starts, dim=1, keepdim=True)
    alpha = np.zeros((runs, steps))
    beta = np.zeros((runs, steps))
    length = np.zeros(runs, dtype=np.int64)
    active = np.ones(runs, dtype=bool)
    eps = float(torch.finfo(op.dtype).eps)
    norm_est = np.zeros(runs)
    with tracked(progress, "SLQ (Lanczos steps)", steps) as task:
        for j in range(steps):
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            it = torch.as_tensor(idx, device=op.device)
            every = idx.size == runs
            q[it, j] = v[it]
            w = op.matmat(v if every else v[it]).to(dtype=op.dtype)
            if j == 0 and first_products is not None:
                first_products.append(w.clone())
            basis = q[:, : j + 1] if every else q[it, : j + 1]  # (r, j+1, dim)
            h = torch.einsum("rjd,rd->rj", basis, w)
            w = w - torch.einsum("rj,rjd->rd", h, basis)
            h2 = torch.einsum("rjd,rd->rj", basis, w)
            w = w - torch.einsum("rj,rjd->rd", h2, basis)
            a = (h + h2)[:, j].double().cpu().numpy()
            b = torch.linalg.vector_norm(w, dim=1).double().cpu().numpy()
            alpha[idx, j] = a
            beta[idx, j] = b
            length[idx] = j + 1
            prev = beta[idx, j - 1] if j > 0 else np.zeros(idx.size)
            norm_est[idx] = np.maximum(norm_est[idx], np.abs(a) + b + prev)
            stop = b <= _BREAKDOWN_EPS * eps * norm_est[idx]
            active[idx[stop]] = False
            keep = ~stop
            if np.any(keep):
                kt = torch.as_tensor(np.flatnonzero(keep), device=op.device)
                bt = torch.as_tensor(b[keep], device=op.device, dtype=op.dtype)
                v[it[kt]] = w[kt] / bt[:, None]
            task.advance()
    return [(alpha[r, : length[r]], beta[r, : length[r] - 1]) for r in range(runs)]


def trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Trapezoid-rule integral of ``y`` over ``x`` along the last axis.

    Example:
        >>> float(trapezoid(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0])))
        2.0
    """
    dx = np.diff(x)
    return np.sum(0.5 * (y[..., 1:] + y[..., :-1]) * dx, axis=-1)


def _gauss_nodes(d: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if d.size == 1:
        return d.copy(), np.ones(1)
    vals, vecs = scipy.linalg.eigh_tridiagonal(d, e)
    return vals, vecs[0, :] ** 2


def slq_density(
    op: Operator,
    *,
    num_runs: int = 5,
    num_steps: int = 60,
    sigma: float | None = None,
    grid_size: int = 400,
    seed: int = 0,
    progress: Progress | None = None,
) -> SpectralDensity:
    """Smoothed spectral density of ``op`` by stochastic Lanczos quadrature.

    Args:
        op: a symmetric operator.
        num_runs: independent Lanczos runs (random Rademacher starts).
        num_steps: Lanczos steps per run (clipped to ``op.dim``); matvecs are
            ``num_runs · num_steps`` at most.
        sigma: Gaussian broadening width; default 1% of the spread of the Ritz values.
        grid_size: number of grid points; the grid spans the Ritz values ± 5σ.
        seed: seed of the start vectors.
        progress: optional progress reporter (one step per Lanczos step of all runs).

    Returns:
        :class:`~landscape.results.SpectralDensity`: each run's density is normalized to
        integrate to one on the grid (trapezoid rule); ``density_stderr`` is the
        standard error across runs (NaN for one run); ``nodes``/``weights`` have shape
        ``(num_runs, m)`` with runs that stopped early padded by zero weights, so
        ``moment(p)`` estimates ``tr(A^p)/dim``.

    Raises:
        ConfigError: on non-positive counts or ``sigma``.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> op = DenseOperator(torch.diag(torch.linspace(-1, 4, 50, dtype=torch.float64)))
        >>> sd = slq_density(op, num_runs=3, num_steps=20)
        >>> round(float(trapezoid(sd.density, sd.grid)), 6)
        1.0
    """
    if num_runs < 1 or num_steps < 1 or grid_size < 2:
        raise ConfigError(
            "SLQ needs num_runs ≥ 1, num_steps ≥ 1 and grid_size ≥ 2;"
            f" got {num_runs}, {num_steps}, {grid_size}."
        )
    if sigma is not None and not sigma > 0:
        raise ConfigError(f"the SLQ broadening sigma must be positive, got {sigma!r}.")
    dim = int(op.dim)
    if dim == 0:
        raise ConfigError("the operator has dimension 0; the model has no trainable parameters.")
    steps = min(num_steps, dim)
    start_mv = int(op.matvecs)
    gen = make_generator(op.device, seed)
    starts = draw_probes(gen, num_runs, dim, device=op.device, dtype=op.dtype)
    tri = batched_lanczos(op, starts, steps, progress)
    return density_from_tridiagonals(
        tri, sigma=sigma, grid_size=grid_size, matvecs=int(op.matvecs) - start_mv
    )


def density_from_tridiagonals(
    tri: list[tuple[np.ndarray, np.ndarray]],
    *,
    sigma: float | None = None,
    grid_size: int = 400,
    matvecs: int = 0,
) -> SpectralDensity:
    """The SLQ density from the tridiagonal matrices of Lanczos runs from Rademacher starts.

    Runs may have different lengths: each is its own Gauss quadrature.

    Args:
        tri: per run, the diagonal and off-diagonal of its ``T``.
        sigma: Gaussian broadening width; default 1% of the spread of the Ritz values.
        grid_size: number of grid points.
        matvecs: the products the runs cost (recorded in the result).

    Returns:
        :class:`~landscape.results.SpectralDensity` as :func:`slq_density` describes.

    Example:
        >>> d = np.array([1.0, 2.0]); e = np.array([0.0])
        >>> sd = density_from_tridiagonals([(d, e)], grid_size=50)
        >>> round(float(trapezoid(sd.density, sd.grid)), 6)
        1.0
    """
    num_runs = len(tri)
    if num_runs == 0:
        raise ConfigError("SLQ needs at least one Lanczos run.")
    width = max(d.size for d, _ in tri)
    nodes = np.zeros((num_runs, width))
    weights = np.zeros((num_runs, width))
    for r, (d, e) in enumerate(tri):
        th, w = _gauss_nodes(d, e)
        nodes[r, : th.size] = th
        weights[r, : w.size] = w / w.sum()
    mask = weights > 0
    lo, hi = float(nodes[mask].min()), float(nodes[mask].max())
    spread = hi - lo
    if sigma is None:
        sigma = 0.01 * spread if spread > 0 else 1e-3 * max(1.0, abs(hi))
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_size)
    per_run = np.empty((num_runs, grid_size))
    for r in range(num_runs):
        diff = (grid[None, :] - nodes[r, :, None]) / sigma
        kernel = np.exp(-0.5 * diff**2) / (sigma * math.sqrt(2 * math.pi))
        per_run[r] = weights[r] @ kernel
    per_run /= trapezoid(per_run, grid)[:, None]
    density = per_run.mean(axis=0)
    if num_runs > 1:
        stderr = per_run.std(axis=0, ddof=1) / math.sqrt(num_runs)
    else:
        stderr = np.full(grid_size, np.nan)
    return SpectralDensity(
        grid=grid,
        density=density,
        density_stderr=stderr,
        nodes=nodes,
        weights=weights,
        sigma=float(sigma),
        matvecs=int(matvecs),
    )
