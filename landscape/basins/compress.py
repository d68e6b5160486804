"""Compressibility: how much of a trained network can be dropped or coarsened for free.

Three retrain-free measures, each relative to a loss budget Δ (the training loss may rise
from ``L(θ)`` to at most ``L(θ) + Δ``):

* **Prunable fraction**: the largest fraction ``p`` of weights (global magnitude pruning over
  weight matrices and kernels; biases and norm parameters kept unless asked) that can be set
  to zero. Found on a grid of ``p`` then refined by bisection below the first grid point
  that breaks the budget.
* **Quantization bits**: the fewest bits ``b`` (1…16) of symmetric uniform per-tensor
  quantization (``2^b − 1`` levels over ``[−max|w|, max|w|]``; one bit means the two levels
  ``±max|w|``) of every parameter.
* **Description length** (bits): a two-part code for the pruned-then-quantized network.
  After pruning at ``p``, the fewest bits ``b'`` that keep the budget are chosen for the
  kept values; the length is ``d · H₂(p)`` (which entries are kept: binary entropy of the
  mask, ``H₂(p) = −p log₂ p − (1−p) log₂(1−p)``) ``+ Σ_tensors k_t · Ĥ_t`` (kept values,
  ``Ĥ_t`` the empirical entropy in bits of tensor ``t``'s quantized integer codes, i.e. what
  an ideal entropy coder would spend) ``+ 32 · #tensors`` (one float32 scale per tensor).
  It is an upper bound on the bits needed to state a network with loss within Δ, and is
  comparable between networks of the same architecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from landscape.basins._batched import loss_many
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.progress import Progress, tracked
from landscape.results import _json_float

MAX_BITS = 16


@dataclass(frozen=True)
class Compressibility:
    """Retrain-free compressibility of a network at a loss budget Δ.

    Attributes:
        prunable_fraction: largest fraction of prunable weights zeroed within budget.
        quant_bits: fewest uniform quantization bits within budget (``MAX_BITS + 1`` if none).
        description_bits: two-part code length (see module docstring).
        description_bits_per_param: ``description_bits / dim``.
        pruned_quant_bits: bits used for the kept values after pruning.
        loss: ``L(θ)``; ``delta``: Δ.
        num_prunable: number of parameters eligible for pruning; ``dim``: all parameters.
    """

    prunable_fraction: float
    quant_bits: int
    description_bits: float
    description_bits_per_param: float
    pruned_quant_bits: int
    loss: float
    delta: float
    num_prunable: int
    dim: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scalars."""
        return {
            "prunable_fraction": _json_float(self.prunable_fraction),
            "quant_bits": int(self.quant_bits),
            "description_bits": _json_float(self.description_bits),
            "description_bits_per_param": _json_float(self.description_bits_per_param),
            "pruned_quant_bits": int(self.pruned_quant_bits),
            "loss": _json_float(self.loss),
            "delta": _json_float(self.delta),
            "num_prunable": int(self.num_prunable),
            "dim": int(self.dim),
        }


def _prunable_mask(space: ParamSpace, include_biases: bool) -> torch.Tensor:
    mask = torch.zeros(space.dim, dtype=torch.bool, device=space.device)
    for info in space.infos:
        if info.role == "weight" or include_biases:
            mask[info.slice] = True
    return mask


def prune(theta: torch.Tensor, order: torch.Tensor, fraction: float) -> torch.Tensor:
    """Zero the ``round(fraction · len(order))`` entries listed first in ``order``.

    Example:
        >>> prune(torch.tensor([3.0, -1.0, 2.0]), torch.tensor([1, 2, 0]), 0.67).tolist()
        [3.0, 0.0, 0.0]
    """
    k = int(round(fraction * order.numel()))
    out = theta.clone()
    out[order[:k]] = 0
    return out


def quantize(space: ParamSpace, theta: torch.Tensor, bits: int) -> tuple[torch.Tensor, list]:
    """Symmetric uniform per-tensor quantization with ``2^bits − 1`` levels (two for one bit).

    Returns the dequantized θ and, per tensor, its integer codes (for entropy coding).

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> q, codes = quantize(sp, sp.theta0, 2)
        >>> sorted(set(codes[0].tolist())) <= [-1, 0, 1]
        True
    """
    out = theta.clone()
    codes = []
    half = 2 ** (bits - 1) - 1 if bits > 1 else 1
    for info in space.infos:
        w = theta[info.slice]
        m = float(w.abs().max()) if w.numel() else 0.0
        if m == 0.0:
            codes.append(torch.zeros_like(w, dtype=torch.long))
            continue
        step = m / half
        c = torch.round(w / step).clamp(-half, half)
        if bits == 1:  # two levels, ±max|w|
            c = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
        codes.append(c.long())
        out[info.slice] = c * step
    return out, codes


def _entropy_bits(codes: torch.Tensor) -> float:
    if codes.numel() == 0:
        return 0.0
    _, counts = torch.unique(codes, return_counts=True)
    p = counts.double() / codes.numel()
    return float(-(p * torch.log2(p)).sum()) * codes.numel()


def _h2(p: float) -> float:
    if p <= 0 or p >= 1:
        return 0.0
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def compressibility(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    delta: float = 0.05,
    include_biases: bool = False,
    grid: int = 20,
    bisect_steps: int = 8,
    progress: Progress | None = None,
) -> Compressibility:
    """Prunable fraction, quantization bits and description length at loss budget Δ.

    Args:
        space: the parameter space.
        theta: the network (default ``space.theta0``); not modified.
        delta: allowed rise of the mean training loss.
        include_biases: also prune biases and norm parameters.
        grid: number of pruning fractions tried before bisection.
        bisect_steps: bisection steps on the pruning fraction.
        progress: optional progress reporter.

    Returns:
        The compressibility measures.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> 0 <= compressibility(sp, delta=0.05).prunable_fraction <= 1
        True
    """
    if delta <= 0 or not math.isfinite(delta):
        raise ConfigError(f"the compressibility budget delta must be positive, got {delta}.")
    theta = (space.theta0 if theta is None else theta).detach().clone()
    l0 = float(space.evaluate(theta, "train")[0])
    budget = l0 + delta
    mask = _prunable_mask(space, include_biases)
    idx = mask.nonzero().squeeze(1)
    order = idx[torch.argsort(theta[idx].abs(), stable=True)]
    n_pr = int(order.numel())

    def ok(thetas: list[torch.Tensor]) -> np.ndarray:
        vals = loss_many(space, torch.stack(thetas)).double().cpu().numpy()
        return np.isfinite(vals) & (vals <= budget)

    with tracked(progress, "compressibility", 4) as task:
        fracs = np.linspace(0.0, 1.0, grid + 1)
        good = ok([prune(theta, order, float(f)) for f in fracs]) if n_pr else np.ones(1, bool)
        task.advance()
        if n_pr == 0:
            p_best = 0.0
        else:
            first_bad = int(np.argmin(good)) if not good.all() else len(fracs)
            if first_bad == len(fracs):
                p_best = 1.0
            else:
                lo, hi = float(fracs[max(first_bad - 1, 0)]), float(fracs[first_bad])
                if first_bad == 0:
                    lo = hi = 0.0
                for _ in range(bisect_steps if hi > lo else 0):
                    mid = 0.5 * (lo + hi)
                    if ok([prune(theta, order, mid)])[0]:
                        lo = mid
                    else:
                        hi = mid
                p_best = lo
        task.advance()
        bits = list(range(1, MAX_BITS + 1))
        quants = [quantize(space, theta, b)[0] for b in bits]
        qgood = ok(quants)
        q_bits = bits[int(np.argmax(qgood))] if qgood.any() else MAX_BITS + 1
        task.advance()
        if n_pr:
            p_best = int(round(p_best * n_pr)) / n_pr  # the fraction actually zeroed
        pruned = prune(theta, order, p_best)
        pq = [quantize(space, pruned, b) for b in bits]
        pgood = ok([q for q, _ in pq])
        if pgood.any():
            b_best = bits[int(np.argmax(pgood))]
            _, codes = pq[b_best - 1]
            kept = (pruned != 0) | ~mask
            value_bits = 0.0
            for info, c in zip(space.infos, codes, strict=True):
                value_bits += _entropy_bits(c[kept[info.slice]])
            mask_bits = n_pr * _h2(p_best)
            dl = mask_bits + value_bits + 32.0 * len(space.infos)
        else:
            b_best = MAX_BITS + 1
            dl = 32.0 * space.dim
        task.advance()
    return Compressibility(
        prunable_fraction=float(p_best),
        quant_bits=int(q_bits),
        description_bits=float(dl),
        description_bits_per_param=float(dl) / max(1, space.dim),
        pruned_quant_bits=int(b_best),
        loss=l0,
        delta=float(delta),
        num_prunable=n_pr,
        dim=space.dim,
    )
