"""Axis labels for surfaces: what each axis of a slice moves along."""

from __future__ import annotations

from landscape.surface.result import Surface

# Symbols of the directions per axis, as in Li et al. (2018): f(α, β) = L(θ* + αδ + βη).
_RANDOM_SYMBOLS = (r"$\delta$", r"$\eta$", r"$\zeta$")
_STEP_SYMBOLS = (r"$\alpha$", r"$\beta$", r"$\gamma$")
_NORMALIZATION = {"filter": "filter-normalized", "layer": "layer-normalized"}


def axis_label(surf: Surface, i: int) -> str:
    """A label (matplotlib mathtext) saying what axis ``i`` of ``surf`` moves along.

    Random directions read ``δ (filter-normalized)``, ``η (…)``, ``ζ (…)``; PCA axes
    ``PC1 (62.3% var.)``; Hessian eigenvectors ``v₁ (Hessian eigenvector)``;
    interpolation ``α (θ₀ → θ₁)``; planes ``α (plane of θ₀, θ₁, θ₂)``.

    Example:
        >>> import numpy as np
        >>> a = np.linspace(-1.0, 1.0, 3)
        >>> s = Surface((a, a), np.zeros((3, 3)), np.zeros((3, 3)), kind="pca",
        ...             explained_variance=(0.623, 0.211))
        >>> axis_label(s, 0)
        'PC1 (62.3% var.)'
    """
    norm = _NORMALIZATION.get(surf.normalization)
    kind = surf.kind
    if kind == "pca":
        ev = surf.explained_variance
        if ev is not None and i < len(ev):
            return f"PC{i + 1} ({100.0 * ev[i]:.1f}% var.)"
        return f"PC{i + 1}"
    if kind == "eigen":
        return rf"$v_{i + 1}$ (Hessian eigenvector)"
    if kind == "interpolation" and i == 0:
        return rf"{_STEP_SYMBOLS[0]} ($\theta_0 \to \theta_1$)"
    if kind == "plane" and i < 2:
        return rf"{_STEP_SYMBOLS[i]} (plane of $\theta_0, \theta_1, \theta_2$)"
    sym = _RANDOM_SYMBOLS[i]
    return f"{sym} ({norm})" if norm else sym
