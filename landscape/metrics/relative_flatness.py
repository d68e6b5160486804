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

import torch

from landscape.engine import CurvatureOperator, Operator, ParamInfo, ParamSpace
from landscape.errors import ConfigError
from landscape.metrics._hessian import hutchpp_trace
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
    raise ConfigError(
        "relative flatness needs a Linear layer and the model has none; pass layer= the"
        " name of a 2-D weight."
    )


class LayerGramOperator:
    """``B(Z) = Wᵀ H_W (W Z)`` on ``Z ∈ R^{m×m}``: its trace is the relative flatness.

    Args:
        op: the Hessian of the whole parameter vector.
        info: the layer's parameter.
        weight: the layer's weight matrix ``W`` (``d×m``) at the point.
    """

    def __init__(self, op: Operator, info: ParamInfo, weight: torch.Tensor) -> None:
        self.op = op
        self.info = info
        self.w = weight.to(device=op.device, dtype=op.dtype)
        self.m = int(weight.shape[1])
        self.dim = self.m * self.m
        self.device = op.device
        self.dtype = op.dtype
        self.matvecs = 0

    def _embed(self, blocks: torch.Tensor) -> torch.Tensor:
        full = torch.zeros(blocks.shape[0], self.op.dim, device=self.device, dtype=self.dtype)
        full[:, self.info.slice] = blocks.reshape(blocks.shape[0], -1)
        return full

    def matmat(self, zs: torch.Tensor) -> torch.Tensor:
        """Apply ``B`` to each row of ``zs`` (shape ``(k, m²)``)."""
        zs = zs.to(device=self.device, dtype=self.dtype)
        if zs.dim() == 1:
            return self.matvec(zs)
        k = zs.shape[0]
        self.matvecs += k
        u = self.w @ zs.view(k, self.m, self.m)  # (k, d, m)
        hv = self.op.matmat(self._embed(u))[:, self.info.slice].reshape(k, -1, self.m)
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
        op: the Hessian operator at θ (default ``CurvatureOperator(space, theta)``).
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
    op = CurvatureOperator(space, th) if op is None else op
    if op.dim != space.dim:
        raise ConfigError(f"op acts on {op.dim} coordinates but θ has {space.dim}.")
    w = th[info.slice].view(info.shape)
    d, m = info.shape
    cost = min(d, m) * m
    if exact is None:
        exact = cost <= EXACT_MAX_MATVECS
    if not exact:
        return hutchpp_trace(
            LayerGramOperator(op, info, w), num_matvecs, seed=seed, progress=progress
        )
    wd = w.to(device=op.device, dtype=op.dtype)
    batch = 32
    total = torch.zeros((), dtype=torch.float64)
    with tracked(progress, "relative flatness", cost) as task:
        if m <= d:
            gram = LayerGramOperator(op, info, w)
            eye = torch.eye(m * m, device=op.device, dtype=op.dtype)
            for i in range(0, m * m, batch):
                rows = eye[i : i + batch]
                total += (rows * gram.matmat(rows)).sum().to(torch.float64).cpu()
                task.advance(rows.shape[0])
        else:
            g = wd @ wd.T  # (d, d)
            full_eye = torch.eye(d * m, device=op.device, dtype=op.dtype)
            cols = []
            for i in range(0, d * m, batch):
                rows = full_eye[i : i + batch]
                emb = torch.zeros(rows.shape[0], op.dim, device=op.device, dtype=op.dtype)
                emb[:, info.slice] = rows
                cols.append(op.matmat(emb)[:, info.slice])
                task.advance(rows.shape[0])
            h = torch.cat(cols).reshape(d, m, d, m)
            t = torch.einsum("sjtj->st", h)
            total += (g * t).sum().to(torch.float64).cpu()
    return Estimate(float(total), 0.0, cost, "exact")
