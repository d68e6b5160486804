"""The first-layer trick of surface evaluation.

When the model is an ``nn.Sequential`` whose first parameterized module is a Conv/Linear
applied to the input (after parameter-free reshapes), ``layer(x, W + Σ c_k D_k) =
layer(x, W) + Σ c_k layer(x, D_k)`` (biases likewise): the ``1 + k`` outputs are computed
once per data chunk and reused for every grid point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from landscape.engine.params import ParamSpace

FIRST_LAYER_CACHE_BYTES = 512 << 20
"""Most bytes of cached first-layer outputs (and fused input patches) per evaluator."""
_PREFIX_TYPES = (nn.Flatten, nn.Identity, nn.Unflatten)
_FIRST_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class FirstLayer:
    """How to split an ``nn.Sequential`` at its first (linear-in-weights) layer.

    Attributes:
        prefix: parameter-free modules applied to the input first (Flatten, Identity).
        module: the first Conv/Linear module.
        weight: θ name of its weight.
        bias: θ name of its bias, or ``None``.
        rest: the remaining children as ``(module, [(full_name, local_name), ...])``.
    """

    prefix: list[nn.Module]
    module: nn.Module
    weight: str
    bias: str | None
    rest: list[tuple[nn.Module, list[tuple[str, str]]]]

    def layer(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """The first layer at weights ``w`` and bias ``b``."""
        if isinstance(self.module, nn.Linear):
            return torch.nn.functional.linear(x, w, b)
        return self.module._conv_forward(x, w, b)  # type: ignore[operator]

    def parts(
        self,
        x: torch.Tensor,
        base: dict[str, torch.Tensor],
        dvecs: Sequence[dict[str, torch.Tensor]],
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``layer(x, θ)`` and ``layer(x, d_k)`` for every direction."""
        for m in self.prefix:
            x = m(x)
        b = self.bias
        z0 = self.layer(x, base[self.weight], base[b] if b else None)
        zs = [self.layer(x, d[self.weight], d[b] if b else None) for d in dvecs]
        return z0, zs

    def forward_rest(self, params: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """Apply the children after the first layer with the given parameters and buffers."""
        for child, keys in self.rest:
            if keys:
                z = functional_call(child, {loc: params[full] for full, loc in keys}, (z,))
            else:
                z = child(z)
        return z


def detect_first_layer(space: ParamSpace) -> FirstLayer | None:
    """Find a first layer usable by the first-layer trick, or ``None``.

    The model must be a plain ``nn.Sequential`` (no overridden ``forward``, no shared
    children, no parameters of its own) whose first child with state is an ``nn.Linear`` or
    ``nn.ConvNd`` (exact types) preceded only by Flatten/Identity/Unflatten. The split is
    then checked on two samples: a forward pre-hook confirms that the layer receives the
    (flattened) input, and the split forward must reproduce the model's output.

    Example:
        >>> from landscape.io import ModelBundle, load_data
        >>> m = nn.Sequential(nn.Flatten(), nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 3))
        >>> space = ParamSpace(ModelBundle.from_module(m, load_data("synthetic")))
        >>> detect_first_layer(space).weight
        '1.weight'
    """
    module = space.bundle.module
    if space.scripted or not isinstance(module, nn.Sequential):
        return None
    if type(module).forward is not nn.Sequential.forward:
        return None
    children = list(module._modules.items())
    if any(c is None for _, c in children) or len({id(c) for _, c in children}) != len(children):
        return None
    if any("." not in n for n, _ in module.named_parameters()):
        return None
    if any("." not in n for n, _ in module.named_buffers()):
        return None
    names = set(space.names)
    state = dict(space.unflatten(space.theta0))
    state.update(space.buffers)
    prefix: list[nn.Module] = []
    for idx, (name, child) in enumerate(children):
        has_state = any(True for _ in child.parameters()) or any(True for _ in child.buffers())
        if not has_state:
            if type(child) in _PREFIX_TYPES:
                prefix.append(child)
                continue
            return None
        if type(child) not in _FIRST_TYPES:
            return None
        if type(child) is not nn.Linear and getattr(child, "padding_mode", "zeros") not in (
            "zeros",
            "reflect",
            "replicate",
            "circular",
        ):
            return None
        wname = f"{name}.weight"
        bname = f"{name}.bias" if getattr(child, "bias", None) is not None else None
        if wname not in names or (bname is not None and bname not in names):
            return None
        rest = []
        for cname, c in children[idx + 1 :]:
            pre = f"{cname}."
            keys = [(k, k[len(pre) :]) for k in state if k.startswith(pre)]
            rest.append((c, keys))
        first = FirstLayer(prefix, child, wname, bname, rest)
        return first if _verify_first_layer(space, first) else None
    return None


def _verify_first_layer(space: ParamSpace, first: FirstLayer) -> bool:
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, args: tuple[Any, ...]) -> None:
        captured.append(args[0])

    try:
        x = space.bundle.to_device(space.bundle.data.x_train[:2])
        handle = first.module.register_forward_pre_hook(hook)
        try:
            with torch.no_grad():
                ref = space.forward(space.theta0, x)
        finally:
            handle.remove()
        if len(captured) != 1:
            return False
        with torch.no_grad():
            xin = x
            for m in first.prefix:
                xin = m(xin)
            if not torch.equal(captured[0], xin):
                return False
            base = space.unflatten(space.theta0)
            z0, _ = first.parts(x, base, [])
            params = dict(base)
            params.update(space.buffers)
            out = first.forward_rest(params, z0)
        return bool(
            isinstance(out, torch.Tensor)
            and out.shape == ref.shape
            and torch.allclose(out, ref, rtol=1e-5, atol=1e-6, equal_nan=True)
        )
    except Exception:  # noqa: BLE001 - any failure means: use the plain path
        return False
