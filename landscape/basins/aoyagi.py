"""Exact learning coefficients of linear networks (Aoyagi & Watanabe 2005; Aoyagi 2024).

The real log canonical threshold λ of a deep linear network ``x ↦ W_L ⋯ W_1 x`` with
widths ``H_0`` (input), ``H_1 … H_{L-1}`` (hidden), ``H_L`` (output), fitted to a true map
of rank ``r``, is given by Aoyagi (2024, *Consideration on the learning efficiency of
multiple-layered neural networks with linear units*, Theorem 1). Write ``M_i = H_i − r``.
There is a set ``Σ`` of ``ℓ + 1 ≥ 2`` indices (so ``ℓ ≥ 1``) with

* ``max{M_σ : σ ∈ Σ} < min{M_k : k ∉ Σ}``,
* ``Σ_{σ∈Σ} M_σ ≥ ℓ · max{M_σ : σ ∈ Σ}``,
* ``Σ_{σ∈Σ} M_σ < ℓ · min{M_k : k ∉ Σ}`` (vacuous when Σ is every index).

With ``S = Σ_{σ∈Σ} M_σ``, ``M = ⌈S/ℓ⌉ − 1`` and ``a = S − ℓM`` (so ``1 ≤ a ≤ ℓ``)::

    λ = (−r² + r(H_0 + H_L))/2 + a(ℓ − a)/(4ℓ) − ℓ(ℓ − 1)/4 · (S/ℓ)² + ½ Σ_{σ<τ ∈ Σ} M_σ M_τ

A one-element set (``ℓ = 0``) is not allowed: the formula divides by ``ℓ``. (Accepting it
returns only the first term, e.g. 11 instead of 16.5 for widths 6, 8, 5, 7 and rank 2.)
Because the first condition forces Σ to hold the ``ℓ + 1`` smallest ``M_i``, we try
``ℓ = 1, 2, …`` on the sorted values and take the first that satisfies all three.

For two layers (``M`` inputs, ``H`` hidden, ``N`` outputs) this reduces to the closed form of
Aoyagi & Watanabe (2005, reduced-rank regression), implemented separately in
:func:`reduced_rank_lambda` so the two can be checked against each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from landscape.errors import ConfigError


@dataclass(frozen=True)
class LearningCoefficient:
    """An exact learning coefficient and the bottleneck set that produced it.

    Attributes:
        value: λ.
        widths: ``H_0 … H_L``.
        rank: the true rank ``r``.
        bottleneck: indices of the set Σ (into ``widths``).
        ell: ``ℓ = |Σ| − 1``.
    """

    value: float
    widths: tuple[int, ...]
    rank: int
    bottleneck: tuple[int, ...]
    ell: int

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready fields."""
        return {
            "value": float(self.value),
            "widths": list(self.widths),
            "rank": int(self.rank),
            "bottleneck": list(self.bottleneck),
            "ell": int(self.ell),
        }


def _check(widths: Sequence[int], rank: int) -> tuple[int, ...]:
    ws = tuple(int(w) for w in widths)
    if len(ws) < 2:
        raise ConfigError("give at least two widths (input and output) for a linear network.")
    if any(w <= 0 for w in ws):
        raise ConfigError(f"widths must be positive, got {list(ws)}.")
    if rank < 0 or rank > min(ws):
        raise ConfigError(
            f"the true rank {rank} must lie in [0, min(widths) = {min(ws)}]; lower the rank."
        )
    return ws


def _bottleneck(m: Sequence[int]) -> tuple[list[int], int]:
    order = sorted(range(len(m)), key=lambda i: (m[i], i))
    for ell in range(1, len(m)):
        sigma = order[: ell + 1]
        rest = order[ell + 1 :]
        s = sum(m[i] for i in sigma)
        mx = max(m[i] for i in sigma)
        mn_rest = min((m[i] for i in rest), default=None)
        if mn_rest is not None and not mx < mn_rest:
            continue
        if s < ell * mx:
            continue
        if mn_rest is not None and not s < ell * mn_rest:
            continue
        return sorted(sigma), ell
    raise ConfigError(f"no bottleneck set satisfies Aoyagi's conditions for M = {list(m)}.")


def deep_linear_lambda(widths: Sequence[int], rank: int) -> LearningCoefficient:
    """Exact λ of a deep linear network with widths ``H_0 … H_L`` and true rank ``r``.

    Args:
        widths: layer widths, input first, output last (at least two).
        rank: rank of the true linear map (``0 ≤ r ≤ min(widths)``).

    Returns:
        The learning coefficient with its bottleneck set.

    Example:
        >>> deep_linear_lambda([6, 8, 5, 7], 2).value
        16.5
        >>> deep_linear_lambda([3, 3, 3], 0).value
        3.5
    """
    ws = _check(widths, rank)
    r = int(rank)
    m = [w - r for w in ws]
    sigma, ell = _bottleneck(m)
    s = sum(m[i] for i in sigma)
    big_m = -(-s // ell) - 1
    a = s - ell * big_m
    pairs = sum(m[i] * m[j] for k, i in enumerate(sigma) for j in sigma[k + 1 :])
    lam = (
        Fraction(-r * r + r * (ws[0] + ws[-1]), 2)
        + Fraction(a * (ell - a), 4 * ell)
        - Fraction(ell * (ell - 1), 4) * Fraction(s, ell) ** 2
        + Fraction(pairs, 2)
    )
    return LearningCoefficient(float(lam), ws, r, tuple(sigma), ell)


def reduced_rank_lambda(m: int, h: int, n: int, r: int) -> float:
    """λ of reduced-rank regression (Aoyagi & Watanabe 2005): ``M`` in, ``H`` hidden, ``N`` out.

    Cases (``r`` the true rank):

    1. ``N + r ≤ M + H``, ``M + r ≤ N + H``, ``H + r ≤ M + N``:
       ``λ = [2(H + r)(M + N) − (M − N)² − (H + r)² + δ]/8`` with ``δ = 1`` when
       ``M + H + N + r`` is odd, else 0;
    2. ``M + H < N + r``: ``λ = [HM − Hr + Nr]/2``;
    3. ``N + H < M + r``: ``λ = [HN − Hr + Mr]/2``;
    4. ``M + N < H + r``: ``λ = MN/2``.

    Example:
        >>> reduced_rank_lambda(3, 3, 3, 0)
        3.5
    """
    _check((m, h, n), r)
    if m + h < n + r:
        return (h * m - h * r + n * r) / 2
    if n + h < m + r:
        return (h * n - h * r + m * r) / 2
    if m + n < h + r:
        return m * n / 2
    odd = (m + h + n + r) % 2
    return (2 * (h + r) * (m + n) - (m - n) ** 2 - (h + r) ** 2 + odd) / 8


def regular_lambda(widths: Sequence[int]) -> float:
    """``d/2`` for a deep linear network: the value a regular (non-degenerate) model would have.

    Example:
        >>> regular_lambda([3, 2, 3])
        6.0
    """
    ws = _check(widths, 0)
    return float(sum(a * b for a, b in zip(ws[:-1], ws[1:], strict=True))) / 2
