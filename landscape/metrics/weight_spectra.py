"""Data-free weight spectra (heavy-tailed self-regularization, WeightWatcher style).

For every weight matrix ``W`` of a model (``nn.Linear`` weights; convolution kernels
reshaped to ``(out, in·k·k)``; embeddings; attention ``in_proj_weight``; in general every
parameter with ``ndim ≥ 2`` whose name does not end in ``bias``), oriented so that
``W`` is ``N × M`` with ``N ≥ M`` (``N`` the larger dimension):

- **ESD** — the eigenvalues of the correlation matrix ``X = WᵀW / N`` (Martin & Mahoney
  2021; WeightWatcher's ``normalize`` convention), i.e. ``λ_i = s_i² / N`` for the
  singular values ``s_i`` of ``W``; ``M`` eigenvalues, ascending.
- **Power law** — the tail density ``p(λ) ∝ λ^(−α)`` for ``λ ≥ x_min``, fitted as in
  Clauset, Shalizi & Newman (2009): for each candidate ``x_min`` (an eigenvalue leaving
  at least ``min_tail`` eigenvalues in the tail), the continuous MLE
  ``α = 1 + n / Σ_{λ_i ≥ x_min} ln(λ_i / x_min)`` and the Kolmogorov–Smirnov distance
  ``D`` between the tail's empirical CDF and ``1 − (λ/x_min)^(1−α)``; the ``x_min``
  with the smallest ``D`` is kept (at most ``max_candidates`` candidates, evenly spaced
  in rank). ``alpha_stderr = (α − 1)/√n``. ``weighted_alpha = α·log10 λmax``.
  Eigenvalues of numerically zero singular values (``s ≤ s_max·N·eps``) are left out of
  the fit; ``rank`` counts the others.
- **Norms** — ``stable_rank = ‖W‖_F² / ‖W‖₂²``; ``log_spectral_norm = log10 ‖W‖₂``;
  ``log_frobenius_norm = log10 ‖W‖_F`` (of ``W`` itself, not of ``X``).
- **Marchenko–Pastur bulk** — with ``Q = N/M ≥ 1`` the MP law of ``X`` for i.i.d. entries
  of variance ``σ²`` lives on ``[λ−, λ+]``, ``λ± = σ²(1 ± √(1/Q))²``. ``σ²`` is fitted
  by matching the median of the bulk to the MP median (iterated: eigenvalues above
  ``λ+`` leave the bulk). Spikes are the eigenvalues above
  ``λ+ + 2.02·s_TW``, where ``s_TW`` is the Tracy–Widom scale of the largest eigenvalue
  of a pure-noise matrix (Johnstone 2001) and 2.02 its 99% quantile, so a Gaussian
  matrix shows a false spike in about 1% of layers.
- **Correlation traps** — the entries of ``W`` are permuted by a seeded generator
  (destroying correlations, keeping the entry distribution), centred, and the ESD of the
  randomized matrix gets its own MP fit; its spikes are the traps (large entries that
  survive randomization; Martin & Mahoney's "correlation traps").

Where a fit is undefined (fewer than ``min_tail`` positive eigenvalues, a matrix with a
dimension below 2, an all-zero weight) the result carries a ``note`` and NaN values,
never a made-up number. The module is never modified: only detached copies are read.

Example:
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> ws = weight_spectra(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)))
    >>> [layer.name for layer in ws.layers]
    ['0.weight', '2.weight']
    >>> ws.layers[0].matrix_shape, ws.layers[0].eigenvalues.shape
    ((128, 64), (64,))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.errors import ConfigError, NotApplicable
from landscape.progress import Progress, tracked

TW_QUANTILE_99 = 2.0234
"""The 99% quantile of the Tracy–Widom (β = 1) law (Tracy & Widom 1996)."""

_NAN = float("nan")


def _f(x: Any) -> float:
    """A float from JSON (``"nan"``/``"inf"`` strings and None become floats)."""
    if x is None:
        return _NAN
    return float(x)


# -- results -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerLawFit:
    """A continuous power-law fit of an ESD tail (Clauset–Shalizi–Newman).

    Attributes:
        alpha: the exponent α of ``p(λ) ∝ λ^(−α)`` (NaN when not fit).
        xmin: the start of the tail.
        ks: the Kolmogorov–Smirnov distance of the tail to the fitted law.
        n_tail: the number of eigenvalues ``≥ xmin``.
        alpha_stderr: ``(α − 1)/√n_tail``.
        note: why the fit is undefined (None when it was fit).
    """

    alpha: float
    xmin: float
    ks: float
    n_tail: int
    alpha_stderr: float
    note: str | None = None

    @property
    def fit(self) -> bool:
        """Whether the fit is defined."""
        return self.note is None

    @classmethod
    def undefined(cls, note: str) -> PowerLawFit:
        """A not-fit result carrying its reason."""
        return cls(_NAN, _NAN, _NAN, 0, _NAN, note)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PowerLawFit:
        """Inverse of :meth:`to_dict` (after a JSON round trip)."""
        return cls(
            _f(d["alpha"]),
            _f(d["xmin"]),
            _f(d["ks"]),
            int(d["n_tail"]),
            _f(d["alpha_stderr"]),
            d.get("note"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON scalars."""
        return {
            "alpha": self.alpha,
            "xmin": self.xmin,
            "ks": self.ks,
            "n_tail": self.n_tail,
            "alpha_stderr": self.alpha_stderr,
            "note": self.note,
        }


@dataclass(frozen=True)
class MarchenkoPasturFit:
    """The Marchenko–Pastur bulk of an ESD and the eigenvalues beyond it.

    Attributes:
        sigma2: the fitted entry variance σ².
        q: the aspect ratio ``Q = N/M ≥ 1``.
        lambda_minus: the lower bulk edge ``σ²(1 − √(1/Q))²``.
        lambda_plus: the upper bulk edge ``σ²(1 + √(1/Q))²``.
        threshold: the spike threshold ``λ+ + 2.02·s_TW``.
        spikes: the number of eigenvalues above ``threshold``.
        note: why the fit is undefined (None when it was fit).
    """

    sigma2: float
    q: float
    lambda_minus: float
    lambda_plus: float
    threshold: float
    spikes: int
    note: str | None = None

    @property
    def fit(self) -> bool:
        """Whether the fit is defined."""
        return self.note is None

    @classmethod
    def undefined(cls, q: float, note: str) -> MarchenkoPasturFit:
        """A not-fit result carrying its reason."""
        return cls(_NAN, q, _NAN, _NAN, _NAN, 0, note)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MarchenkoPasturFit:
        """Inverse of :meth:`to_dict` (after a JSON round trip)."""
        return cls(
            _f(d["sigma2"]),
            _f(d["q"]),
            _f(d["lambda_minus"]),
            _f(d["lambda_plus"]),
            _f(d["threshold"]),
            int(d["spikes"] or 0),
            d.get("note"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON scalars."""
        return {
            "sigma2": self.sigma2,
            "q": self.q,
            "lambda_minus": self.lambda_minus,
            "lambda_plus": self.lambda_plus,
            "threshold": self.threshold,
            "spikes": self.spikes if self.fit else None,
            "note": self.note,
        }


@dataclass(frozen=True, eq=False)
class LayerSpectrum:
    """The spectrum of one weight matrix and the fits on it.

    Attributes:
        name: the parameter's dotted name.
        shape: the parameter's shape.
        matrix_shape: ``(N, M)`` of the matrix analysed, ``N ≥ M``.
        eigenvalues: the ESD, eigenvalues of ``WᵀW/N``, ascending (``M`` values).
        lambda_max: the largest eigenvalue of ``WᵀW/N``.
        stable_rank: ``‖W‖_F² / ‖W‖₂²``.
        log_spectral_norm: ``log10 ‖W‖₂``.
        log_frobenius_norm: ``log10 ‖W‖_F``.
        power_law: the tail fit.
        weighted_alpha: ``α·log10 λmax`` (NaN when α is not fit).
        mp: the Marchenko–Pastur bulk fit.
        traps: spikes of the randomized matrix (None when its MP fit is undefined).
        randomized_lambda_max: the largest eigenvalue of the randomized matrix.
        note: why the layer could not be analysed at all (None otherwise).
        rank: the numerical rank, singular values above ``s_max·N·eps`` (NumPy's
            ``matrix_rank`` rule); the power law is fit to these eigenvalues only.
    """

    name: str
    shape: tuple[int, ...]
    matrix_shape: tuple[int, int]
    eigenvalues: np.ndarray
    lambda_max: float
    stable_rank: float
    log_spectral_norm: float
    log_frobenius_norm: float
    power_law: PowerLawFit
    weighted_alpha: float
    mp: MarchenkoPasturFit
    traps: int | None
    randomized_lambda_max: float
    note: str | None = None
    rank: int = 0

    @property
    def alpha(self) -> float:
        """The power-law exponent (NaN when not fit)."""
        return self.power_law.alpha

    def to_dict(self) -> dict[str, Any]:
        """JSON scalars (the eigenvalues are left to :meth:`WeightSpectra.to_arrays`)."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "matrix_shape": list(self.matrix_shape),
            "num_eigenvalues": int(self.eigenvalues.size),
            "rank": self.rank,
            "lambda_max": self.lambda_max,
            "stable_rank": self.stable_rank,
            "log_spectral_norm": self.log_spectral_norm,
            "log_frobenius_norm": self.log_frobenius_norm,
            "alpha": self.power_law.alpha,
            "weighted_alpha": self.weighted_alpha,
            "power_law": self.power_law.to_dict(),
            "mp": self.mp.to_dict(),
            "mp_spikes": self.mp.spikes if self.mp.fit else None,
            "traps": self.traps,
            "randomized_lambda_max": self.randomized_lambda_max,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], eigenvalues: np.ndarray) -> LayerSpectrum:
        """Inverse of :meth:`to_dict`, with the ESD from the arrays."""
        n, m = (int(v) for v in d["matrix_shape"])
        return cls(
            name=str(d["name"]),
            shape=tuple(int(v) for v in d["shape"]),
            matrix_shape=(n, m),
            eigenvalues=np.asarray(eigenvalues, dtype=np.float64),
            lambda_max=_f(d["lambda_max"]),
            stable_rank=_f(d["stable_rank"]),
            log_spectral_norm=_f(d["log_spectral_norm"]),
            log_frobenius_norm=_f(d["log_frobenius_norm"]),
            power_law=PowerLawFit.from_dict(d["power_law"]),
            weighted_alpha=_f(d["weighted_alpha"]),
            mp=MarchenkoPasturFit.from_dict(d["mp"]),
            traps=None if d.get("traps") is None else int(d["traps"]),
            randomized_lambda_max=_f(d["randomized_lambda_max"]),
            note=d.get("note"),
            rank=int(d.get("rank") or 0),
        )


@dataclass(frozen=True, eq=False)
class WeightSpectra:
    """Weight spectra of every weight matrix of a model.

    Attributes:
        layers: one :class:`LayerSpectrum` per weight matrix, in parameter order.
        settings: the options that produced them.
    """

    layers: tuple[LayerSpectrum, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def layer(self, name: str) -> LayerSpectrum:
        """The layer of this parameter name."""
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise KeyError(name)

    def averages(self) -> dict[str, float]:
        """Means over the layers where each value is defined (WeightWatcher's summary)."""

        def mean(values: list[float]) -> float:
            v = [x for x in values if math.isfinite(x)]
            return float(np.mean(v)) if v else _NAN

        return {
            "alpha": mean([lay.alpha for lay in self.layers]),
            "weighted_alpha": mean([lay.weighted_alpha for lay in self.layers]),
            "stable_rank": mean([lay.stable_rank for lay in self.layers]),
            "log_spectral_norm": mean([lay.log_spectral_norm for lay in self.layers]),
            "log_frobenius_norm": mean([lay.log_frobenius_norm for lay in self.layers]),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON: settings, averages, per-layer scalars and the totals of spikes and traps."""
        return {
            "settings": dict(self.settings),
            "num_layers": len(self.layers),
            "num_fit": sum(1 for lay in self.layers if lay.power_law.fit),
            "averages": self.averages(),
            "mp_spikes": sum(lay.mp.spikes for lay in self.layers if lay.mp.fit),
            "traps": sum(lay.traps or 0 for lay in self.layers),
            "layers": [lay.to_dict() for lay in self.layers],
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The ESDs concatenated: ``weights_esd`` values and ``weights_esd_layer`` indices.

        Example:
            >>> from torch import nn
            >>> a = weight_spectra(nn.Linear(8, 4)).to_arrays()
            >>> a["weights_esd"].shape, a["weights_esd_layer"].tolist()
            ((4,), [0, 0, 0, 0])
        """
        values = [lay.eigenvalues for lay in self.layers]
        index = [np.full(v.size, i, dtype=np.int64) for i, v in enumerate(values)]
        return {
            "weights_esd": np.concatenate(values) if values else np.zeros(0),
            "weights_esd_layer": np.concatenate(index) if index else np.zeros(0, np.int64),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], esd: np.ndarray, esd_layer: np.ndarray) -> WeightSpectra:
        """Rebuild from :meth:`to_dict` (e.g. ``summary["weights"]``) and :meth:`to_arrays`.

        Example:
            >>> import json
            >>> from torch import nn
            >>> ws = weight_spectra(nn.Linear(30, 20))
            >>> back = WeightSpectra.from_dict(
            ...     json.loads(json.dumps(ws.to_dict())), *ws.to_arrays().values())
            >>> back.layers[0].alpha == ws.layers[0].alpha
            True
        """
        esd = np.asarray(esd, dtype=np.float64)
        which = np.asarray(esd_layer, dtype=np.int64)
        layers = tuple(
            LayerSpectrum.from_dict(lay, esd[which == i]) for i, lay in enumerate(d["layers"])
        )
        return cls(layers, dict(d.get("settings", {})))


# -- fits --------------------------------------------------------------------------------
def powerlaw_fit(
    values: np.ndarray | torch.Tensor,
    *,
    min_tail: int = 10,
    max_candidates: int = 2000,
) -> PowerLawFit:
    """Fit ``p(x) ∝ x^(−α)`` for ``x ≥ x_min`` by continuous MLE with KS-chosen ``x_min``.

    Every candidate ``x_min`` is a distinct sample value leaving at least ``min_tail``
    samples in the tail; for each, ``α = 1 + n/Σ ln(x_i/x_min)`` and the KS distance
    ``D = max |S_n(x) − (1 − (x/x_min)^(1−α))|`` over the tail; the smallest ``D`` wins
    (Clauset, Shalizi & Newman 2009, §3). Non-positive values are dropped. Runs on the
    device of ``values`` when it is a tensor.

    Args:
        values: samples (e.g. the eigenvalues of an ESD).
        min_tail: the fewest samples a tail may hold.
        max_candidates: at most this many ``x_min`` candidates, evenly spaced in rank.

    Returns:
        The :class:`PowerLawFit` (with a ``note`` when undefined).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = (1 - rng.random(20000)) ** (-1 / 1.5)  # Pareto, α = 2.5, x_min = 1
        >>> fit = powerlaw_fit(x)
        >>> round(fit.alpha, 1)
        2.5
    """
    if min_tail < 2:
        raise ConfigError(f"min_tail must be at least 2 (got {min_tail}).")
    x = torch.as_tensor(values).detach().reshape(-1).to(torch.float64)
    x = torch.sort(x[torch.isfinite(x) & (x > 0)]).values
    m = int(x.numel())
    if m < min_tail:
        return PowerLawFit.undefined(
            f"{m} positive eigenvalues, fewer than the {min_tail} a tail needs"
        )
    logs = torch.log(x)
    suffix = torch.flip(torch.cumsum(torch.flip(logs, [0]), 0), [0])  # Σ_{j≥i} ln x_j
    idx = torch.arange(m - min_tail + 1, device=x.device)
    distinct = torch.ones_like(idx, dtype=torch.bool)
    distinct[1:] = x[idx[1:]] > x[idx[1:] - 1]
    idx = idx[distinct]
    n = (m - idx).to(torch.float64)
    s = suffix[idx] - n * logs[idx]
    ok = s > 0
    idx, n, s = idx[ok], n[ok], s[ok]
    if idx.numel() == 0:
        return PowerLawFit.undefined("the tail's eigenvalues are all equal")
    if idx.numel() > max_candidates:
        pick = torch.linspace(0, idx.numel() - 1, max_candidates, device=x.device).round().long()
        idx, n, s = idx[pick], n[pick], s[pick]
    alpha = 1.0 + n / s
    ks = torch.empty_like(alpha)
    j = torch.arange(m, device=x.device)
    chunk = max(1, (1 << 20) // m)
    for a in range(0, int(idx.numel()), chunk):
        ii, al, nn_ = idx[a : a + chunk], alpha[a : a + chunk], n[a : a + chunk]
        k = (j[None, :] - ii[:, None]).to(torch.float64)  # rank inside the tail
        inside = k >= 0
        ratio = (x[None, :] / x[ii][:, None]).clamp_min(1.0)
        cdf = 1.0 - ratio ** (1.0 - al[:, None])
        upper = (k + 1.0) / nn_[:, None] - cdf
        lower = cdf - k / nn_[:, None]
        d = torch.maximum(upper, lower).masked_fill(~inside, -math.inf)
        ks[a : a + chunk] = d.max(dim=1).values
    best = int(torch.argmin(ks))
    a_best = float(alpha[best])
    n_best = int(n[best])
    return PowerLawFit(
        alpha=a_best,
        xmin=float(x[idx[best]]),
        ks=float(ks[best]),
        n_tail=n_best,
        alpha_stderr=(a_best - 1.0) / math.sqrt(n_best),
    )


def mp_edges(sigma2: float, q: float) -> tuple[float, float]:
    """The Marchenko–Pastur bulk edges ``σ²(1 ∓ √(1/Q))²`` of ``WᵀW/N``, ``Q = N/M ≥ 1``.

    Example:
        >>> mp_edges(1.0, 4.0)
        (0.25, 2.25)
    """
    r = math.sqrt(1.0 / q)
    return sigma2 * (1.0 - r) ** 2, sigma2 * (1.0 + r) ** 2


def mp_quantile(p: float, q: float, *, points: int = 4001) -> float:
    """The ``p``-quantile of the Marchenko–Pastur law with ``σ² = 1`` and ``Q = N/M ≥ 1``.

    The density ``ρ(λ) = Q √((λ+ − λ)(λ − λ−)) / (2πλ)`` is integrated under the
    substitution ``λ = λ− + (λ+ − λ−)(1 − cos θ)/2``, which removes the square-root edges.

    Example:
        >>> round(mp_quantile(0.5, 1e6), 3)  # Q → ∞: the law concentrates at σ² = 1
        1.0
    """
    lo, hi = mp_edges(1.0, q)
    theta = np.linspace(0.0, math.pi, points)
    lam = lo + (hi - lo) * (1.0 - np.cos(theta)) / 2.0
    dlam = (hi - lo) * np.sin(theta) / 2.0
    root = np.sqrt(np.clip((hi - lam) * (lam - lo), 0.0, None))
    f = q * root * dlam / (2.0 * math.pi * np.maximum(lam, 1e-300))
    cdf = np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) / 2.0 * np.diff(theta))])
    cdf /= cdf[-1]
    return float(np.interp(p, cdf, lam))


def tracy_widom_scale(n: int, m: int) -> float:
    """The Tracy–Widom scale of λmax of ``WᵀW/N`` for unit-variance noise (Johnstone 2001).

    ``s = (√(N−½) + √(M−½)) (1/√(N−½) + 1/√(M−½))^(1/3) / N``.

    Example:
        >>> round(tracy_widom_scale(400, 200) * 400 ** (2 / 3), 2)
        2.29
    """
    a, b = math.sqrt(n - 0.5), math.sqrt(m - 0.5)
    return (a + b) * (1.0 / a + 1.0 / b) ** (1.0 / 3.0) / n


def mp_fit(
    eigenvalues: np.ndarray | torch.Tensor, n: int, m: int, *, iterations: int = 20
) -> MarchenkoPasturFit:
    """Fit the Marchenko–Pastur bulk of the ESD of an ``N × M`` matrix (``N ≥ M``).

    ``σ²`` matches the median of the bulk to the MP median; eigenvalues above the spike
    threshold leave the bulk and the fit repeats until the bulk stops changing.

    Args:
        eigenvalues: the ``M`` eigenvalues of ``WᵀW/N``.
        n: the larger dimension ``N``.
        m: the smaller dimension ``M``.
        iterations: the most refits.

    Returns:
        The :class:`MarchenkoPasturFit` (with a ``note`` when undefined).

    Example:
        >>> g = np.random.default_rng(0).standard_normal((800, 200))
        >>> fit = mp_fit(np.linalg.eigvalsh(g.T @ g / 800), 800, 200)
        >>> round(fit.sigma2, 1), fit.spikes
        (1.0, 0)
    """
    q = n / m
    ev = np.sort(np.asarray(torch.as_tensor(eigenvalues).detach().cpu(), dtype=np.float64))
    if ev.size < 2 or m < 2:
        return MarchenkoPasturFit.undefined(q, "fewer than 2 eigenvalues")
    if not np.isfinite(ev).all():
        return MarchenkoPasturFit.undefined(q, "non-finite eigenvalues")
    med = mp_quantile(0.5, q)
    tw = tracy_widom_scale(n, m)
    bulk = ev
    sigma2 = thr = lam_minus = lam_plus = _NAN
    for _ in range(iterations):
        sigma2 = float(np.median(bulk)) / med
        if not sigma2 > 0:
            return MarchenkoPasturFit.undefined(q, "the median eigenvalue is zero")
        lam_minus, lam_plus = mp_edges(sigma2, q)
        thr = lam_plus + TW_QUANTILE_99 * sigma2 * tw
        new = ev[ev <= thr]
        if new.size == bulk.size:
            break
        if new.size < 2:
            return MarchenkoPasturFit.undefined(q, "no bulk left below the spike threshold")
        bulk = new
    return MarchenkoPasturFit(
        sigma2=sigma2,
        q=q,
        lambda_minus=lam_minus,
        lambda_plus=lam_plus,
        threshold=thr,
        spikes=int((ev > thr).sum()),
    )


# -- the model's weights -----------------------------------------------------------------
def weight_matrices(
    module: nn.Module, params: Sequence[str] | None = None
) -> list[tuple[str, torch.Tensor]]:
    """The weight matrices of ``module``: detached ``(out, rest)`` views of its weights.

    Every parameter with ``ndim ≥ 2`` whose name does not end in ``bias``; convolution
    kernels ``(out, in, k, …)`` become ``(out, in·k·…)``. Shared parameters appear once.

    Args:
        module: the model (not modified).
        params: globs over dotted names; when given, only matching parameters.

    Example:
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 2))
        >>> [(n, tuple(w.shape)) for n, w in weight_matrices(m)]
        [('0.weight', (8, 27)), ('3.weight', (2, 8))]
    """
    out: list[tuple[str, torch.Tensor]] = []
    for name, p in module.named_parameters():
        if p.ndim < 2 or name.split(".")[-1].endswith("bias"):
            continue
        if params and not any(fnmatchcase(name, g) for g in params):
            continue
        w = p.detach()
        out.append((name, w.reshape(w.shape[0], -1)))
    return out


def _layer_stats(
    name: str,
    shape: tuple[int, ...],
    sv: torch.Tensor,
    rsv: torch.Tensor | None,
    n: int,
    m: int,
    min_tail: int,
    max_candidates: int,
) -> LayerSpectrum:
    ev_t = torch.flip(sv.to(torch.float64) ** 2 / n, [0])  # ascending
    ev = ev_t.cpu().numpy()
    smax = float(sv.max()) if sv.numel() else 0.0
    fro2 = float((sv.to(torch.float64) ** 2).sum())
    if smax <= 0.0 or not math.isfinite(smax):
        why = "all-zero weight" if smax == 0.0 else "non-finite weight"
        return LayerSpectrum(
            name,
            shape,
            (n, m),
            ev,
            _NAN,
            _NAN,
            _NAN,
            _NAN,
            PowerLawFit.undefined(why),
            _NAN,
            MarchenkoPasturFit.undefined(n / m, why),
            None,
            _NAN,
            why,
        )
    lam_max = smax**2 / n
    nonzero = torch.flip(sv, [0]) > smax * n * torch.finfo(sv.dtype).eps
    rank = int(nonzero.sum())
    pl = powerlaw_fit(ev_t[nonzero], min_tail=min_tail, max_candidates=max_candidates)
    mp = mp_fit(ev, n, m)
    traps: int | None = None
    rmax = _NAN
    if rsv is not None:
        rev = torch.flip(rsv.to(torch.float64) ** 2 / n, [0]).cpu().numpy()
        rmax = float(rev[-1])
        rmp = mp_fit(rev, n, m)
        traps = rmp.spikes if rmp.fit else None
    return LayerSpectrum(
        name=name,
        shape=shape,
        matrix_shape=(n, m),
        eigenvalues=ev,
        lambda_max=lam_max,
        stable_rank=fro2 / smax**2,
        log_spectral_norm=math.log10(smax),
        log_frobenius_norm=0.5 * math.log10(fro2),
        power_law=pl,
        weighted_alpha=pl.alpha * math.log10(lam_max) if pl.fit else _NAN,
        mp=mp,
        traps=traps,
        randomized_lambda_max=rmax,
        rank=rank,
    )


def _too_small(name: str, shape: tuple[int, ...], n: int, m: int) -> LayerSpectrum:
    why = f"matrix {n}x{m} has a dimension below 2"
    return LayerSpectrum(
        name,
        shape,
        (n, m),
        np.zeros(0),
        _NAN,
        _NAN,
        _NAN,
        _NAN,
        PowerLawFit.undefined(why),
        _NAN,
        MarchenkoPasturFit.undefined(n / m, why),
        None,
        _NAN,
        why,
    )


def _randomized(w: torch.Tensor, seed: int) -> torch.Tensor:
    """``w``'s entries permuted by a CPU generator seeded with ``seed``, then centred."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(w.numel(), generator=g).to(w.device)
    r = w.reshape(-1)[perm].reshape(w.shape)
    return r - r.mean()


def weight_spectra(
    module: nn.Module,
    *,
    params: Sequence[str] | None = None,
    min_tail: int = 10,
    max_candidates: int = 2000,
    traps: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    max_batch_elements: int = 1 << 26,
    progress: Progress | None = None,
) -> WeightSpectra:
    """The weight spectra of every weight matrix of ``module``, without data.

    Singular values are computed on the module's device, in ``dtype``, with matrices of
    the same shape batched into one ``torch.linalg.svdvals`` call (at most
    ``max_batch_elements`` entries per call). See the module docstring for definitions.

    Args:
        module: the model (never modified; its parameters are read detached).
        params: globs over dotted parameter names; when given, only those matrices.
        min_tail: the fewest eigenvalues a power-law tail may hold.
        max_candidates: the most ``x_min`` candidates per fit.
        traps: also count correlation traps (one randomized SVD per layer).
        seed: seeds the permutation of layer ``i`` with ``seed + i``.
        dtype: the floating type of the SVD (float64 by default).
        max_batch_elements: the largest stack of entries per SVD call.
        progress: reports one step per weight matrix.

    Returns:
        The :class:`WeightSpectra`.

    Raises:
        NotApplicable: the module has no weight matrix (or none matches ``params``).
        ConfigError: ``min_tail`` below 2 or a ``dtype`` other than float32/float64.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> ws = weight_spectra(nn.Linear(400, 200, bias=False))
        >>> lay = ws.layers[0]
        >>> lay.mp.spikes, lay.traps, round(lay.stable_rank, 1) > 1
        (0, 0, True)
    """
    if min_tail < 2:
        raise ConfigError(f"--min-tail must be at least 2 (got {min_tail}).")
    if dtype not in (torch.float32, torch.float64):
        name = str(dtype).replace("torch.", "")
        raise ConfigError(f"--dtype {name} cannot run an SVD; use float32 or float64.")
    mats = weight_matrices(module, params)
    if not mats:
        which = f" matching {', '.join(params)}" if params else ""
        raise NotApplicable(
            f"the model has no weight matrix{which} (no parameter with 2 or more dimensions)."
        )
    shapes = {name: tuple(int(s) for s in p.shape) for name, p in module.named_parameters()}
    results: dict[int, LayerSpectrum] = {}
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (_, w) in enumerate(mats):
        r, c = int(w.shape[0]), int(w.shape[1])
        groups.setdefault((max(r, c), min(r, c)), []).append(i)
    with tracked(progress, "weight spectra", len(mats)) as task:
        for (n, m), members in groups.items():
            if m < 2:
                for i in members:
                    results[i] = _too_small(mats[i][0], shapes[mats[i][0]], n, m)
                task.advance(len(members))
                continue
            per_call = max(1, max_batch_elements // (n * m))
            for a in range(0, len(members), per_call):
                chunk = members[a : a + per_call]
                stack = []
                rstack = []
                for i in chunk:
                    w = mats[i][1].to(dtype)
                    w = w if w.shape[0] >= w.shape[1] else w.T
                    stack.append(w)
                    if traps:
                        rstack.append(_randomized(w, seed + i))
                with torch.no_grad():
                    sv = torch.linalg.svdvals(torch.stack(stack))
                    rsv = torch.linalg.svdvals(torch.stack(rstack)) if traps else None
                for k, i in enumerate(chunk):
                    name = mats[i][0]
                    results[i] = _layer_stats(
                        name,
                        shapes[name],
                        sv[k],
                        None if rsv is None else rsv[k],
                        n,
                        m,
                        min_tail,
                        max_candidates,
                    )
                task.advance(len(chunk))
    settings = {
        "normalization": "X = W^T W / N, N = max dim",
        "min_tail": min_tail,
        "max_candidates": max_candidates,
        "traps": traps,
        "seed": seed,
        "dtype": str(dtype).replace("torch.", ""),
        "params": list(params) if params else None,
        "spike_threshold": "lambda_plus + 2.02 * Tracy-Widom scale",
    }
    return WeightSpectra(tuple(results[i] for i in range(len(mats))), settings)
