"""Symmetries of MLPs: hidden-unit permutations and ReLU rescalings.

Two networks that differ by a permutation of hidden units (or, with positively homogeneous
activations, by rescaling a unit's incoming weights by ``c > 0`` and its outgoing weights by
``1/c``) compute the same function. Before comparing minima we remove both:

* :func:`rebalance` picks the minimum-norm point of each network's rescaling orbit by
  balancing, for every hidden unit, the norm of its incoming weights (with bias) against the
  norm of its outgoing weights (iterated over layers until it settles). The result is unique,
  so two rescaled copies become equal.
* :func:`weight_matching` (Ainsworth et al. 2023, *Git Re-Basin*) permutes network B's hidden
  units to maximize ``Σ_l ⟨W_l^A, P_l W_l^B P_{l−1}ᵀ⟩ + ⟨b_l^A, P_l b_l^B⟩``, one layer at a time
  by ``scipy.optimize.linear_sum_assignment`` with the other permutations fixed, iterated in
  a seeded random layer order until no permutation changes.

:func:`weight_matching`, :func:`rebalance` and friends work on MLP-shaped parameter spaces: a
chain of 2-D weights ``W_l`` of shape ``(h_l, h_{l−1})``, each optionally followed by its bias
of length ``h_l``. :func:`permutation_spec` and :func:`match_permutations` extend permutation
alignment to (nested) ``nn.Sequential`` CNNs with BatchNorm: a hidden layer's permutation acts
on its conv out-channels, on the BatchNorm after it (affine parameters and running statistics
together) and on the next layer's inputs, through ``Flatten`` as blocks of ``H·W`` inputs;
models with residual connections are traced with ``torch.fx`` and every residual stream
shares one permutation (:func:`traced_permutation_spec`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from landscape.basins._batched import outputs_many
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError, NotApplicable


@dataclass(frozen=True)
class DenseLayer:
    """One linear layer inside θ: the weight slice, its bias slice (or ``None``) and shape."""

    weight: slice
    bias: slice | None
    out_features: int
    in_features: int


def mlp_layout(space: ParamSpace) -> list[DenseLayer]:
    """The chain of dense layers of an MLP-shaped parameter space.

    Raises:
        ConfigError: when the parameters are not a chain of linear layers.

    Example:
        >>> from landscape.models import mlp
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(mlp(10, [8, 6], 3), load_data("synthetic")))
        >>> [(l.out_features, l.in_features) for l in mlp_layout(sp)]
        [(8, 10), (6, 8), (3, 6)]
    """
    layers: list[DenseLayer] = []
    infos = list(space.infos)
    i = 0
    while i < len(infos):
        w = infos[i]
        if len(w.shape) != 2:
            raise ConfigError(
                f"weight matching supports MLPs only; parameter {w.name!r} has shape"
                f" {list(w.shape)}; use a network of nn.Linear layers."
            )
        bias = None
        if i + 1 < len(infos) and infos[i + 1].shape == (w.shape[0],):
            bias = infos[i + 1].slice
            i += 1
        if layers and layers[-1].out_features != w.shape[1]:
            raise ConfigError(
                f"parameter {w.name!r} does not follow the previous layer (in {w.shape[1]},"
                f" expected {layers[-1].out_features}); weight matching needs a plain MLP."
            )
        layers.append(DenseLayer(w.slice, bias, int(w.shape[0]), int(w.shape[1])))
        i += 1
    if len(layers) < 2:
        raise ConfigError("the network has no hidden layer, so it has no unit symmetries.")
    return layers


def _weights(theta: torch.Tensor, layer: DenseLayer) -> torch.Tensor:
    return theta[layer.weight].view(layer.out_features, layer.in_features)


def apply_permutation(
    space: ParamSpace, theta: torch.Tensor, perms: Sequence[np.ndarray | torch.Tensor]
) -> torch.Tensor:
    """Permute hidden units: unit ``i`` of hidden layer ``l`` becomes old unit ``perms[l][i]``.

    Example:
        >>> from landscape.models import mlp
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(mlp(10, 4, 3), load_data("synthetic")))
        >>> th = apply_permutation(sp, sp.theta0, [np.arange(4)])
        >>> bool(torch.equal(th, sp.theta0))
        True
    """
    layers = mlp_layout(space)
    if len(perms) != len(layers) - 1:
        raise ConfigError(f"give one permutation per hidden layer ({len(layers) - 1}).")
    out = theta.clone()
    prev: torch.Tensor | None = None
    for li, layer in enumerate(layers):
        w = _weights(theta, layer)
        cur = (
            torch.as_tensor(np.asarray(perms[li]), device=theta.device, dtype=torch.long)
            if li < len(perms)
            else None
        )
        if cur is not None:
            w = w[cur]
        if prev is not None:
            w = w[:, prev]
        out[layer.weight] = w.reshape(-1)
        if layer.bias is not None:
            b = theta[layer.bias]
            out[layer.bias] = b[cur] if cur is not None else b
        prev = cur
    return out


def apply_rescaling(
    space: ParamSpace, theta: torch.Tensor, scales: list[torch.Tensor]
) -> torch.Tensor:
    """Scale hidden unit ``i`` of layer ``l``: incoming (and bias) by ``c``, outgoing by ``1/c``.

    The function is unchanged for positively homogeneous activations (ReLU, leaky ReLU,
    identity) and ``c > 0``.
    """
    layers = mlp_layout(space)
    out = theta.clone()
    for li, c in enumerate(scales):
        c = c.to(device=theta.device, dtype=theta.dtype)
        lay, nxt = layers[li], layers[li + 1]
        out[lay.weight] = (_weights(out, lay) * c.unsqueeze(1)).reshape(-1)
        if lay.bias is not None:
            out[lay.bias] = out[lay.bias] * c
        out[nxt.weight] = (_weights(out, nxt) / c.unsqueeze(0)).reshape(-1)
    return out


def rescale_layer_pair(
    space: ParamSpace, theta: torch.Tensor, layer: int = 0, factor: float = 4.0
) -> torch.Tensor:
    """Scale dense layer ``layer`` (weights, bias) by ``factor``, the next one's weights by ``1/factor``.

    For ReLU networks this is the same function at a different point θ.

    Example:
        >>> from landscape.models import mlp
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(mlp(10, 4, 3), load_data("synthetic")))
        >>> th = rescale_layer_pair(sp, sp.theta0)
        >>> x = sp.bundle.data.x_train[:5]
        >>> bool(torch.allclose(sp.forward(th, x), sp.forward(sp.theta0, x), atol=1e-5))
        True
    """
    layers = mlp_layout(space)
    if not 0 <= layer < len(layers) - 1:
        raise ConfigError(f"layer must lie in [0, {len(layers) - 2}] for this network.")
    scales = [torch.ones(layers[i].out_features) for i in range(layer)]
    scales.append(torch.full((layers[layer].out_features,), float(factor)))
    return apply_rescaling(space, theta, scales)


def rebalance(
    space: ParamSpace, theta: torch.Tensor, *, sweeps: int = 50, tol: float = 1e-10
) -> torch.Tensor:
    """Minimum-norm representative of θ's ReLU-rescaling orbit (per-neuron norm balancing).

    Each hidden unit's factor ``c = sqrt(‖out‖ / ‖in‖)`` equalizes the norm of its incoming
    weights and bias with that of its outgoing weights; sweeps repeat until the largest
    ``|log c|`` is below ``tol``. Units with zero incoming or outgoing weights are left alone.

    Example:
        >>> from landscape.models import mlp
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(mlp(10, 4, 3), load_data("synthetic")))
        >>> a = rebalance(sp, sp.theta0)
        >>> b = rebalance(sp, rescale_layer_pair(sp, sp.theta0, 0, 3.0))
        >>> bool(torch.allclose(a, b, atol=1e-5))
        True
    """
    layers = mlp_layout(space)
    out = theta.detach().clone()
    for _ in range(sweeps):
        worst = 0.0
        for li in range(len(layers) - 1):
            lay, nxt = layers[li], layers[li + 1]
            w_in = _weights(out, lay)
            n_in = (w_in**2).sum(dim=1)
            if lay.bias is not None:
                n_in = n_in + out[lay.bias] ** 2
            n_out = (_weights(out, nxt) ** 2).sum(dim=0)
            ok = (n_in > 0) & (n_out > 0)
            c = torch.where(ok, (n_out / torch.where(ok, n_in, 1)) ** 0.25, torch.ones_like(n_in))
            worst = max(worst, float(torch.log(c).abs().max()))
            scales = [torch.ones(layers[i].out_features) for i in range(li)] + [c]
            out = apply_rescaling(space, out, scales)
        if worst < tol:
            break
    return out


def check_same_function(
    space: ParamSpace, a: torch.Tensor, b: torch.Tensor, *, samples: int = 64, rtol: float = 1e-4
) -> float:
    """Largest output difference between θ_a and θ_b on training samples, relative to |f|.

    Example:
        >>> from landscape.models import mlp
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(mlp(10, 4, 3), load_data("synthetic")))
        >>> check_same_function(sp, sp.theta0, sp.theta0)
        0.0
    """
    x = space.bundle.to_device(space.bundle.data.x_train[:samples])
    f = outputs_many(space, torch.stack([a, b]), x)
    scale = float(f[0].abs().max()) or 1.0
    return float((f[0] - f[1]).abs().max()) / scale


@dataclass(frozen=True)
class Alignment:
    """Result of weight matching: B's parameters permuted onto A, and the permutations."""

    theta: torch.Tensor
    perms: list[np.ndarray]
    iterations: int
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (without θ)."""
        return {
            "perms": [p.tolist() for p in self.perms],
            "iterations": int(self.iterations),
            "similarity": float(self.similarity),
        }


def weight_matching(
    space: ParamSpace,
    theta_a: torch.Tensor,
    theta_b: torch.Tensor,
    *,
    max_iter: int = 100,
    seed: int = 0,
) -> Alignment:
    """Permute B's hidden units to best match A's weights (Git Re-Basin weight matching).

    Args:
        space: an MLP-shaped parameter space (layout only; no data is used).
        theta_a: the reference network.
        theta_b: the network to permute.
        max_iter: sweeps over the layers at most.
        seed: seed of the layer order.

    Returns:
        The permuted ``theta_b`` with the permutations.

    Example:
        >>> from landscape.models import mlp
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(mlp(10, 4, 3), load_data("synthetic")))
        >>> pb = apply_permutation(sp, sp.theta0, [np.array([2, 0, 3, 1])])
        >>> al = weight_matching(sp, sp.theta0, pb)
        >>> bool(torch.equal(al.theta, sp.theta0))
        True
    """
    layers = mlp_layout(space)
    hidden = len(layers) - 1
    a = theta_a.detach().double().cpu()
    b = theta_b.detach().double().cpu()
    perms = [np.arange(layers[i].out_features) for i in range(hidden)]
    rng = np.random.default_rng(seed)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        changed = False
        for li in rng.permutation(hidden):
            lay, nxt = layers[li], layers[li + 1]
            wa, wb = _weights(a, lay), _weights(b, lay)
            if li > 0:
                wb = wb[:, torch.as_tensor(perms[li - 1])]
            sim = wa @ wb.T
            if lay.bias is not None:
                sim = sim + torch.outer(a[lay.bias], b[lay.bias])
            na, nb = _weights(a, nxt), _weights(b, nxt)
            if li + 1 < hidden:
                nb = nb[torch.as_tensor(perms[li + 1])]
            sim = sim + na.T @ nb
            _, cols = linear_sum_assignment(sim.numpy(), maximize=True)
            if not np.array_equal(cols, perms[li]):
                changed = True
                perms[li] = cols
        if not changed:
            break
    aligned = apply_permutation(space, theta_b.detach(), perms)
    sim_total = float((aligned.double().cpu() * a).sum())
    return Alignment(aligned, perms, it, sim_total)


def canonicalize(space: ParamSpace, theta: torch.Tensor) -> torch.Tensor:
    """Rebalance θ and check the function did not change (it needs homogeneous activations).

    Raises:
        ConfigError: if balancing changed the outputs (e.g. tanh or sigmoid activations).
    """
    out = rebalance(space, theta)
    diff = check_same_function(space, theta, out)
    if diff > 1e-3:
        raise ConfigError(
            "rebalancing changed the network's outputs, so its activations are not positively"
            " homogeneous; align without rescaling (rescale=False) for this model."
        )
    return out


# -- permutation specs for Sequential MLPs and CNNs with BatchNorm ---------------------
@dataclass(frozen=True)
class AxisPerm:
    """One tensor axis permuted by a unit group.

    Attributes:
        group: index of the permutation group (one per hidden Linear/Conv layer).
        block: consecutive entries per unit; a conv channel flattened into a Linear layer's
            inputs spans ``block = H·W`` entries.
    """

    group: int
    block: int = 1


@dataclass(frozen=True)
class PermutationSpec:
    """Which axes of which named tensors each hidden-unit permutation acts on.

    Attributes:
        sizes: number of units of each group.
        axes: for every permuted tensor (parameters and BatchNorm running statistics), one
            entry per axis: the :class:`AxisPerm` acting on it or ``None``.
        layers: names of the layers that own each group (for messages).
    """

    sizes: tuple[int, ...]
    axes: dict[str, tuple[AxisPerm | None, ...]]
    layers: tuple[str, ...]


_PASS_THROUGH: tuple[type, ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ReLU6,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
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
)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _leaves(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Leaf modules of nested ``nn.Sequential`` containers, in forward order."""
    if isinstance(module, nn.Sequential):
        out: list[tuple[str, nn.Module]] = []
        for name, child in module.named_children():
            out += _leaves(child, f"{prefix}{name}.")
        return out
    return [(prefix[:-1], module)]


def permutation_spec(space: ParamSpace) -> PermutationSpec:
    """The hidden-unit permutation symmetry of a Sequential MLP or CNN with BatchNorm.

    Every ``nn.Linear`` / ``nn.Conv{1,2,3}d`` layer but the last opens a group permuting its
    output units (rows / out-channels); the group also acts on the next weight layer's
    inputs and on a BatchNorm between them (weight, bias, running mean and variance
    together). A ``Flatten`` after convolutions makes each channel a block of ``H·W``
    inputs of the next Linear layer. Element-wise activations, dropout and pooling pass
    units through unchanged.

    Other models (residual networks, custom forwards, LayerNorm) are traced with
    ``torch.fx`` (:func:`traced_permutation_spec`): a residual stream then shares one
    permutation.

    Raises:
        NotApplicable: for a model neither covers, naming the first unsupported layer or
            operation (attention, concatenation, grouped convolutions, ...).

    Example:
        >>> from landscape.models import digits_cnn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(digits_cnn(4), load_data("digits")))
        >>> spec = permutation_spec(sp)
        >>> spec.sizes, spec.axes["8.weight"]
        ((4, 8, 16), (AxisPerm(group=2, block=1), AxisPerm(group=1, block=16)))
    """
    module = space.bundle.module
    names = set(space.names) | set(space.buffers)
    if not isinstance(module, nn.Sequential) or any(
        not isinstance(m, (nn.Linear, *_CONV, *_BN, nn.Flatten, *_PASS_THROUGH))
        for _, m in _leaves(module)
    ):
        return traced_permutation_spec(module, names)
    leaves = _leaves(module)
    weight_idx = [i for i, (_, m) in enumerate(leaves) if isinstance(m, (nn.Linear, *_CONV))]
    if len(weight_idx) < 2:
        raise NotApplicable("the network has fewer than two Linear/Conv layers: no unit symmetry.")
    last = weight_idx[-1]
    sizes: list[int] = []
    owners: list[str] = []
    axes: dict[str, tuple[AxisPerm | None, ...]] = {}
    group: int | None = None
    flattened = False
    for i, (name, m) in enumerate(leaves):
        pre = f"{name}." if name else ""
        if isinstance(m, (nn.Linear, *_CONV)):
            n_in = m.in_features if isinstance(m, nn.Linear) else m.in_channels
            inp: AxisPerm | None = None
            if group is not None:
                size = sizes[group]
                if isinstance(m, nn.Linear) and flattened:
                    if n_in % size:
                        raise NotApplicable(
                            f"layer {name!r} has {n_in} inputs, not a multiple of the"
                            f" {size} channels before Flatten."
                        )
                    inp = AxisPerm(group, n_in // size)
                elif n_in != size:
                    raise NotApplicable(f"layer {name!r} takes {n_in} inputs, expected {size}.")
                else:
                    inp = AxisPerm(group)
            if isinstance(m, _CONV) and (m.groups != 1 or flattened):
                raise NotApplicable(
                    f"layer {name!r} ({type(m).__name__}, groups={m.groups}) is not supported"
                    " by permutation alignment."
                )
            out: AxisPerm | None = None
            if i != last:
                n_out = m.out_features if isinstance(m, nn.Linear) else m.out_channels
                sizes.append(int(n_out))
                owners.append(name)
                group = len(sizes) - 1
                out = AxisPerm(group)
            else:
                group = None
            ndim = m.weight.dim()
            axes[pre + "weight"] = (out, inp) + (None,) * (ndim - 2)
            if m.bias is not None:
                axes[pre + "bias"] = (out,)
            flattened = False
        elif isinstance(m, _BN):
            if group is not None:
                if m.num_features != sizes[group]:
                    raise NotApplicable(
                        f"layer {name!r} normalizes {m.num_features} features, expected"
                        f" {sizes[group]}."
                    )
                for leaf in ("weight", "bias", "running_mean", "running_var"):
                    if getattr(m, leaf, None) is not None:
                        axes[pre + leaf] = (AxisPerm(group),)
        elif isinstance(m, nn.Flatten):
            flattened = group is not None and i > weight_idx[0] and _after_conv(leaves, i)
        elif isinstance(m, _PASS_THROUGH):
            continue
        else:
            raise NotApplicable(
                f"permutation alignment does not support layer {name!r}"
                f" ({type(m).__name__}); it handles Sequential stacks of Linear, Conv,"
                " BatchNorm, activations, pooling and Flatten."
            )
    return PermutationSpec(tuple(sizes), axes, tuple(owners))


def _after_conv(leaves: list[tuple[str, nn.Module]], i: int) -> bool:
    """Whether the last weight layer before leaf ``i`` is a convolution."""
    for _, m in reversed(leaves[:i]):
        if isinstance(m, nn.Linear):
            return False
        if isinstance(m, _CONV):
            return True
    return False


def _index(perm: torch.Tensor, block: int) -> torch.Tensor:
    if block == 1:
        return perm
    return (perm.unsqueeze(1) * block + torch.arange(block, device=perm.device)).reshape(-1)


def _permute_tensor(
    t: torch.Tensor,
    axes: tuple[AxisPerm | None, ...],
    perms: Sequence[torch.Tensor],
    skip: int | None = None,
) -> torch.Tensor:
    for ax, ap in enumerate(axes):
        if ap is None or ax == skip:
            continue
        t = t.index_select(ax, _index(perms[ap.group].to(t.device), ap.block))
    return t


def permute_named(
    spec: PermutationSpec,
    tensors: dict[str, torch.Tensor],
    perms: Sequence[np.ndarray | torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Apply ``perms`` (unit ``i`` of group ``g`` becomes old unit ``perms[g][i]``) by name.

    Tensors the spec does not mention (the last layer's bias, counters) are returned as
    they are; the input is not changed.
    """
    if len(perms) != len(spec.sizes):
        raise ConfigError(f"give one permutation per group ({len(spec.sizes)}).")
    ps = [torch.as_tensor(np.asarray(p), dtype=torch.long) for p in perms]
    out = dict(tensors)
    for name, axes in spec.axes.items():
        if name in out:
            out[name] = _permute_tensor(out[name], axes, ps)
    return out


def permute_theta(
    space: ParamSpace,
    spec: PermutationSpec,
    theta: torch.Tensor,
    perms: Sequence[np.ndarray | torch.Tensor],
) -> torch.Tensor:
    """θ with its hidden units permuted by ``perms`` (see :func:`permute_named`)."""
    named = {k: v.clone() for k, v in space.unflatten(theta.detach()).items()}
    return space.flatten(permute_named(spec, named, perms))


def _unit_rows(t: torch.Tensor, ax: int, ap: AxisPerm) -> torch.Tensor:
    """``t`` as a matrix with one row per unit of the axis ``ax``."""
    shape = list(t.shape)
    split = shape[:ax] + [shape[ax] // ap.block, ap.block] + shape[ax + 1 :]
    return t.reshape(split).movedim(ax, 0).reshape(split[ax], -1)


def match_permutations(
    space: ParamSpace,
    theta_a: torch.Tensor,
    theta_b: torch.Tensor,
    *,
    max_iter: int = 100,
    seed: int = 0,
) -> Alignment:
    """Weight matching for any model :func:`permutation_spec` covers (MLPs, CNNs with BN).

    Maximizes ``Σ_tensors ⟨W^A, π(W^B)⟩`` over the unit permutations, one group at a time
    by ``linear_sum_assignment`` with the others fixed, in a seeded random group order until
    no permutation changes (Ainsworth et al. 2023). Only parameters in θ enter the score;
    apply the same permutations to B's running statistics with :func:`permute_named`.

    Raises:
        NotApplicable: for models outside :func:`permutation_spec`.

    Example:
        >>> from landscape.models import digits_cnn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(digits_cnn(4), load_data("digits")))
        >>> spec = permutation_spec(sp)
        >>> rng = np.random.default_rng(0)
        >>> pb = permute_theta(sp, spec, sp.theta0, [rng.permutation(n) for n in spec.sizes])
        >>> bool(torch.equal(match_permutations(sp, sp.theta0, pb).theta, sp.theta0))
        True
    """
    spec = permutation_spec(space)
    a = {k: v.double().cpu() for k, v in space.unflatten(theta_a.detach()).items()}
    b = {k: v.double().cpu() for k, v in space.unflatten(theta_b.detach()).items()}
    perms = [torch.arange(n) for n in spec.sizes]
    rng = np.random.default_rng(seed)
    users: list[list[tuple[str, int]]] = [[] for _ in spec.sizes]
    for name, axes in spec.axes.items():
        if name in a:
            for ax, ap in enumerate(axes):
                if ap is not None:
                    users[ap.group].append((name, ax))
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        changed = False
        for g in rng.permutation(len(spec.sizes)):
            n = spec.sizes[g]
            sim = torch.zeros(n, n, dtype=torch.float64)
            for name, ax in users[g]:
                axes = spec.axes[name]
                ap = axes[ax]
                assert ap is not None
                wb = _permute_tensor(b[name], axes, perms, skip=ax)
                sim += _unit_rows(a[name], ax, ap) @ _unit_rows(wb, ax, ap).T
            _, cols = linear_sum_assignment(sim.numpy(), maximize=True)
            new = torch.as_tensor(cols, dtype=torch.long)
            if not torch.equal(new, perms[g]):
                changed = True
                perms[g] = new
        if not changed:
            break
    perm_np = [p.numpy() for p in perms]
    aligned = permute_theta(space, spec, theta_b, perm_np)
    score = float((aligned.double().cpu() * theta_a.detach().double().cpu()).sum())
    return Alignment(aligned, perm_np, it, score)


# -- permutation specs of traced models: residual streams share one permutation ----------
_ADD_OPS = {"add", "add_", "iadd", "sub", "sub_", "isub", "mul", "mul_", "imul", "truediv", "div"}
_ELEMENTWISE = {
    "relu",
    "relu_",
    "tanh",
    "sigmoid",
    "gelu",
    "silu",
    "leaky_relu",
    "elu",
    "softplus",
    "relu6",
    "hardtanh",
    "dropout",
    "contiguous",
    "clone",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
}
_META = {"size", "dim", "shape", "numel", "getattr", "device", "dtype"}


@dataclass(frozen=True)
class _Feat:
    """What a traced value's unit axis is: its group and layout (``last``, ``channel``, ``flat``)."""

    group: int | None
    layout: str = "last"


class _UnionFind:
    """Permutation groups, merged where a residual stream forces one shared permutation."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.fixed: list[bool] = []
        self.owner: list[str] = []

    def new(self, n: int, owner: str) -> int:
        self.parent.append(len(self.parent))
        self.size.append(int(n))
        self.fixed.append(False)
        self.owner.append(owner)
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int, where: str) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.size[ra] != self.size[rb]:
            raise NotApplicable(
                f"{where} joins {self.size[ra]} and {self.size[rb]} units; cannot align it."
            )
        lo, hi = min(ra, rb), max(ra, rb)
        self.parent[hi] = lo
        self.fixed[lo] = self.fixed[lo] or self.fixed[hi]
        return lo

    def fix(self, g: int) -> None:
        self.fixed[self.find(g)] = True


def _op_name(node: Any) -> str:
    t = node.target
    return str(t if isinstance(t, str) else getattr(t, "__name__", repr(t)))


def traced_permutation_spec(module: nn.Module, names: set[str]) -> PermutationSpec:
    """Permutation spec of any ``torch.fx``-traceable model of supported layers.

    Every Linear/Conv layer opens a group for its output units. Where two values meet in an
    element-wise sum or product (a residual connection), their groups are merged, so the
    whole residual stream shares one permutation; a group that reaches the model's output,
    or meets an unpermuted value (such as the raw input), is fixed. BatchNorm and LayerNorm
    (over the unit axis) follow their input's group; activations, dropout, pooling,
    ``flatten`` and means over spatial axes pass it through.

    Args:
        module: the model.
        names: names of the tensors the spec may mention (parameters and buffers).

    Raises:
        NotApplicable: when the model does not trace, or an operation on permuted units is
            not one of the above (naming it).
    """
    import torch.fx as fx

    try:
        graph = fx.symbolic_trace(module).graph
    except Exception as exc:  # noqa: BLE001
        raise NotApplicable(
            f"permutation alignment could not trace the model with torch.fx"
            f" ({type(exc).__name__}); use nn.Sequential layers or a traceable forward."
        ) from None
    mods = dict(module.named_modules())
    uf = _UnionFind()
    state: dict[Any, Any] = {}
    module_group: dict[str, int] = {}
    module_input: dict[str, int | None] = {}
    axes_g: dict[str, tuple[tuple[int, int] | None, ...]] = {}  # (group, block) per axis

    def feat(a: Any) -> _Feat | None:
        v = state.get(a) if isinstance(a, fx.Node) else None
        return v if isinstance(v, _Feat) else None

    def grouped(args: Sequence[Any]) -> list[_Feat]:
        return [f for f in (feat(a) for a in args) if f is not None and f.group is not None]

    def record(name: str, ax: tuple[tuple[int, int] | None, ...]) -> None:
        if name not in names:
            return
        old = axes_g.get(name)
        if old is None:
            axes_g[name] = ax
            return
        for x, y in zip(old, ax, strict=True):  # a module called twice: same units
            if (x is None) != (y is None) or (x and y and x[1] != y[1]):
                raise NotApplicable(f"{name!r} is used on differently permuted inputs.")
            if x and y:
                uf.union(x[0], y[0], f"reuse of {name!r}")

    def unsupported(what: str) -> NotApplicable:
        return NotApplicable(
            f"permutation alignment does not support {what} on permuted units; it handles"
            " Linear, Conv, BatchNorm, LayerNorm, activations, pooling, flatten and residual"
            " sums."
        )

    for node in graph.nodes:
        args: list[Any] = []  # every node among the (nested) arguments
        fx.node.map_arg((node.args, node.kwargs), args.append)
        if node.op == "placeholder":
            state[node] = _Feat(None)
            continue
        if node.op == "get_attr":
            state[node] = "const"
            continue
        if node.op == "output":
            flat: list[Any] = []
            fx.node.map_arg(node.args, flat.append)
            for a in flat:
                f = feat(a)
                if f is not None and f.group is not None:
                    uf.fix(f.group)
            continue
        if node.op == "call_module":
            name = str(node.target)
            m = mods[name]
            pre = f"{name}."
            inp = feat(node.args[0]) if node.args else None
            g_in = inp.group if inp is not None else None
            if isinstance(m, (nn.Linear, *_CONV)):
                is_lin = isinstance(m, nn.Linear)
                n_in = int(m.in_features if isinstance(m, nn.Linear) else m.in_channels)
                n_out = int(m.out_features if isinstance(m, nn.Linear) else m.out_channels)
                if isinstance(m, _CONV) and m.groups != 1:
                    raise unsupported(f"grouped convolution {name!r}")
                in_ax: tuple[int, int] | None = None
                if g_in is not None:
                    size = uf.size[uf.find(g_in)]
                    assert inp is not None
                    if is_lin and inp.layout == "flat" and n_in % size == 0:
                        in_ax = (g_in, n_in // size)
                    elif (is_lin and inp.layout == "last") or (
                        not is_lin and inp.layout == "channel"
                    ):
                        if n_in != size:
                            raise NotApplicable(
                                f"layer {name!r} takes {n_in} inputs, expected {size}."
                            )
                        in_ax = (g_in, 1)
                    else:
                        raise unsupported(f"layer {name!r} on a {inp.layout} layout")
                if name not in module_group:
                    module_group[name] = uf.new(n_out, name)
                g_out = module_group[name]
                out_ax = (g_out, 1)
                record(pre + "weight", (out_ax, in_ax) + (None,) * (m.weight.dim() - 2))
                if m.bias is not None:
                    record(pre + "bias", (out_ax,))
                state[node] = _Feat(g_out, "last" if is_lin else "channel")
            elif isinstance(m, (*_BN, nn.LayerNorm)):
                if g_in is not None:
                    assert inp is not None
                    size = uf.size[uf.find(g_in)]
                    if isinstance(m, nn.LayerNorm) and (
                        inp.layout != "last" or tuple(m.normalized_shape) != (size,)
                    ):
                        raise unsupported(f"LayerNorm {name!r} over more than the unit axis")
                    if isinstance(m, _BN) and m.num_features != size:
                        raise NotApplicable(
                            f"layer {name!r} normalizes {m.num_features} features, expected {size}."
                        )
                    for leaf in ("weight", "bias", "running_mean", "running_var"):
                        if getattr(m, leaf, None) is not None:
                            record(pre + leaf, ((g_in, 1),))
                state[node] = inp if inp is not None else _Feat(None)
            elif isinstance(m, nn.Flatten):
                if inp is not None and inp.group is not None and inp.layout == "channel":
                    if m.start_dim != 1:
                        raise unsupported(f"Flatten {name!r} with start_dim={m.start_dim}")
                    state[node] = _Feat(inp.group, "flat")
                else:
                    state[node] = inp if inp is not None else _Feat(None)
            elif isinstance(m, _PASS_THROUGH):
                state[node] = inp if inp is not None else _Feat(None)
            elif not grouped(args) and not any(True for _ in m.parameters()):
                state[node] = _Feat(None)
            else:
                raise unsupported(f"layer {name!r} ({type(m).__name__})")
            module_input[name] = g_in
            continue
        op = _op_name(node)
        gs = grouped(args)
        if op in _META:
            state[node] = "meta"
        elif op in _ADD_OPS:
            tensors = [feat(a) for a in args if isinstance(a, fx.Node) and feat(a) is not None]
            if any(state.get(a) == "const" for a in args if isinstance(a, fx.Node)) and gs:
                raise unsupported(f"{op} with a stored tensor")
            if gs:
                g = gs[0].group
                assert g is not None
                for f in gs[1:]:
                    if f.layout != gs[0].layout:
                        raise unsupported(f"{op} of differently shaped values")
                    g = uf.union(g, f.group, f"the residual sum {node.name!r}")  # type: ignore[arg-type]
                if len(gs) < len(tensors):
                    uf.fix(g)  # a permuted stream meets an unpermuted value
                state[node] = _Feat(g, gs[0].layout)
            else:
                state[node] = _Feat(None)
        elif op in _ELEMENTWISE:
            f = feat(node.args[0]) if node.args else None
            state[node] = f if f is not None else _Feat(None)
        elif op == "flatten":
            f = feat(node.args[0])
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            if f is not None and f.group is not None and f.layout == "channel":
                if start != 1:
                    raise unsupported(f"flatten from dim {start}")
                state[node] = _Feat(f.group, "flat")
            else:
                state[node] = f if f is not None else _Feat(None)
        elif op in ("mean", "amax", "sum") and gs:
            f = gs[0]
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
            keep = bool(node.kwargs.get("keepdim", len(node.args) > 2 and node.args[2]))
            if f.layout != "channel" or not dims or 1 in dims or any(d < 0 for d in dims):
                raise unsupported(f"{op} over dims {dims}")
            state[node] = _Feat(f.group, "channel" if keep else "last")
        elif gs:
            raise unsupported(f"the operation {op!r}")
        else:
            state[node] = _Feat(None)
    roots: dict[int, int] = {}
    sizes: list[int] = []
    owners: list[str] = []
    for g in range(len(uf.parent)):
        r = uf.find(g)
        if not uf.fixed[r] and r not in roots:
            roots[r] = len(sizes)
            sizes.append(uf.size[r])
            owners.append(uf.owner[r])
    if not sizes:
        raise NotApplicable("the network has no permutable hidden units (no unit symmetry).")
    axes: dict[str, tuple[AxisPerm | None, ...]] = {}
    for name, ax in axes_g.items():
        out: list[AxisPerm | None] = []
        for entry in ax:
            root = uf.find(entry[0]) if entry is not None else -1
            out.append(AxisPerm(roots[root], entry[1]) if entry and root in roots else None)
        if any(a is not None for a in out):
            axes[name] = tuple(out)
    return PermutationSpec(tuple(sizes), axes, tuple(owners))
