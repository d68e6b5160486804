"""The Hessian routines the metrics use, from :mod:`landscape.hessian`.

Until ``landscape.hessian`` provides ``top_eigenpairs``, ``hutchpp_trace``,
``frobenius_norm`` and ``exact_spectrum``, small stand-ins with the same signatures are
used (dense or SciPy based; fine for the small models of the tests).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from landscape.engine import Operator, ParamSpace
from landscape.errors import ConfigError
from landscape.progress import Progress
from landscape.results import Eigenpairs, Estimate

try:  # pragma: no cover - depends on which branch is merged
    from landscape.hessian import (  # type: ignore[attr-defined]
        exact_spectrum,
        frobenius_norm,
        hutchpp_trace,
        top_eigenpairs,
    )

    STANDIN = False
except ImportError:  # pragma: no cover
    STANDIN = True

    def _probe(dim: int, k: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, 2, (k, dim), generator=g, dtype=torch.float64) * 2 - 1

    def top_eigenpairs(  # type: ignore[no-redef]
        op: Operator,
        k: int = 5,
        *,
        max_iter: int | None = None,
        tol: float = 1e-6,
        seed: int = 0,
        return_vectors: bool = False,
        progress: Progress | None = None,
    ) -> Eigenpairs:
        """Top-``k`` eigenpairs (stand-in: dense for small operators, else ARPACK)."""
        n = op.dim
        k = min(k, n)
        if n <= 200:
            eye = torch.eye(n, dtype=op.dtype, device=op.device)
            a = op.matmat(eye).to(torch.float64).cpu().numpy()
            a = 0.5 * (a + a.T)
            vals, vecs = np.linalg.eigh(a)
            order = np.argsort(vals)[::-1][:k]
            vals, vecs = vals[order], vecs[:, order].T
            its = n
        else:
            from scipy.sparse.linalg import LinearOperator, eigsh

            def mv(v: np.ndarray) -> np.ndarray:
                t = torch.as_tensor(np.ascontiguousarray(v).reshape(-1), dtype=op.dtype)
                return op.matvec(t.to(op.device)).to(torch.float64).cpu().numpy()

            lin = LinearOperator((n, n), matvec=mv, dtype=np.float64)
            v0 = np.random.default_rng(seed).standard_normal(n)
            vals, vecs = eigsh(lin, k=k, which="LA", tol=tol, v0=v0, maxiter=max_iter)
            order = np.argsort(vals)[::-1]
            vals, vecs = vals[order], vecs[:, order].T
            its = 0
        vt = torch.as_tensor(vecs, dtype=op.dtype, device=op.device)
        av = op.matmat(vt).to(torch.float64).cpu().numpy()
        res = np.linalg.norm(av - vals[:, None] * vecs, axis=1)
        conv = res <= tol * max(1.0, abs(float(vals[0])))
        return Eigenpairs(
            vals, vecs if return_vectors else None, res, conv, its, int(op.matvecs), "top"
        )

    def hutchpp_trace(  # type: ignore[no-redef]
        op: Operator, num_matvecs: int = 99, *, seed: int = 0, progress: Progress | None = None
    ) -> Estimate:
        """Hutch++ trace estimate (Meyer et al. 2021) (stand-in)."""
        m = max(3, num_matvecs // 3)
        s = _probe(op.dim, m, seed).to(op.device, op.dtype)
        g = _probe(op.dim, m, seed + 1).to(op.device, op.dtype)
        q, _ = torch.linalg.qr(op.matmat(s).T)
        t_low = float(torch.sum(q * op.matmat(q.T).T))
        g = g - (g @ q) @ q.T
        vals = torch.sum(g * op.matmat(g), dim=1).to(torch.float64)
        se = float(vals.std() / math.sqrt(m)) if m > 1 else float("nan")
        return Estimate(t_low + float(vals.mean()), se, 3 * m, "hutch++")

    def frobenius_norm(  # type: ignore[no-redef]
        op: Operator, num_probes: int = 30, *, seed: int = 0, progress: Progress | None = None
    ) -> Estimate:
        """Hutchinson estimate of ``‖A‖_F`` from ``E‖Az‖²`` (stand-in)."""
        z = _probe(op.dim, num_probes, seed).to(op.device, op.dtype)
        sq = torch.sum(op.matmat(z) ** 2, dim=1).to(torch.float64)
        mean = float(sq.mean())
        se_sq = float(sq.std() / math.sqrt(num_probes)) if num_probes > 1 else float("nan")
        norm = math.sqrt(max(mean, 0.0))
        return Estimate(norm, se_sq / (2 * norm) if norm > 0 else 0.0, num_probes, "hutchinson")

    def exact_spectrum(  # type: ignore[no-redef]
        space: ParamSpace, theta: torch.Tensor | None = None, *, max_params: int = 5000
    ) -> np.ndarray:
        """All Hessian eigenvalues, ascending, from the dense float64 Hessian (stand-in)."""
        if space.dim > max_params:
            raise ConfigError(
                f"the model has {space.dim} parameters, more than max_params={max_params};"
                " use the top-k spectrum instead."
            )
        th = (space.theta0 if theta is None else theta).detach()
        h = torch.func.hessian(lambda t: space.loss(t))(th)
        h = h.to(torch.float64).cpu().numpy()
        return np.linalg.eigvalsh(0.5 * (h + h.T))


__all__: list[Any] = [
    "STANDIN",
    "exact_spectrum",
    "frobenius_norm",
    "hutchpp_trace",
    "top_eigenpairs",
]
