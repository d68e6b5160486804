"""Relative flatness of a feature layer (Petzka, Kamp, Adilova, Sminchisescu & Boley 2021).

For the weight matrix ``W ∈ R^{d×m}`` of a chosen layer (default: the last ``Linear``,
whose input is the feature vector φ(x)), with rows ``w_s`` (one per output neuron),

    κ_Tr(W) = Σ_{s,s'=1}^{d} ⟨w_s, w_s'⟩ · Tr(H_{s,s'}),

where ``H_{s,s'} ∈ R^{m×m}`` is the block of the loss Hessian between rows ``s`` and
``s'``. Writing ``G = W Wᵀ`` and ``u_{jk}`` for the layer-shaped matrix whose column ``j``
is column ``k`` of ``W`` (zeros elsewhere), ``κ = Σ_{j,k} u_{jk}ᵀ H u_{jk} = Tr(B)`` with
the symmetric operator ``B(Z) = Wᵀ H_W(W Z)`` on ``Z ∈ R^{m×m}`` (``H_W`` the layer block
of the Hessian). So κ is computed from Hessian-vector products restricted to the layer:
exactly with ``min(d, m)·m`` products, or by Hutch++ on ``B``.

Invariance: unchanged when the feature layer is rescaled by ``1/α`` and the layers below
by α (Petzka et al. 2021, layer-wise reparameterizations; the features scale by α, the
block Hessian by α², ``⟨w_s, w_s'⟩`` by 1/α²) and by rescalings of lower layers among
themselves; not by neuron-wise rescalings of the features, except at a canonical point.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.func import functional_call

from landscape.engine import (
    CachedReverse,
    ChunkSumOperator,
    CurvatureOperator,
    HVPStrategy,
    LinearOperatorBase,
    Operator,
    ParamInfo,
    ParamSpace,
    RestrictedOperator,
    Reverse,
)
from landscape.engine.attention import math_attention
from landscape.engine.curvature import CACHE_MAX_CHUNKS
from landscape.errors import ConfigError, NotApplicable
from landscape.hessian import hutchpp_trace
from landscape.metrics._util import point, positive_int
from landscape.progress import Progress, tracked
from landscape.results import Estimate

EXACT_MAX_MATVECS = 512


def feature_layer(space: ParamSpace, layer: str | None = None) -> ParamInfo:
    """The 2-D weight tensor relative flatness is taken on.

    Args:
        space: the parameter space.
        layer: a parameter name (``"4.weight"``) or module name (``"4"``); default the
            weight of the last ``nn.Linear``.

    Returns:
        The :class:`ParamInfo` of that weight.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> m = nn.Sequential(nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 3))
        >>> feature_layer(ParamSpace(ModelBundle.from_module(m, load_data("synthetic")))).name
        '2.weight'
    """
    if layer is not None:
        for info in space.infos:
            if info.name in (layer, f"{layer}.weight"):
                if len(info.shape) != 2:
                    raise ConfigError(
                        f"layer {layer!r} has a weight of shape {info.shape}; relative flatness"
                        " needs a 2-D (Linear) weight, e.g. the last Linear layer."
                    )
                return info
        names = ", ".join(i.name for i in space.infos if len(i.shape) == 2) or "none"
        raise ConfigError(f"no 2-D weight named {layer!r}; choose one of: {names}.")
    for info in reversed(space.infos):
        if info.module_type == "Linear" and info.role == "weight" and len(info.shape) == 2:
            return info
    raise NotApplicable(
        "relative flatness needs a Linear layer and the model has none; pass layer= the"
        " name of a 2-D weight."
    )


def _block(op: Operator, info: ParamInfo) -> RestrictedOperator:
    """The block ``P A Pᵀ`` of a full-θ operator on one parameter tensor."""
    return RestrictedOperator(op, torch.arange(info.offset, info.offset + info.numel))


class LayerHessian(ChunkSumOperator):
    """The Hessian block of one parameter tensor, with gradients taken through it only.

    The rest of θ is held constant, so autograd records only the operations downstream
    of the layer and each product costs about one backward pass through the layers after
    it (for the last Linear: the head only). Per-chunk gradient graphs are kept
    (:class:`~landscape.engine.CachedReverse`) when the data has at most
    :data:`~landscape.engine.curvature.CACHE_MAX_CHUNKS` chunks, else rebuilt per pass
    (:class:`~landscape.engine.Reverse`). BatchNorm runs on the model's own kernels.

    Args:
        space: the model, data and loss (not TorchScript).
        theta: the point.
        info: the parameter tensor.
        split: data split.
    """

    kind = "hessian"
    affine_batchnorm = False

    def __init__(
        self, space: ParamSpace, theta: torch.Tensor, info: ParamInfo, split: str = "train"
    ) -> None:
        super().__init__(space, theta, split=split, dim=info.numel)
        self.info = info
        self.hvp: HVPStrategy
        if self._num_chunks() <= CACHE_MAX_CHUNKS:
            self.hvp = CachedReverse(self._graph)
        else:
            self.hvp = Reverse(self._graph)
        self.strategy = self.hvp.name

    def _graph(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        w = self.theta[self.info.slice].clone().requires_grad_(True)
        params = self.space.unflatten(self.theta)  # constants: no graph upstream of W
        params[self.info.name] = w.view(self.info.shape)
        params.update(self.space.buffers)
        with torch.enable_grad(), math_attention():
            out = functional_call(self.space.bundle.module, params, (x,), strict=False)
            loss = self.space.bundle.loss.chunk_sum(out, y)
            (g,) = torch.autograd.grad(loss, w, create_graph=True)
        return g, [w]

    def _chunks(self) -> Iterable[Any]:
        return self.hvp.chunks(self.space.chunks(self.split))

    def _chunk_matvec(self, chunk: Any, v: torch.Tensor) -> torch.Tensor:
        return self.hvp.matvec(chunk, v)

    def _chunk_matmat(self, chunk: Any, vs: torch.Tensor) -> torch.Tensor:
        return self.hvp.matmat(chunk, vs)

    def _traced(self) -> bool:
        return self.hvp.traced

    def release(self) -> None:
        """Free the kept gradient graphs."""
        self.hvp.release()


class LayerGramOperator(LinearOperatorBase):
    """``B(Z) = Wᵀ H_W (W Z)`` on ``Z ∈ R^{m×m}``: its trace is the relative flatness.

    Args:
        block: the Hessian block ``H_W`` of the layer (an operator on ``R^{d·m}``).
        weight: the layer's weight matrix ``W`` (``d×m``) at the point.
    """

    def __init__(self, block: Operator, weight: torch.Tensor) -> None:
        self.block = block
        self.w = weight.to(device=block.device, dtype=block.dtype)
        self.m = int(weight.shape[1])
        self.dim = self.m * self.m
        self.device = block.device
        self.dtype = block.dtype
        self.matvecs = 0

    def matmat(self, zs: torch.Tensor) -> torch.Tensor:
        """Apply ``B`` to each row of ``zs`` (shape ``(k, m²)``)."""
        zs = zs.to(device=self.device, dtype=self.dtype).reshape(-1, self.dim)
        k = zs.shape[0]
        self.matvecs += k
        u = self.w @ zs.view(k, self.m, self.m)  # (k, d, m)
        hv = self.block.matmat(u.reshape(k, -1)).reshape(k, -1, self.m)
        return (self.w.T @ hv).reshape(k, -1)

    def matvec(self, z: torch.Tensor) -> torch.Tensor:
        """Apply ``B`` to one vector of length ``m²``."""
        return self.matmat(z.reshape(1, -1))[0]


def relative_flatness(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    layer: str | None = None,
    op: Operator | None = None,
    exact: bool | None = None,
    num_matvecs: int = 99,
    seed: int = 0,
    progress: Progress | None = None,
) -> Estimate:
    """Relative flatness κ_Tr of a layer from layer-restricted Hessian-vector products.

    Formula: ``κ_Tr(W) = Σ_{s,s'} ⟨w_s, w_s'⟩ Tr(H_{s,s'})`` (rows ``w_s`` of ``W``,
    ``H_{s,s'}`` the Hessian block between rows ``s`` and ``s'``). Reference: Petzka et al.
    2021, "Relative flatness and generalization", Def. 3. Invariance: layer-wise
    reparameterizations around the feature layer (see the module docstring).

    Args:
        space: the model, data and loss.
        theta: the point (default the model's parameters).
        layer: parameter or module name of a 2-D weight (default the last Linear's).
        op: a Hessian operator on all of θ to restrict to the layer (default: products
            through the layer only, see :class:`LayerHessian`).
        exact: exact (``min(d,m)·m`` products) or Hutch++; default exact when that
            needs at most 512 products.
        num_matvecs: Hutch++ budget when not exact.
        seed: seed of the Hutch++ probes.
        progress: optional progress reporter.

    Returns:
        An :class:`Estimate` (stderr 0 and method ``exact`` when exact).

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> m = nn.Sequential(nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 3))
        >>> b = ModelBundle.from_module(m, load_data("synthetic", max_samples=64))
        >>> relative_flatness(ParamSpace(b)).method
        'exact'
    """
    th = point(space, theta)
    info = feature_layer(space, layer)
    positive_int("num_matvecs", num_matvecs, 3)
    if op is not None:
        if op.dim != space.dim:
            raise ConfigError(f"op acts on {op.dim} coordinates but θ has {space.dim}.")
        block: Operator = _block(op, info)
    elif space.scripted:
        block = _block(CurvatureOperator(space, th), info)
    else:
        block = LayerHessian(space, th, info)
    w = th[info.slice].view(info.shape)
    d, m = info.shape
    cost = min(d, m) * m
    if exact is None:
        exact = cost <= EXACT_MAX_MATVECS
    gram = LayerGramOperator(block, w)
    if not exact:
        return hutchpp_trace(gram, num_matvecs, seed=seed, progress=progress)
    wd = w.to(device=block.device, dtype=block.dtype)
    batch = 32
    total = torch.zeros((), dtype=torch.float64)
    with tracked(progress, "relative flatness", cost) as task:
        if m <= d:
            eye = torch.eye(m * m, device=block.device, dtype=block.dtype)
            for i in range(0, m * m, batch):
                rows = eye[i : i + batch]
                total += (rows * gram.matmat(rows)).sum().to(torch.float64).cpu()
                task.advance(rows.shape[0])
        else:
            eye = torch.eye(d * m, device=block.device, dtype=block.dtype)
            cols = []
            for i in range(0, d * m, batch):
                cols.append(block.matmat(eye[i : i + batch]))
                task.advance(min(batch, d * m - i))
            h = torch.cat(cols).reshape(d, m, d, m)
            t = torch.einsum("sjtj->st", h)
            total += ((wd @ wd.T) * t).sum().to(torch.float64).cpu()
    return Estimate(float(total), 0.0, cost, "exact")
