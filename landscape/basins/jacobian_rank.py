"""Function-space degeneracy: numerical rank of the output Jacobian ``∂f(x_i)/∂θ``.

Parameters that the data cannot tell apart add no rank: a network that compresses uses few
effective function-space directions. The rank of ``J`` (rows: every output of every sample
in a subset of the training set; columns: parameters) does not change under an invertible
reparameterization ``θ ↦ Dθ`` in exact arithmetic, but its *numerical* rank does: rescaling
one layer by 4 and the next by ¼ changes the conditioning of ``J`` by 16 and pushes small
singular values under a tolerance relative to ``σ_max``. So by default every column is
scaled to unit norm first (all-zero columns, e.g. dead units, are dropped): the result is
exactly invariant to any per-parameter rescaling ``θ_j ↦ c_j θ_j`` (ReLU rescalings, layer
rescalings) and to permutations, and, through the relative tolerance, to scaling the
outputs.

Singular values come from an SVD, or (much faster on CPUs) from the eigenvalues of the
smaller Gram matrix ``JJᵀ`` or ``JᵀJ`` formed in float64; the Gram route resolves singular
values down to about ``1e-7 · σ_max``, so ``method="auto"`` uses it only when the tolerance
is coarser than ``1e-6 · σ_max`` (float32 models, or ``rtol ≥ 1e-6``).

Besides the thresholded rank we report the *effective rank* of Roy & Vetterli (2007),
``exp(H(p))`` with ``p_i = σ_i / Σ_j σ_j``: a threshold-free count of the directions that
carry the Jacobian, useful when ``J`` has fewer rows than parameters and is generically of
full row rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import jacrev

from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.progress import Progress, tracked
from landscape.results import _json_float

JACOBIAN_MAX_ELEMENTS = 50_000_000


@dataclass(frozen=True)
class JacobianRank:
    """Numerical rank of the Jacobian of outputs with respect to parameters.

    Attributes:
        rank: number of singular values above ``tol``.
        tol: the tolerance used.
        method: ``eps`` (``σ_max · max(shape) · eps(dtype)``) or ``relative`` (``rtol · σ_max``).
        singular_values: all singular values, descending.
        shape: ``(rows, params)`` of ``J``.
        num_samples: samples used.
        normalized_columns: whether columns were scaled to unit norm.
    """

    rank: int
    tol: float
    method: str
    singular_values: np.ndarray
    shape: tuple[int, int]
    num_samples: int
    normalized_columns: bool = True

    @property
    def effective_rank(self) -> float:
        """Roy–Vetterli effective rank ``exp(−Σ p_i log p_i)``, ``p_i = σ_i / Σ σ``."""
        return effective_rank(self.singular_values)

    @property
    def normalized(self) -> float:
        """``rank / min(shape)`` (1 means full rank)."""
        return self.rank / max(1, min(self.shape))

    def rank_at(self, rtol: float) -> int:
        """Rank with a relative threshold ``rtol · σ_max`` (recomputed from the values)."""
        sv = self.singular_values
        return int((sv > rtol * (sv[0] if sv.size else 0.0)).sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scalars."""
        return {
            "rank": int(self.rank),
            "normalized": _json_float(self.normalized),
            "effective_rank": _json_float(self.effective_rank),
            "tol": _json_float(self.tol),
            "method": self.method,
            "shape": list(self.shape),
            "num_samples": int(self.num_samples),
            "normalized_columns": bool(self.normalized_columns),
            "sigma_max": _json_float(self.singular_values[0] if self.singular_values.size else 0),
        }


def effective_rank(singular_values: np.ndarray) -> float:
    """Roy & Vetterli's effective rank: ``exp`` of the entropy of the normalized spectrum.

    Example:
        >>> round(effective_rank(np.array([1.0, 1.0, 0.0])), 6)
        2.0
    """
    sv = np.asarray(singular_values, dtype=np.float64)
    total = sv.sum()
    if total <= 0:
        return 0.0
    p = sv[sv > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def singular_values(jac: torch.Tensor, method: str = "svd") -> np.ndarray:
    """Singular values of ``jac`` (descending) by ``svd`` or via the float64 ``gram`` matrix.

    Example:
        >>> singular_values(torch.diag(torch.tensor([3.0, 1.0])), "gram").round(6).tolist()
        [3.0, 1.0]
    """
    if method == "svd":
        return torch.linalg.svdvals(jac.double()).cpu().numpy()
    j = jac.double()
    gram = j @ j.T if j.shape[0] <= j.shape[1] else j.T @ j
    ev = torch.linalg.eigvalsh(gram).clamp(min=0).sqrt().flip(0)
    return ev.cpu().numpy()


def output_jacobian(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    max_samples: int | None = 256,
    chunk: int = 64,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, int]:
    """``J`` of shape ``(samples·outputs, dim)`` on the first ``max_samples`` training samples.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> output_jacobian(sp, max_samples=5)[0].shape
        torch.Size([15, 33])
    """
    if space.scripted:
        raise ConfigError(
            "the Jacobian rank needs torch.func; give a state_dict and --model instead of"
            " a TorchScript archive."
        )
    theta = (space.theta0 if theta is None else theta).detach()
    data = space.bundle.data
    n = data.num_train if max_samples is None else min(max_samples, data.num_train)
    x_all = data.x_train[:n]
    rows: list[torch.Tensor] = []
    with tracked(progress, "Jacobian", -(-n // chunk)) as task:
        for i in range(0, n, chunk):
            x = space.bundle.to_device(x_all[i : i + chunk])

            def f(th: torch.Tensor, x: torch.Tensor = x) -> torch.Tensor:
                return space.forward(th, x).reshape(-1)

            rows.append(jacrev(f)(theta).detach())
            task.advance()
    jac = torch.cat(rows)
    if jac.numel() > JACOBIAN_MAX_ELEMENTS:
        raise ConfigError(
            f"the Jacobian has {jac.numel()} entries; lower the number of samples for it."
        )
    return jac, n


def jacobian_rank(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    max_samples: int | None = 256,
    rtol: float | None = None,
    method: str = "auto",
    normalize_columns: bool = True,
    chunk: int = 64,
    progress: Progress | None = None,
) -> JacobianRank:
    """Numerical rank of the output Jacobian on (a subset of) the training set.

    Args:
        space: the parameter space.
        theta: the point (default ``space.theta0``).
        max_samples: use the first this many training samples (``None``: all).
        rtol: relative threshold ``rtol · σ_max``; default (``None``) uses
            ``σ_max · max(shape) · eps`` with the model dtype's machine epsilon.
        method: ``svd``, ``gram`` or ``auto`` (``gram`` when the tolerance is coarser than
            ``1e-6 · σ_max``, else ``svd``).
        normalize_columns: scale columns to unit norm (drop zero columns) so the rank is
            invariant to per-parameter rescaling.
        chunk: samples per ``jacrev`` call.
        progress: optional progress reporter.

    Returns:
        The rank, its tolerance and the singular values.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> jacobian_rank(sp, max_samples=20).rank  # 3 outputs × (10 inputs + bias)
        33
    """
    if rtol is not None and not 0 < rtol < 1:
        raise ConfigError(f"rtol must lie in (0, 1), got {rtol}.")
    if method not in ("auto", "svd", "gram"):
        raise ConfigError(f"unknown Jacobian method {method!r}; use auto, svd or gram.")
    jac, n = output_jacobian(space, theta, max_samples=max_samples, chunk=chunk, progress=progress)
    shape = (int(jac.shape[0]), int(jac.shape[1]))
    if normalize_columns:
        norms = jac.double().norm(dim=0)
        keep = norms > 0
        jac = jac.double()[:, keep] / norms[keep]
    rel = rtol if rtol is not None else max(jac.shape) * float(torch.finfo(space.dtype).eps)
    if method == "auto":
        method = "gram" if rel >= 1e-6 else "svd"
    sv = singular_values(jac, method)
    smax = float(sv[0]) if sv.size else 0.0
    tol = rel * smax
    rank = int((sv > tol).sum())
    kind = "eps" if rtol is None else "relative"
    return JacobianRank(rank, tol, kind, sv, shape, n, normalize_columns)
