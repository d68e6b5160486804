"""The Lanczos process with full reorthogonalization, grown one step at a time.

Builds an orthonormal Krylov basis ``Q`` (rows) and the tridiagonal matrix ``T = Q A Qᵀ``
of a symmetric operator ``A``. Every new vector is orthogonalized against the whole basis
twice (classical Gram–Schmidt, "twice is enough"), so Ritz values carry no ghost copies.
When the Krylov space becomes invariant (``β ≈ 0``) the process continues from a fresh
random vector orthogonal to the basis, with a zero coupling in ``T``; Ritz pairs of ``T``
then stay exact Rayleigh–Ritz pairs of ``A`` on ``span(Q)``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from landscape.engine import Operator
from landscape.hessian.probes import make_generator

# A coupling β below this many machine epsilons of ‖T‖ counts as a breakdown.
_BREAKDOWN_EPS = 100.0


class Lanczos:
    """Incremental Lanczos tridiagonalization of ``op``.

    Args:
        op: the symmetric operator.
        max_steps: capacity of the basis (clipped to ``op.dim``).
        seed: seed of the random start vector (and of restart vectors).
        start: optional start vector of shape ``(dim,)`` instead of a random one.
        keep_products: also store the products ``A q_j`` (twice the memory), so that
            :meth:`ritz_products` gives ``A y`` for Ritz vectors ``y`` without new matvecs.

    Attributes:
        m: number of basis vectors (steps) taken.
        last_beta: norm of the last residual vector ``‖A q_m − …‖`` (the size of the
            coupling to the next, not yet taken, basis vector).
        restarts: number of invariant subspaces met.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> lz = Lanczos(DenseOperator(torch.diag(torch.arange(1.0, 6.0))), 5)
        >>> while lz.step():
        ...     pass
        >>> [round(float(x), 6) for x in lz.ritz("top", 2)[0]]
        [5.0, 4.0]
    """

    def __init__(
        self,
        op: Operator,
        max_steps: int,
        *,
        seed: int = 0,
        start: torch.Tensor | None = None,
        keep_products: bool = False,
    ) -> None:
        self.op = op
        self.n = int(op.dim)
        self.max_steps = max(0, min(int(max_steps), self.n))
        self.device = op.device
        self.dtype = op.dtype
        self.gen = make_generator(op.device, seed)
        # Storage grows by doubling, so memory follows the steps actually taken.
        cap = min(self.max_steps, 32)
        self.Q = torch.empty(cap, self.n, device=self.device, dtype=self.dtype)
        self.AQ = torch.empty_like(self.Q) if keep_products else None
        self.alpha: list[float] = []
        self.beta: list[float] = []
        self.m = 0
        self.last_beta = float("nan")
        self.restarts = 0
        self.norm_estimate = 0.0
        self._eps = float(torch.finfo(self.dtype).eps)
        if start is None:
            start = torch.randn(self.n, generator=self.gen, device=self.device, dtype=self.dtype)
        start = start.to(device=self.device, dtype=self.dtype)
        nrm = torch.linalg.vector_norm(start)
        self._next: torch.Tensor | None = start / nrm if float(nrm) > 0 else None

    @property
    def done(self) -> bool:
        """Whether no further step can be taken."""
        return self.m >= self.max_steps or self._next is None

    def _orthogonalize(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Remove the components of ``w`` along the basis, twice; return ``(w, coeffs)``."""
        basis = self.Q[: self.m]
        h = basis @ w
        w = w - h @ basis
        h2 = basis @ w
        w = w - h2 @ basis
        return w, h + h2

    def _random_orthogonal(self) -> torch.Tensor | None:
        for _ in range(3):
            z = torch.randn(self.n, generator=self.gen, device=self.device, dtype=self.dtype)
            z, _ = self._orthogonalize(z)
            nrm = float(torch.linalg.vector_norm(z))
            if nrm > 1e-3:
                return z / nrm
        return None

    def _grow(self) -> None:
        cap = min(self.max_steps, 2 * self.Q.shape[0])
        q = torch.empty(cap, self.n, device=self.device, dtype=self.dtype)
        q[: self.m] = self.Q[: self.m]
        self.Q = q
        if self.AQ is not None:
            aq = torch.empty_like(q)
            aq[: self.m] = self.AQ[: self.m]
            self.AQ = aq

    def step(self) -> bool:
        """Take one Lanczos step (one ``matvec``). Return whether another step is possible."""
        if self.done:
            return False
        q = self._next
        assert q is not None
        j = self.m
        if j >= self.Q.shape[0]:
            self._grow()
        self.Q[j] = q
        w = self.op.matvec(q).to(dtype=self.dtype)
        if self.AQ is not None:
            self.AQ[j] = w
        self.m += 1
        w, h = self._orthogonalize(w)
        a = float(h[j])
        b = float(torch.linalg.vector_norm(w))
        self.alpha.append(a)
        prev = self.beta[-1] if self.beta else 0.0
        self.norm_estimate = max(self.norm_estimate, abs(a) + b + prev)
        self.last_beta = b
        if self.m >= self.n:
            self._next = None
            self.beta.append(b)
            return False
        if b <= _BREAKDOWN_EPS * self._eps * self.norm_estimate:
            # Invariant subspace: continue the basis from a fresh orthogonal direction.
            self.beta.append(0.0)
            self.restarts += 1
            self._next = self._random_orthogonal() if self.m < self.max_steps else None
        else:
            self.beta.append(b)
            self._next = w / b
        return not self.done

    def tridiagonal(self) -> tuple[np.ndarray, np.ndarray]:
        """Diagonal and off-diagonal of ``T`` (float64) for the ``m`` steps taken."""
        d = np.asarray(self.alpha[: self.m], dtype=np.float64)
        e = np.asarray(self.beta[: self.m - 1], dtype=np.float64)
        return d, e

    def extreme(self, which: str) -> float:
        """The largest (``top``) or smallest (``bottom``) Ritz value."""
        d, e = self.tridiagonal()
        if self.m == 1:
            return float(d[0])
        i = self.m - 1 if which == "top" else 0
        vals = scipy.linalg.eigh_tridiagonal(
            d, e, eigvals_only=True, select="i", select_range=(i, i)
        )
        return float(vals[0])

    def ritz(self, which: str, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values, eigenvectors of ``T`` and residual estimates of ``k`` extreme pairs.

        Args:
            which: ``top`` (largest first) or ``bottom`` (smallest first).
            k: number of pairs (at most ``m``).

        Returns:
            ``(values (k,), S (m, k), residual_estimates (k,))`` where the Ritz vectors
            are ``Sᵀ Q`` and the residual estimates are ``|β_m · S[m-1, i]|``.
        """
        k = min(k, self.m)
        d, e = self.tridiagonal()
        if self.m == 1:
            vals, vecs = d.copy(), np.ones((1, 1))
        else:
            rng = (self.m - k, self.m - 1) if which == "top" else (0, k - 1)
            vals, vecs = scipy.linalg.eigh_tridiagonal(d, e, select="i", select_range=rng)
        if which == "top":
            vals, vecs = vals[::-1], vecs[:, ::-1]
        beta = 0.0 if np.isnan(self.last_beta) else self.last_beta
        est = np.abs(beta * vecs[-1, :])
        return vals.copy(), vecs.copy(), est

    def ritz_vectors(self, s: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Ritz vectors ``y = Sᵀ Q`` as rows (normalized), in the operator's dtype.

        Returns:
            ``(y, A y)``; ``A y = Sᵀ (A Q)`` is assembled from the stored products (exact
            by linearity, no new matvecs) when they were kept, else ``None``.
        """
        st = torch.as_tensor(s.T.copy(), device=self.device, dtype=self.dtype)
        y = st @ self.Q[: self.m]
        nrm = torch.linalg.vector_norm(y, dim=1, keepdim=True).clamp_min(
            torch.finfo(self.dtype).tiny
        )
        ay = None if self.AQ is None else (st @ self.AQ[: self.m]) / nrm
        return y / nrm, ay
