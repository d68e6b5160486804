"""Fisher-Rao norm (Liang, Poggio, Rakhlin & Stokes 2019).

``‖θ‖²_fr = θᵀ F(θ) θ``. With the empirical Fisher ``F = (1/N) Σ_i ∇ℓ_i ∇ℓ_iᵀ``,

    ‖θ‖²_fr = (1/N) Σ_i ⟨θ, ∇_θ ℓ_i⟩² = (1/N) Σ_i ⟨∂ℓ_i/∂f, J_i θ⟩²,

where ``J_i θ`` is the directional derivative of the outputs along θ (one forward-mode
pass per chunk, no per-sample gradients). For a network whose output is positively
homogeneous of degree ``L+1`` in θ (bias-free ReLU/linear nets with ``L`` hidden layers;
an affine model has ``L = 0``), Euler's identity ``J θ = (L+1) f`` gives the closed form
``‖θ‖²_fr = (L+1)² (1/N) Σ_i ⟨∂ℓ_i/∂f, f_i⟩²``.

With ``fisher="model"`` the Fisher is the model's own (labels drawn from the predictive
distribution), which for cross-entropy and for the Gaussian MSE equals the generalized
Gauss-Newton ``G = (1/N) Σ_i J_iᵀ ∇²_f ℓ_i J_i``: ``‖θ‖²_fr = (1/N) Σ_i (J_iθ)ᵀ ∇²_f ℓ_i (J_iθ)``.

Invariance: ``⟨θ, ∇ℓ(θ)⟩ = d/dt ℓ((1+t)θ)`` at ``t = 0``, and a function-preserving
positive rescaling ``θ → s⊙θ`` commutes with ``θ → (1+t)θ``; so the norm is invariant to
the layer and neuron rescalings of ReLU networks (with or without biases).
"""

from __future__ import annotations

import math

import torch
from torch.func import grad, jvp

from landscape.engine import ParamSpace
from landscape.errors import ConfigError, NotApplicable
from landscape.metrics._util import check_split, point

FISHERS = ("empirical", "model")


def fisher_rao_norm(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    fisher: str = "empirical",
    split: str = "train",
) -> float:
    """Fisher-Rao norm ``sqrt(θᵀ F θ)`` of the parameters.

    Formula: empirical ``‖θ‖²_fr = (1/N) Σ_i ⟨∂ℓ_i/∂f, J_iθ⟩²`` (``= θᵀ F_emp θ`` with
    ``CurvatureOperator(kind="fisher")``); model ``‖θ‖²_fr = (1/N) Σ_i (J_iθ)ᵀ∇²_fℓ_i(J_iθ)``
    (``= θᵀ G θ`` with ``kind="ggn"``). For bias-free ReLU nets with ``L`` hidden layers
    the empirical form equals ``(L+1)² E[⟨∂ℓ/∂f, f⟩²]``. Reference: Liang et al. 2019,
    "Fisher-Rao metric, geometry, and complexity of neural networks". Invariance:
    invariant to function-preserving positive rescalings of ReLU networks.

    Args:
        space: the model, data and loss (not TorchScript: needs ``torch.func``).
        theta: the point (default the model's parameters).
        fisher: ``empirical`` (observed labels) or ``model`` (the GGN / model Fisher).
        split: data split.

    Returns:
        ``‖θ‖_fr`` (the square root of ``θᵀFθ``).

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic", max_samples=64))
        >>> fisher_rao_norm(ParamSpace(b)) > 0
        True
    """
    if fisher not in FISHERS:
        raise ConfigError(f"unknown fisher {fisher!r}; use one of {', '.join(FISHERS)}.")
    if space.scripted:
        raise NotApplicable(
            "the Fisher-Rao norm needs torch.func, which TorchScript models do not support;"
            " give a state_dict with --model, or a torch.export program."
        )
    check_split(space, split)
    th = point(space, theta)
    loss = space.bundle.loss
    total = torch.zeros((), dtype=torch.float64, device=th.device)
    for x, y in space.chunks(split):

        def f(t: torch.Tensor, x: torch.Tensor = x) -> torch.Tensor:
            return space.forward(t, x)

        out, fdot = jvp(f, (th,), (th,))[:2]
        out, fdot = out.detach(), fdot.detach()

        def lo(o: torch.Tensor, y: torch.Tensor = y) -> torch.Tensor:
            return loss.chunk_sum(o, y)

        if fisher == "empirical":
            dl = grad(lo)(out)
            s = (dl * fdot).reshape(out.shape[0], -1).sum(dim=1)
            total += (s.to(torch.float64) ** 2).sum()
        else:
            hv = jvp(grad(lo), (out,), (fdot,))[1]
            total += (fdot * hv).to(torch.float64).sum()
    sq = float(total) / space.num_units(split)
    return math.sqrt(max(sq, 0.0))
