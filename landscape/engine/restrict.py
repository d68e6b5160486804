"""The restriction of an operator to a subset of coordinates: its principal submatrix.

For parameter selections that are whole tensors, ``ParamSpace(bundle, params=...)`` is the
cheaper route (the other tensors become constants). :class:`RestrictedOperator` covers
index sets that cut through a tensor, such as one attention head's rows of a fused
``in_proj_weight``: ``v`` of length ``len(indices)`` is embedded into the full space
(zeros elsewhere), the operator is applied, and the result is gathered at the indices, so
``R = Pᵀ A P`` with ``P`` the selection matrix. Each product costs one full product of
``A``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from landscape.engine.operators import LinearOperatorBase, Operator
from landscape.errors import ConfigError


class RestrictedOperator(LinearOperatorBase):
    """The principal submatrix ``A[indices][:, indices]`` of an operator, matrix-free.

    Args:
        op: the full symmetric operator.
        indices: distinct coordinates of ``op`` to keep, in the order of the submatrix.

    Raises:
        ConfigError: if ``indices`` is empty, not 1-D, repeats a coordinate or leaves
            ``range(op.dim)``.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> a = torch.arange(9.0).reshape(3, 3)
        >>> r = RestrictedOperator(DenseOperator(a + a.T), [0, 2])
        >>> r.matvec(torch.tensor([1.0, 0.0])).tolist()
        [0.0, 8.0]
    """

    def __init__(self, op: Operator, indices: torch.Tensor | Sequence[int]) -> None:
        idx = torch.as_tensor(indices, dtype=torch.long).detach().cpu()
        if idx.dim() != 1 or idx.numel() == 0:
            raise ConfigError("a restriction needs a non-empty 1-D list of indices.")
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= int(op.dim):
            raise ConfigError(
                f"restriction indices must lie in [0, {int(op.dim)}), got {lo}..{hi}."
            )
        if torch.unique(idx).numel() != idx.numel():
            raise ConfigError("restriction indices repeat a coordinate; give each once.")
        self.op = op
        self.indices = idx.to(op.device)
        self.dim = int(idx.numel())
        self.device = op.device
        self.dtype = op.dtype
        self.matvecs = 0

    def _embed(self, vs: torch.Tensor) -> torch.Tensor:
        vs = vs.to(device=self.device, dtype=self.dtype)
        full = torch.zeros(*vs.shape[:-1], int(self.op.dim), device=self.device, dtype=self.dtype)
        full[..., self.indices] = vs
        return full

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Return ``R v`` for a vector of shape ``(dim,)``."""
        if v.dim() != 1 or v.shape[0] != self.dim:
            raise ConfigError(f"expected a vector of length {self.dim}, got {tuple(v.shape)}.")
        self.matvecs += 1
        return self.op.matvec(self._embed(v))[self.indices]

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """Return ``R v_i`` for each row of ``vs`` (shape ``(k, dim)``)."""
        if vs.dim() == 1:
            return self.matvec(vs)
        if vs.dim() != 2 or vs.shape[1] != self.dim:
            raise ConfigError(f"expected probes of shape (k, {self.dim}), got {tuple(vs.shape)}.")
        self.matvecs += vs.shape[0]
        return self.op.matmat(self._embed(vs))[:, self.indices]
