"""Canonical representative of a ReLU network under its positive rescaling symmetry.

For ``nn.Sequential`` stacks of ``Linear``/``Conv`` layers joined by positively
homogeneous maps (ReLU, LeakyReLU, Identity, Flatten, max/average pooling, Dropout in
eval mode), scaling the incoming weights and bias of hidden unit ``i`` (a neuron, or a
conv output channel) by ``a_i > 0`` and its outgoing weights by ``1/a_i`` leaves the
function unchanged. Hessian-based sharpness changes under these rescalings (Dinh et al.
2017). We map every network to the representative of its orbit with the smallest
parameter norm:

    θ_c = argmin_{a > 0} ‖T_a θ‖₂²,

which is convex in ``log a`` and, for networks without dead units, has a unique minimiser
characterised by balance: for every hidden unit ``‖incoming weights, bias‖² =
‖outgoing weights‖²``. It is found by exact block-coordinate descent (each hidden layer in
turn: ``a_i = (out_i / in_i)^{1/4}``) until the balance holds to ``tol``. For bias-free
networks restricted to layer-wise scalings this is the "all layers have equal norm" rule.

Because ``θ_c`` depends only on the orbit, any metric computed at ``θ_c`` is invariant to
the rescaling symmetry: function-equivalent networks get the same λmax, trace, ….
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from landscape.engine import ParamSpace
from landscape.errors import ConfigError
from landscape.io.model_bundle import ModelBundle

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
HOMOGENEOUS = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Identity,
    nn.Flatten,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
)


@dataclass(frozen=True)
class CanonicalInfo:
    """What canonicalization did.

    Attributes:
        applied: whether θ was replaced by its canonical representative.
        reason: why not (empty when applied).
        method: the rule used.
        layers: names of the weighted layers, input to output.
        hidden_units: number of rescalable units (neurons / channels).
        dead_units: units left alone because their incoming or outgoing weights are zero.
        sweeps: coordinate-descent sweeps used.
        balance_error: ``max_i |in_i − out_i| / (in_i + out_i)`` at the end.
        function_error: ``max |f(θ_c) − f(θ)| / max(1, max |f(θ)|)`` on a check batch.
        norm_before: ``‖θ‖₂``.
        norm_after: ``‖θ_c‖₂``.
    """

    applied: bool
    reason: str = ""
    method: str = "neuron-balance (minimum norm over positive rescalings)"
    layers: tuple[str, ...] = field(default_factory=tuple)
    hidden_units: int = 0
    dead_units: int = 0
    sweeps: int = 0
    balance_error: float = 0.0
    function_error: float = 0.0
    norm_before: float = 0.0
    norm_after: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        d = dict(vars(self))
        d["layers"] = list(self.layers)
        return d


@dataclass(frozen=True)
class _Link:
    """Hidden units between weighted layer ``src`` and the next weighted layer ``dst``."""

    src: str
    dst: str
    units: int
    block: int  # columns of dst per unit (spatial size after Flatten; 1 otherwise)
    dst_conv: bool


def _plain_sequential(m: nn.Module) -> bool:
    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward


def _flatten(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]] | None:
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if _plain_sequential(child):
            sub = _flatten(child, f"{full}.")
            if sub is None:
                return None
            out.extend(sub)
        else:
            out.append((full, child))
    return out


def _spatial_numel(
    module_seq: list[tuple[str, nn.Module]], start: int, stop: int, x: torch.Tensor
) -> torch.Tensor:
    for _, m in module_seq[start:stop]:
        x = m(x)
    return x


def _as_space(obj: ParamSpace | ModelBundle) -> ParamSpace:
    if isinstance(obj, ParamSpace):
        return obj
    if isinstance(obj, ModelBundle):
        return ParamSpace(obj)
    raise ConfigError(f"canonicalize needs a ParamSpace or ModelBundle, got {type(obj).__name__}.")


def analyse(space: ParamSpace | ModelBundle) -> tuple[list[_Link] | None, list[str], str]:
    """Find the rescalable hidden units of a model, or say why it is not analysable.

    Args:
        space: the parameter space (or bundle) of the model.

    Returns:
        ``(links, layer_names, reason)``: ``links`` is ``None`` and ``reason`` names the
        obstacle when the architecture is not a supported positively homogeneous stack.

    Example:
        >>> from landscape.io import load_data
        >>> from landscape.models import mlp
        >>> b = ModelBundle.from_module(mlp(64, 8, 10), load_data("digits", max_samples=8))
        >>> analyse(b)[2]
        ''
    """
    sp = _as_space(space)
    module = sp.bundle.module
    if sp.scripted:
        return None, [], "TorchScript models cannot be inspected"
    if not _plain_sequential(module):
        return (
            None,
            [],
            (f"{type(module).__name__} is not a plain nn.Sequential (residual or custom forward)"),
        )
    seq = _flatten(module)
    if seq is None:
        return None, [], "nested custom Sequential"
    ids = [id(m) for _, m in seq]
    if len(set(ids)) != len(ids):
        return None, [], "a module is used twice (shared weights)"
    widx = [i for i, (_, m) in enumerate(seq) if isinstance(m, WEIGHTED)]
    if len(widx) < 2:
        return None, [], "fewer than two Linear/Conv layers: nothing to rescale"
    names = {i.name for i in sp.infos}
    for i in widx:
        name, m = seq[i]
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d) and m.groups != 1:
            return None, [], f"grouped convolution {name}"
        if f"{name}.weight" not in names:
            return None, [], f"{name}.weight is frozen or missing"
        if m.bias is not None and f"{name}.bias" not in names:
            return None, [], f"{name}.bias is frozen"
    links: list[_Link] = []
    x = sp.bundle.to_device(sp.bundle.data.x_train[:1])
    with torch.no_grad():
        h = _spatial_numel(seq, 0, widx[0], x)
        for a, b in zip(widx[:-1], widx[1:], strict=True):
            src_name, src = seq[a]
            dst_name, dst = seq[b]
            flattened = False
            for name, m in seq[a + 1 : b]:
                if not isinstance(m, HOMOGENEOUS):
                    return (
                        None,
                        [],
                        (
                            f"{type(m).__name__} ({name}) between {src_name} and {dst_name} is"
                            " not positively homogeneous"
                        ),
                    )
                if isinstance(m, nn.Flatten):
                    if m.start_dim != 1 or m.end_dim != -1:
                        return None, [], f"Flatten {name} does not flatten from dim 1"
                    flattened = True
            h = src(h)
            units = int(h.shape[1]) if h.dim() >= 2 else 0
            h = _spatial_numel(seq, a + 1, b, h)
            if isinstance(dst, nn.Linear):
                if isinstance(src, nn.Linear):
                    if h.dim() != 2 or dst.in_features != units:
                        return None, [], f"{dst_name} does not read {src_name}'s units directly"
                    block = 1
                else:
                    if not flattened or h.dim() != 2 or dst.in_features % max(units, 1):
                        return None, [], f"cannot map {src_name}'s channels onto {dst_name}"
                    block = dst.in_features // units
                links.append(_Link(src_name, dst_name, units, block, False))
            else:
                if flattened or dst.in_channels != units:
                    return None, [], f"{dst_name} does not read {src_name}'s channels"
                links.append(_Link(src_name, dst_name, units, 1, True))
    return links, [seq[i][0] for i in widx], ""


def canonicalize(
    space_or_bundle: ParamSpace | ModelBundle,
    theta: torch.Tensor | None = None,
    *,
    tol: float = 1e-10,
    max_sweeps: int = 20000,
) -> tuple[torch.Tensor, CanonicalInfo]:
    """Minimum-norm representative of θ under positive per-unit rescalings.

    Formula: ``θ_c = argmin_{a>0} ‖T_a θ‖²`` where ``T_a`` scales the incoming weights and
    bias of hidden unit ``i`` by ``a_i`` and its outgoing weights by ``1/a_i``; at the
    optimum every hidden unit is balanced (``‖in_i‖² = ‖out_i‖²``). Reference: Dinh et al.
    2017 (the symmetry), Neyshabur et al. 2015 (path-SGD, rescaling-invariant geometry),
    Du et al. 2018 (balancedness). Invariance: θ_c is the same for all function-equivalent
    rescalings of θ, so metrics computed there are invariant.

    Args:
        space_or_bundle: the model (a ParamSpace or ModelBundle).
        theta: the point (default the model's parameters).
        tol: stop when every unit's balance ``|in−out|/(in+out)`` is below ``tol``.
        max_sweeps: cap on sweeps over the hidden layers.

    Returns:
        ``(theta_canonical, info)``; ``theta_canonical`` computes the same function.

    Raises:
        ConfigError: when the architecture is not analysable (residuals, BatchNorm or
            tanh between layers, custom forward, TorchScript).

    Example:
        >>> from landscape.io import load_data
        >>> from landscape.models import mlp
        >>> _ = torch.manual_seed(0)
        >>> b = ModelBundle.from_module(mlp(64, 8, 10), load_data("digits", max_samples=8))
        >>> th, info = canonicalize(b)
        >>> info.applied, info.balance_error < 1e-6
        (True, True)
    """
    sp = _as_space(space_or_bundle)
    links, layers, reason = analyse(sp)
    if links is None:
        raise ConfigError(
            f"cannot canonicalize this model: {reason}; canonicalization handles"
            " nn.Sequential stacks of Linear/Conv with ReLU, LeakyReLU, Identity, pooling;"
            " turn it off (--no-canonicalize)."
        )
    th0 = (sp.theta0 if theta is None else theta).detach()
    params = {k: v.to(torch.float64).clone() for k, v in sp.unflatten(th0).items()}

    def incoming(name: str) -> torch.Tensor:
        w = params[f"{name}.weight"]
        sq = (w.reshape(w.shape[0], -1) ** 2).sum(1)
        b = params.get(f"{name}.bias")
        return sq + (b**2 if b is not None else 0.0)

    def outgoing(link: _Link) -> torch.Tensor:
        w = params[f"{link.dst}.weight"]
        if link.dst_conv:
            return (w.transpose(0, 1).reshape(link.units, -1) ** 2).sum(1)
        return (w.reshape(w.shape[0], link.units, link.block) ** 2).sum(dim=(0, 2))

    def rescale(link: _Link, s: torch.Tensor) -> None:
        w = params[f"{link.src}.weight"]
        params[f"{link.src}.weight"] = w * s.view(-1, *([1] * (w.dim() - 1)))
        if f"{link.src}.bias" in params:
            params[f"{link.src}.bias"] = params[f"{link.src}.bias"] * s
        v = params[f"{link.dst}.weight"]
        if link.dst_conv:
            params[f"{link.dst}.weight"] = v / s.view(1, -1, *([1] * (v.dim() - 2)))
        else:
            k = v.reshape(v.shape[0], link.units, link.block) / s.view(1, -1, 1)
            params[f"{link.dst}.weight"] = k.reshape(v.shape)

    def balance() -> tuple[float, int]:
        worst, dead = 0.0, 0
        for link in links:
            a, b = incoming(link.src), outgoing(link)
            live = (a > 0) & (b > 0)
            dead += int((~live).sum())
            if live.any():
                worst = max(worst, float(((a - b).abs() / (a + b))[live].max()))
        return worst, dead

    sweeps = 0
    err, dead = balance()
    while err > tol and sweeps < max_sweeps:
        for link in links:
            a, b = incoming(link.src), outgoing(link)
            live = (a > 0) & (b > 0)
            s = torch.where(live, (b / a.clamp_min(1e-300)) ** 0.25, torch.ones_like(a))
            rescale(link, s)
        # a backward sweep halves the number of sweeps for deep stacks
        for link in reversed(links):
            a, b = incoming(link.src), outgoing(link)
            live = (a > 0) & (b > 0)
            s = torch.where(live, (b / a.clamp_min(1e-300)) ** 0.25, torch.ones_like(a))
            rescale(link, s)
        sweeps += 1
        err, dead = balance()
    th_c = sp.flatten(params).to(device=th0.device, dtype=th0.dtype)
    ferr = _function_error(sp, th0, th_c)
    info = CanonicalInfo(
        applied=True,
        layers=tuple(layers),
        hidden_units=sum(link.units for link in links),
        dead_units=dead,
        sweeps=sweeps,
        balance_error=err,
        function_error=ferr,
        norm_before=float(th0.norm()),
        norm_after=float(th_c.norm()),
    )
    return th_c, info


@torch.no_grad()
def _function_error(sp: ParamSpace, a: torch.Tensor, b: torch.Tensor) -> float:
    x, _ = next(iter(sp.chunks("train", 256)))
    fa, fb = sp.forward(a, x), sp.forward(b, x)
    scale = max(1.0, float(fa.abs().max()))
    return float((fa - fb).abs().max()) / scale


def function_tolerance(dtype: torch.dtype) -> float:
    """Largest acceptable ``function_error`` for canonicalization in ``dtype``."""
    return 1e-9 if dtype == torch.float64 else 1e-4
