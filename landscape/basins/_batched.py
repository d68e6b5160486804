"""Loss at many parameter vectors at once (vmapped over θ), used by rays, paths and masks."""

from __future__ import annotations

import torch
from torch.func import functional_call, vmap

from landscape.engine.attention import math_attention
from landscape.engine.params import ParamSpace


@torch.no_grad()
@math_attention()
def loss_many(
    space: ParamSpace,
    thetas: torch.Tensor,
    split: str = "train",
    *,
    group: int = 32,
) -> torch.Tensor:
    """Mean loss over a split at each row of ``thetas`` (shape ``(k, dim)``) → ``(k,)``.

    Rows are evaluated ``group`` at a time with ``vmap`` (TorchScript models one by one).
    Non-finite losses are returned as they are.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> loss_many(sp, torch.stack([sp.theta0, sp.theta0])).shape
        torch.Size([2])
    """
    thetas = thetas.to(device=space.device, dtype=space.dtype)
    n = space.num_units(split)
    if space.scripted:
        return torch.tensor(
            [space.evaluate(t, split)[0] for t in thetas], device=space.device, dtype=space.dtype
        )
    module = space.bundle.module
    buffers = space.buffers
    spec = space.bundle.loss

    def one(th: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        params = space.unflatten(th)
        params.update(buffers)
        return spec.chunk_sum(functional_call(module, params, (x,), strict=False), y)

    many = vmap(one, in_dims=(0, None, None))
    out = torch.zeros(thetas.shape[0], device=space.device, dtype=space.dtype)
    for x, y in space.chunks(split):
        parts = [many(thetas[i : i + group], x, y) for i in range(0, thetas.shape[0], group)]
        out += torch.cat(parts)
    return out / n


@torch.no_grad()
@math_attention()
def outputs_many(space: ParamSpace, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Model outputs at each row of ``thetas`` on inputs ``x`` → ``(k, batch, ...)``."""
    if space.scripted:
        return torch.stack([space.forward(t, x) for t in thetas])
    module = space.bundle.module
    buffers = space.buffers

    def one(th: torch.Tensor) -> torch.Tensor:
        params = space.unflatten(th)
        params.update(buffers)
        return functional_call(module, params, (x,), strict=False)

    return vmap(one)(thetas.to(device=space.device, dtype=space.dtype))
