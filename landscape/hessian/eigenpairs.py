"""Extreme eigenpairs of a symmetric operator by Lanczos with full reorthogonalization.

The Krylov space grows (no restarts) until the wanted Ritz pairs have residual estimates
``|β_m · s_m|`` below ``tol · max(1, |λ|_max)``, where ``|λ|_max`` is the largest Ritz value
in magnitude; then the residuals ``‖A y − λ y‖`` of the returned pairs are computed
explicitly, and those decide the ``converged`` flags. ``A y`` is assembled from the stored
products ``A q_j`` of the Lanczos steps (``A y = Σ_j s_j A q_j``, exact by linearity; this
catches any loss of orthogonality without spending matvecs) when basis and products fit
in :data:`KEEP_PRODUCTS_MAX` entries, else it costs one ``matmat`` of ``k`` vectors.
"""

from __future__ import annotations

import numpy as np
import torch

from landscape.engine import Operator
from landscape.errors import ConfigError
from landscape.hessian.lanczos import Lanczos
from landscape.progress import Progress, tracked
from landscape.results import Eigenpairs

# Keep the products A q_j (for free explicit residuals) up to this many stored entries.
KEEP_PRODUCTS_MAX = 1 << 25


def default_max_iter(dim: int, k: int) -> int:
    """Default Krylov dimension cap: ``min(dim, max(20·k, 100))``.

    Example:
        >>> default_max_iter(10_000, 5)
        100
    """
    return min(dim, max(20 * k, 100))


def _scale(lz: Lanczos, vals: np.ndarray, which: str) -> float:
    """``max(1, |λ|_max)`` from the Ritz values: the wanted end is ``vals[0]``."""
    other = lz.extreme("bottom" if which == "top" else "top")
    return max(1.0, abs(float(vals[0])), abs(other))


def _extreme_eigenpairs(
    op: Operator,
    k: int,
    which: str,
    *,
    max_iter: int | None,
    tol: float,
    seed: int,
    return_vectors: bool,
    progress: Progress | None,
) -> Eigenpairs:
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"the number of eigenpairs must be a positive integer, got {k!r}.")
    if not tol > 0:
        raise ConfigError(f"the eigenpair tolerance must be positive, got {tol!r}.")
    dim = int(op.dim)
    if dim == 0:
        raise ConfigError("the operator has dimension 0; the model has no trainable parameters.")
    k = min(k, dim)
    steps = default_max_iter(dim, k) if max_iter is None else min(int(max_iter), dim)
    if steps < k:
        raise ConfigError(
            f"max_iter={max_iter} is smaller than the {k} eigenpairs asked for; raise max_iter."
        )
    start_mv = int(op.matvecs)
    lz = Lanczos(op, steps, seed=seed, keep_products=steps * dim <= KEEP_PRODUCTS_MAX)
    min_steps = min(dim, 2 * k + 2)
    label = f"Lanczos ({which} {k})"
    with tracked(progress, label, steps) as task:
        while not lz.done:
            lz.step()
            task.advance()
            if lz.m < min(min_steps, steps) or lz.m < k:
                continue
            vals, _, est = lz.ritz(which, k)
            if np.all(est <= tol * _scale(lz, vals, which)):
                break
    vals, s, _ = lz.ritz(which, k)
    scale = _scale(lz, vals, which)
    y, ay = lz.ritz_vectors(s)
    if ay is None:
        ay = op.matmat(y).to(dtype=y.dtype)
    lam = torch.as_tensor(vals, device=y.device, dtype=y.dtype)
    res = torch.linalg.vector_norm(ay - lam[:, None] * y, dim=1)
    residuals = res.double().cpu().numpy()
    vectors = y.detach().cpu().numpy() if return_vectors else None
    return Eigenpairs(
        values=np.asarray(vals, dtype=np.float64),
        vectors=vectors,
        residuals=residuals,
        converged=residuals <= tol * scale,
        iterations=lz.m,
        matvecs=int(op.matvecs) - start_mv,
        which=which,
    )


def top_eigenpairs(
    op: Operator,
    k: int = 5,
    *,
    max_iter: int | None = None,
    tol: float = 1e-6,
    seed: int = 0,
    return_vectors: bool = False,
    progress: Progress | None = None,
) -> Eigenpairs:
    """The ``k`` largest eigenvalues (descending) and, optionally, their eigenvectors.

    Args:
        op: a symmetric operator (``landscape.engine.Operator``).
        k: number of eigenpairs (clipped to ``op.dim``).
        max_iter: cap on Lanczos steps; default ``min(dim, max(20·k, 100))``.
        tol: relative residual tolerance: a pair has converged when
            ``‖A v − λ v‖ ≤ tol · max(1, |λ|_max)``.
        seed: seed of the random start vector.
        return_vectors: keep the eigenvectors (rows of shape ``(k, dim)``).
        progress: optional progress reporter (one step per Lanczos step).

    Returns:
        :class:`~landscape.results.Eigenpairs` with explicit residuals and honest
        ``converged`` flags.

    Raises:
        ConfigError: if ``k`` or ``tol`` is not positive, or ``max_iter < k``.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> op = DenseOperator(torch.diag(torch.arange(1.0, 51.0, dtype=torch.float64)))
        >>> r = top_eigenpairs(op, k=2)
        >>> [round(float(v), 6) for v in r.values], r.all_converged
        ([50.0, 49.0], True)
    """
    return _extreme_eigenpairs(
        op,
        k,
        "top",
        max_iter=max_iter,
        tol=tol,
        seed=seed,
        return_vectors=return_vectors,
        progress=progress,
    )


def bottom_eigenpairs(
    op: Operator,
    k: int = 3,
    *,
    max_iter: int | None = None,
    tol: float = 1e-6,
    seed: int = 0,
    return_vectors: bool = False,
    progress: Progress | None = None,
) -> Eigenpairs:
    """The ``k`` smallest (most negative) eigenvalues, ascending, and optionally vectors.

    Same algorithm and arguments as :func:`top_eigenpairs`, reading the low end of
    the Krylov space.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> op = DenseOperator(torch.diag(torch.arange(-3.0, 47.0, dtype=torch.float64)))
        >>> [round(float(v), 6) for v in bottom_eigenpairs(op, k=2).values]
        [-3.0, -2.0]
    """
    return _extreme_eigenpairs(
        op,
        k,
        "bottom",
        max_iter=max_iter,
        tol=tol,
        seed=seed,
        return_vectors=return_vectors,
        progress=progress,
    )
