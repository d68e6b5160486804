"""The exact dense Hessian of the mean loss, in float64, for small models.

The reference every estimator is tested against: ``torch.func.hessian`` of
``space.loss``, i.e. forward-over-reverse ``jacfwd(jacrev(loss))``, written as a ``vmap``
of ``jvp(grad(loss))`` over the unit vectors in chunks to bound memory. A float32 (or lower precision) space is first cast to a
float64 copy of the model and data, so the result is the Hessian of the float64 function
at the float64-cast point.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import grad, jvp, vmap

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.engine.attention import math_attention
from landscape.errors import ConfigError
from landscape.io.model_bundle import ModelBundle

# Unit vectors pushed through the Hessian at once (memory ~ this × activations).
_CHUNK = 128


def _float64_space(space: ParamSpace) -> ParamSpace:
    if space.dtype == torch.float64:
        return space
    b = space.bundle
    copy64 = ModelBundle.from_module(
        b.module,
        b.data,
        b.loss,
        device=b.device,
        dtype=torch.float64,
        provenance=b.provenance,
        check=False,
    )
    space64 = ParamSpace(copy64, params=space.params)
    space64.buffers = {
        k: (v.to(torch.float64) if v.is_floating_point() else v) for k, v in space.buffers.items()
    }
    return space64


def dense_hessian(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    max_params: int = 5000,
) -> torch.Tensor:
    """The dense Hessian of the mean training loss at ``theta`` as a float64 matrix.

    Args:
        space: the parameter space (model, data, loss).
        theta: the point (default ``space.theta0``); not modified.
        max_params: refuse models with more parameters than this (memory is
            ``dim² · 8`` bytes and time grows like ``dim`` backward passes).

    Returns:
        A symmetric float64 tensor of shape ``(dim, dim)`` on the model's device.

    Raises:
        ConfigError: if the model has more than ``max_params`` parameters.

    Note:
        TorchScript models cannot be traced by ``torch.func``; for them the matrix is
        assembled from Hessian-vector products with the unit vectors in the model's own
        dtype (build the bundle in float64 for a float64 reference).

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> data = load_data("synthetic", max_samples=50)
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), data, dtype=torch.float64)
        >>> dense_hessian(ParamSpace(b)).shape
        torch.Size([33, 33])
    """
    if space.dim > max_params:
        raise ConfigError(
            f"the model has {space.dim} parameters, more than max_params={max_params} for a"
            " dense Hessian; use top_eigenpairs / slq_density, or raise max_params."
        )
    th = (space.theta0 if theta is None else theta).detach()
    if space.scripted:
        op = CurvatureOperator(space, th, strategy="reverse")
        eye = torch.eye(space.dim, device=space.device, dtype=space.dtype)
        rows = [op.matmat(eye[i : i + _CHUNK]) for i in range(0, space.dim, _CHUNK)]
        h = torch.cat(rows).to(torch.float64)
        return 0.5 * (h + h.T)
    space64 = _float64_space(space)
    th64 = th.to(device=space64.device, dtype=torch.float64).clone()

    def loss(t: torch.Tensor) -> torch.Tensor:
        return space64.loss(t)

    g = grad(loss)

    def column(v: torch.Tensor) -> torch.Tensor:
        return jvp(g, (th64,), (v,))[1]

    eye = torch.eye(space64.dim, device=th64.device, dtype=torch.float64)
    with math_attention():
        h = vmap(column, chunk_size=_CHUNK)(eye).detach()
    return 0.5 * (h + h.T)


def exact_spectrum(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    max_params: int = 5000,
) -> np.ndarray:
    """All eigenvalues (ascending) of the dense float64 Hessian at ``theta``.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> data = load_data("synthetic", max_samples=50)
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), data, dtype=torch.float64)
        >>> ev = exact_spectrum(ParamSpace(b))
        >>> bool(np.all(np.diff(ev) >= 0))
        True
    """
    h = dense_hessian(space, theta, max_params=max_params)
    return torch.linalg.eigvalsh(h).cpu().numpy()
