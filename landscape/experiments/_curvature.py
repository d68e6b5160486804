"""Top eigenpairs and trace of a curvature operator for the basin measures.

Uses ``landscape.hessian`` (Lanczos, Hutch++). Until that package provides them, a small
stand-in is used: ``scipy.sparse.linalg.eigsh`` on the operator and a plain Hutch++.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from landscape.engine.curvature import Operator
from landscape.results import Eigenpairs, Estimate


def top_eigenpairs(op: Operator, k: int = 5, *, seed: int = 0, tol: float = 1e-6) -> Eigenpairs:
    """Largest ``k`` eigenpairs (descending, with vectors)."""
    try:
        from landscape.hessian import top_eigenpairs as lanczos
    except ImportError:
        lanczos = None
    if lanczos is not None:
        return lanczos(op, k, seed=seed, tol=tol, return_vectors=True)
    from scipy.sparse.linalg import LinearOperator, eigsh

    d = op.dim
    k = min(k, d - 1) if d > 1 else 1
    before = op.matvecs

    def mv(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(v).reshape(-1), device=op.device, dtype=op.dtype)
        return op.matvec(t).detach().double().cpu().numpy()

    lin = LinearOperator((d, d), matvec=mv, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(d)
    vals, vecs = eigsh(lin, k=k, which="LA", v0=v0, tol=tol)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order].T
    res = np.array([np.linalg.norm(mv(v) - lam * v) for lam, v in zip(vals, vecs, strict=True)])
    conv = res <= tol * max(1.0, abs(vals[0])) * 10
    return Eigenpairs(vals, vecs, res, conv, 0, op.matvecs - before)


def hutchpp_trace(op: Operator, num_matvecs: int = 99, *, seed: int = 0) -> Estimate:
    """Trace estimate (Hutch++)."""
    try:
        from landscape.hessian import hutchpp_trace as hpp
    except ImportError:
        hpp = None
    if hpp is not None:
        return hpp(op, num_matvecs, seed=seed)
    g = torch.Generator(device="cpu").manual_seed(seed)
    m = max(3, num_matvecs) // 3
    s = (torch.randint(0, 2, (m, op.dim), generator=g) * 2 - 1).to(op.device, op.dtype)
    q, _ = torch.linalg.qr(op.matmat(s).T)
    q = q.T
    t1 = float((q * op.matmat(q)).sum())
    z = (torch.randint(0, 2, (m, op.dim), generator=g) * 2 - 1).to(op.device, op.dtype)
    z = z - (z @ q.T) @ q
    per = (z * op.matmat(z)).sum(dim=1).double().cpu().numpy()
    se = float(per.std(ddof=1) / math.sqrt(m)) if m > 1 else float("nan")
    return Estimate(t1 + float(per.mean()), se, 3 * m, "hutch++")
