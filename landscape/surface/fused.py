"""A fused eager forward for ``nn.Sequential`` models: BatchNorm folded, channels_last.

A surface evaluates the same network at hundreds of parameter points, so the eager
forward's memory-bound passes add up: on a small CPU the digits CNN spends more time in
BatchNorm, ReLU, max-pooling and layout copies than in its convolutions. This module
rewrites the forward of a plain ``nn.Sequential`` once, at no compile cost:

* an eval-mode BatchNorm that directly follows a Conv/Linear is folded into that layer's
  weight and bias *at every point* (``W' = W·s``, ``b' = (b − μ)·s + β`` with
  ``s = γ/√(σ² + ε)``, all from the point's parameters), which removes the pass;
* a ReLU after a layer's fresh output runs in place (after a following 2×2 max pool,
  with which it commutes, so on a quarter of the values);
* 4-D activations stay channels_last (oneDNN convolutions and pooling are several times
  faster in that layout on the CPU), and ``Flatten`` followed by ``Linear`` reads the
  channels_last activation without a copy, with the Linear weight permuted to match.

Everything else (activations, pooling, dropout in eval mode) is called as in
``Sequential.forward``. The result equals the model's output up to float rounding (folding
reassociates a product); :func:`build_fused` checks that on a few samples before the plan
is used, and returns ``None`` for models it does not cover (custom ``forward``, residual
blocks, shared or unknown stateful modules), which then take the plain path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from landscape.engine.params import ParamSpace

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class _BatchNorm:
    """Names of an eval-mode BatchNorm's tensors (affine ones may be ``None``)."""

    weight: str | None
    bias: str | None
    mean: str
    var: str
    eps: float


@dataclass
class _Step:
    """One step of the fused forward.

    ``kind`` is ``layer`` (Conv/Linear, with an optional folded BatchNorm and ReLU),
    ``bn`` (a BatchNorm that does not follow a layer), ``ln`` (LayerNorm), ``relu`` or
    ``pool2`` (a 2×2 max pool), ``flatten`` (left to the Linear after it) or ``call`` (a
    parameter-free module, called as is).
    """

    kind: str
    module: nn.Module
    weight: str = ""
    bias: str | None = None
    bn: _BatchNorm | None = None
    relu: bool = False
    after_flatten: bool = False


@dataclass
class FusedPlan:
    """The steps of a fused forward and how they read the point's tensors.

    Attributes:
        steps: the forward, in order.
        channels_last: whether 4-D inputs should be given channels_last.
    """

    steps: list[_Step] = field(default_factory=list)
    channels_last: bool = False

    @property
    def unfoldable(self) -> bool:
        """Whether the first step is a Conv2d that can run as one GEMM on unfolded inputs."""
        if not self.steps or self.steps[0].kind != "layer":
            return False
        m = self.steps[0].module
        return (
            type(m) is nn.Conv2d
            and m.groups == 1
            and m.padding_mode == "zeros"
            and not isinstance(m.padding, str)
        )

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """The first convolution's input patches and a ones column, ``(N·L, C·kh·kw + 1)``.

        The data do not move with θ, so the evaluator computes this once per chunk; the
        first layer at every point is then one matrix product with the point's (folded)
        weight, which on the CPU is several times cheaper than a convolution with few
        input channels.
        """
        m = self.steps[0].module
        assert isinstance(m, nn.Conv2d)
        cols = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride)  # type: ignore[arg-type]
        cols = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        # a column of ones carries the bias through the product (no broadcast copy)
        return torch.cat([cols, cols.new_ones(cols.shape[0], 1)], 1)

    def unfold_bytes(self, x: torch.Tensor) -> int:
        """Bytes :meth:`unfold` takes for a batch shaped like ``x``."""
        m = self.steps[0].module
        assert isinstance(m, nn.Conv2d)
        n, c, hh, ww = x.shape
        ho, wo = _conv_out(m, hh, ww)
        k = c * m.kernel_size[0] * m.kernel_size[1] + 1
        return n * ho * wo * k * x.element_size()

    def forward(
        self, state: dict[str, torch.Tensor], x: torch.Tensor, cols: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The model's output on ``x`` with parameters and buffers from ``state``.

        ``cols`` are :meth:`unfold`'s patches of ``x``, when the caller keeps them.
        """
        h = x
        owned = False  # whether ``h`` is a fresh tensor we may overwrite
        for i, s in enumerate(self.steps):
            if s.kind == "layer":
                if i == 0 and cols is not None:
                    h = _first_gemm(s, state, x, cols)
                else:
                    h = _layer(s, state, h)
                owned = True
            elif s.kind == "bn":
                assert s.bn is not None
                bn = s.bn
                h = F.batch_norm(
                    h,
                    state[bn.mean],
                    state[bn.var],
                    state[bn.weight] if bn.weight else None,
                    state[bn.bias] if bn.bias else None,
                    False,
                    0.0,
                    bn.eps,
                )
                owned = True
            elif s.kind == "ln":
                m = s.module
                assert isinstance(m, nn.LayerNorm)
                h = F.layer_norm(
                    h,
                    m.normalized_shape,
                    state[s.weight] if s.weight else None,
                    state[s.bias] if s.bias else None,
                    m.eps,
                )
                owned = True
            elif s.kind == "relu":
                h = h.relu_() if owned else torch.relu(h)
                owned = True
            elif s.kind == "flatten":
                continue  # done by the Linear that follows (see ``after_flatten``)
            elif s.kind == "pool2":
                h = _max_pool2(h)
                owned = True
            else:
                h = s.module(h)
                owned = False
        return h


def _fold(
    w: torch.Tensor, b: torch.Tensor | None, bn: _BatchNorm, state: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the preceding layer's weight and bias."""
    inv = torch.rsqrt(state[bn.var] + bn.eps)
    s = state[bn.weight] * inv if bn.weight else inv
    shift = -state[bn.mean] * s if b is None else (b - state[bn.mean]) * s
    if bn.bias:
        shift = shift + state[bn.bias]
    return w * s.view(-1, *([1] * (w.dim() - 1))), shift


def _is_pool2(m: nn.Module) -> bool:
    """A 2×2 max pool with stride 2, no padding, dilation 1, floor mode, no indices."""

    def two(v: object) -> bool:
        return v == 2 or v == (2, 2)

    def val(v: object, x: int) -> bool:
        return v == x or v == (x, x)

    return bool(
        two(m.kernel_size)
        and two(m.stride)
        and val(m.padding, 0)
        and val(m.dilation, 1)
        and not m.ceil_mode
        and not m.return_indices
    )


def _max_pool2(h: torch.Tensor) -> torch.Tensor:
    """``max_pool2d(h, 2)`` as two elementwise maxima (NaN propagates the same way)."""
    if h.dim() != 4 or not h.is_contiguous(memory_format=torch.channels_last):
        return F.max_pool2d(h, 2)
    hh, ww = h.shape[2] // 2 * 2, h.shape[3] // 2 * 2
    v = h[:, :, :hh, :ww]
    r = torch.maximum(v[:, :, 0::2], v[:, :, 1::2])
    return torch.maximum(r[:, :, :, 0::2], r[:, :, :, 1::2])


def _conv_out(m: nn.Conv2d, hh: int, ww: int) -> tuple[int, int]:
    p = [int(v) for v in m.padding]
    d, k, st = m.dilation, m.kernel_size, m.stride
    ho = (hh + 2 * p[0] - d[0] * (k[0] - 1) - 1) // st[0] + 1
    wo = (ww + 2 * p[1] - d[1] * (k[1] - 1) - 1) // st[1] + 1
    return ho, wo


def _first_gemm(
    s: _Step, state: dict[str, torch.Tensor], x: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """The first Conv2d as ``cols @ Wᵀ`` on cached patches, returned channels_last."""
    m = s.module
    assert isinstance(m, nn.Conv2d)
    w = state[s.weight]
    b = state[s.bias] if s.bias else None
    if s.bn is not None:
        w, b = _fold(w, b, s.bn, state)
    wm = w.reshape(w.shape[0], -1)
    wm = torch.cat([wm, wm.new_zeros(wm.shape[0], 1) if b is None else b[:, None]], 1)
    out = torch.mm(cols, wm.t())
    ho, wo = _conv_out(m, x.shape[2], x.shape[3])
    out = out.view(x.shape[0], ho, wo, w.shape[0]).permute(0, 3, 1, 2)
    return out.relu_() if s.relu else out


def _layer(s: _Step, state: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    w = state[s.weight]
    b = state[s.bias] if s.bias else None
    m = s.module
    if isinstance(m, nn.Linear):
        if s.after_flatten:
            if h.dim() == 4 and h.is_contiguous(memory_format=torch.channels_last):
                n, c, hh, ww = h.shape
                h = h.permute(0, 2, 3, 1).reshape(n, -1)
                w = w.view(w.shape[0], c, hh, ww).permute(0, 2, 3, 1).reshape(w.shape[0], -1)
            else:
                h = h.flatten(1)
        if s.bn is not None and h.dim() == 2:
            w, b = _fold(w, b, s.bn, state)
            out = F.linear(h, w, b)
        else:
            out = F.linear(h, w, b)
            if s.bn is not None:
                out = _apply_bn(out, s.bn, state)
    else:
        if s.bn is not None:
            w, b = _fold(w, b, s.bn, state)
        if h.dim() == 4 and not h.is_contiguous(memory_format=torch.channels_last):
            h = h.contiguous(memory_format=torch.channels_last)
        out = m._conv_forward(h, w, b)  # type: ignore[operator]
    return out.relu_() if s.relu else out


def _apply_bn(h: torch.Tensor, bn: _BatchNorm, state: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.batch_norm(
        h,
        state[bn.mean],
        state[bn.var],
        state[bn.weight] if bn.weight else None,
        state[bn.bias] if bn.bias else None,
        False,
        0.0,
        bn.eps,
    )


def _leaves(module: nn.Sequential, prefix: str) -> Iterator[tuple[str, nn.Module] | None]:
    """Children of nested plain Sequentials in call order; ``None`` marks an unusable one."""
    for name, child in module._modules.items():
        if child is None:
            yield None
            return
        full = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            yield from _leaves(child, f"{full}.")
        else:
            yield full, child


def _has_state(m: nn.Module) -> bool:
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


def build_fused(space: ParamSpace) -> FusedPlan | None:
    """A fused forward for the space's model, or ``None`` when it does not apply.

    The model must be a plain ``nn.Sequential`` (nested plain Sequentials allowed) whose
    stateful children are exactly ``nn.Linear``, ``nn.ConvNd``, eval-mode
    ``nn.BatchNormNd`` with running statistics, or ``nn.LayerNorm``, none shared. The plan
    is checked against :meth:`ParamSpace.forward` on a few training samples, at θ and at a
    perturbed θ.

    Example:
        >>> from landscape.io import ModelBundle, load_data
        >>> m = nn.Sequential(nn.Linear(10, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        >>> plan = build_fused(ParamSpace(ModelBundle.from_module(m, load_data("synthetic"))))
        >>> [s.kind for s in plan.steps], plan.steps[0].relu
        (['layer', 'layer'], True)
    """
    module = space.bundle.module
    if space.scripted or type(module) is not nn.Sequential:
        return None
    if any("." not in n for n, _ in module.named_parameters()):
        return None
    leaves = list(_leaves(module, ""))
    if any(leaf is None for leaf in leaves):
        return None
    items = [leaf for leaf in leaves if leaf is not None]
    if len({id(m) for _, m in items}) != len(items):
        return None
    state_names = set(space.names) | set(space.buffers)
    plan = FusedPlan()
    for i, (name, m) in enumerate(items):
        t = type(m)
        prev = plan.steps[-1] if plan.steps else None
        if not _has_state(m):
            if t is nn.ReLU:
                if prev is not None and prev.kind == "layer" and not prev.relu:
                    prev.relu = True
                else:
                    plan.steps.append(_Step("relu", m))
            elif (
                t is nn.Flatten
                and m.start_dim == 1  # type: ignore[comparison-overlap]
                and m.end_dim == -1  # type: ignore[comparison-overlap]
                and i + 1 < len(items)
                and type(items[i + 1][1]) is nn.Linear
            ):
                plan.steps.append(_Step("flatten", m))
            elif t in (nn.Identity, nn.Dropout):
                continue  # the identity in eval mode
            elif t is nn.MaxPool2d and _is_pool2(m):
                if prev is not None and prev.kind == "layer" and prev.relu:
                    # max pooling commutes with ReLU: rectify the 4× smaller output
                    prev.relu = False
                    plan.steps += [_Step("pool2", m), _Step("relu", nn.ReLU())]
                else:
                    plan.steps.append(_Step("pool2", m))
            else:
                plan.steps.append(_Step("call", m))
            continue
        if t is nn.Linear or t in _CONV:
            if t in _CONV and m.padding_mode not in ("zeros", "reflect", "replicate", "circular"):
                return None
            wname = f"{name}.weight"
            bname = f"{name}.bias" if getattr(m, "bias", None) is not None else None
            if wname not in state_names or (bname and bname not in state_names):
                return None
            after = prev is not None and prev.kind == "flatten"
            plan.steps.append(_Step("layer", m, wname, bname, after_flatten=after))
            if t is nn.Conv2d:
                plan.channels_last = True
        elif t in _BN:
            bn = _bn_names(name, m, state_names)
            if bn is None:
                return None
            if (
                prev is not None
                and prev.kind == "layer"
                and prev.bn is None
                and not prev.relu
                and _bn_matches(prev.module, m)
            ):
                prev.bn = bn
            else:
                plan.steps.append(_Step("bn", m, bn=bn))
        elif t is nn.LayerNorm:
            wname = f"{name}.weight" if m.weight is not None else ""
            bname = f"{name}.bias" if m.bias is not None else None
            if (wname and wname not in state_names) or (bname and bname not in state_names):
                return None
            plan.steps.append(_Step("ln", m, wname, bname))
        else:
            return None
    return plan if _verify(space, plan) else None


def _bn_names(name: str, m: nn.Module, state_names: set[str]) -> _BatchNorm | None:
    assert isinstance(m, nn.modules.batchnorm._BatchNorm)
    if not m.track_running_stats or m.running_mean is None or m.running_var is None:
        return None
    if m.training:
        return None
    bn = _BatchNorm(
        f"{name}.weight" if m.weight is not None else None,
        f"{name}.bias" if m.bias is not None else None,
        f"{name}.running_mean",
        f"{name}.running_var",
        float(m.eps),
    )
    for n in (bn.weight, bn.bias, bn.mean, bn.var):
        if n is not None and n not in state_names:
            return None
    return bn


def _bn_matches(layer: nn.Module, bn: nn.Module) -> bool:
    """Whether a BatchNorm normalizes the layer's output channels (dim 1 of its output)."""
    out = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    if isinstance(layer, nn.Linear):
        return type(bn) is nn.BatchNorm1d and bn.num_features == out  # type: ignore[attr-defined]
    ok: dict[type[nn.Module], type[nn.Module]] = {
        nn.Conv1d: nn.BatchNorm1d,
        nn.Conv2d: nn.BatchNorm2d,
        nn.Conv3d: nn.BatchNorm3d,
    }
    return ok.get(type(layer)) is type(bn) and bn.num_features == out  # type: ignore[attr-defined]


def _verify(space: ParamSpace, plan: FusedPlan) -> bool:
    """Whether the plan reproduces the model at θ and at a perturbed θ on a few samples."""
    try:
        x = space.bundle.to_device(space.bundle.data.x_train[:4])
        if plan.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(space.dim, generator=g, dtype=torch.float64)
        noise = noise.to(space.device, space.dtype) * 0.1 * space.theta0.abs().clamp_min(1e-3)
        tol = 1e-9 if space.dtype == torch.float64 else 1e-4
        for theta in (space.theta0, space.theta0 + noise):
            with torch.no_grad():
                ref = space.forward(theta, x.contiguous())
                state = dict(space.unflatten(theta))
                state.update(space.buffers)
                out = plan.forward(state, x)
            if not (
                isinstance(out, torch.Tensor)
                and out.shape == ref.shape
                and torch.allclose(out, ref, rtol=tol, atol=tol * float(ref.abs().max()))
            ):
                return False
        return True
    except Exception:  # noqa: BLE001 - any failure means: use the plain path
        return False
