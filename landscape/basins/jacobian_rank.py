"""Function-space degeneracy: numerical rank of the output Jacobian ``∂f(x_i)/∂θ``.

Parameters that the data cannot tell apart add no rank: a network that compresses uses few
effective function-space directions. The rank of ``J`` (rows: every output of every sample
in a subset of the training set; columns: parameters) is invariant to reparameterizations
``θ ↦ Dθ`` and to rescaling the outputs, because the tolerance is relative to the largest
singular value.
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
    """

    rank: int
    tol: float
    method: str
    singular_values: np.ndarray
    shape: tuple[int, int]
    num_samples: int

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
            "tol": _json_float(self.tol),
            "method": self.method,
            "shape": list(self.shape),
            "num_samples": int(self.num_samples),
            "sigma_max": _json_float(self.singular_values[0] if self.singular_values.size else 0),
        }


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
    jac, n = output_jacobian(space, theta, max_samples=max_samples, chunk=chunk, progress=progress)
    sv = torch.linalg.svdvals(jac.double()).cpu().numpy()
    smax = float(sv[0]) if sv.size else 0.0
    if rtol is None:
        tol = smax * max(jac.shape) * float(torch.finfo(space.dtype).eps)
        method = "eps"
    else:
        tol = rtol * smax
        method = "relative"
    rank = int((sv > tol).sum())
    return JacobianRank(rank, tol, method, sv, (int(jac.shape[0]), int(jac.shape[1])), n)
