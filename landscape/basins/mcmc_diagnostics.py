"""Convergence diagnostics of several Markov chains: split-R̂ and effective sample size.

Both follow Vehtari, Gelman, Simpson, Carpenter & Bürkner, *Rank-normalization, folding, and
localization: an improved R̂ for assessing convergence of MCMC* (2021), on an array of draws
of shape ``(chains, draws)``:

* **split-R̂**: each chain is cut into halves (so a trend within a chain shows as
  disagreement between its halves); with ``W`` the mean within-half variance and ``B/N`` the
  variance of the half means, ``R̂ = sqrt(((N − 1)/N · W + B/N) / W)``. Values near 1 mean the
  chains agree; above ~1.01–1.1 they have not mixed.
* **ESS** (Geyer 1992): ``S / τ`` with ``S`` the total number of draws and the integrated
  autocorrelation time ``τ = −1 + 2 Σ_k P_k``, where ``P_k = ρ_{2k} + ρ_{2k+1}`` are sums of
  adjacent autocorrelations (combined across chains through the split-R̂ variance), summed
  while positive and forced to be non-increasing (the *initial monotone sequence*).
  **Bulk ESS** is the ESS of the rank-normalized split chains (draws replaced by the normal
  quantiles of their pooled ranks), which is robust to heavy tails.

For an AR(1) chain ``x_t = φ x_{t−1} + e_t`` the true value is ``ESS = S (1 − φ)/(1 + φ)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

from landscape.errors import ConfigError


def _as_chains(draws: np.ndarray) -> np.ndarray:
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ConfigError(f"draws must have shape (chains, draws), got {x.shape}; reshape them.")
    return x


def _split(x: np.ndarray) -> np.ndarray:
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def split_rhat(draws: np.ndarray) -> float:
    """Gelman–Rubin split-R̂ of draws of shape ``(chains, draws)`` (or one chain, 1-D).

    Returns NaN with fewer than 4 draws per chain or non-finite draws, and 1 when every
    draw is equal.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> round(split_rhat(rng.normal(size=(4, 1000))), 2)
        1.0
        >>> split_rhat(np.array([[0.0, 0.0, 1.0, 1.0]] * 2)) > 1.5
        True
    """
    x = _as_chains(draws)
    if x.shape[1] < 4 or not np.isfinite(x).all():
        return float("nan")
    s = _split(x)
    n = s.shape[1]
    w = float(s.var(axis=1, ddof=1).mean())
    b_over_n = float(s.mean(axis=1).var(ddof=1))
    if w <= 0.0:
        return 1.0 if b_over_n <= 0.0 else float("inf")
    var_plus = (n - 1) / n * w + b_over_n
    return math.sqrt(var_plus / w)


def _autocov(x: np.ndarray) -> np.ndarray:
    """Biased autocovariance of each row (divided by the length), by FFT."""
    n = x.shape[1]
    c = x - x.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(c, size, axis=1)
    return np.fft.irfft(f * np.conj(f), size, axis=1)[:, :n] / n


def ess(draws: np.ndarray, *, rank_normalize: bool = False, split: bool = True) -> float:
    """Effective sample size by Geyer's initial monotone sequence, over all chains.

    Args:
        draws: shape ``(chains, draws)`` (or one chain, 1-D).
        rank_normalize: replace the draws by normal scores of their pooled ranks first
            (together with ``split`` this is the *bulk* ESS).
        split: cut each chain in half first (as split-R̂ does).

    Returns:
        The ESS (at most ``chains · draws · log10(chains · draws)``, as in Stan), or NaN with
        fewer than 4 draws per (split) chain or non-finite draws.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> 3500 < ess(rng.normal(size=(4, 1000))) < 4500
        True
    """
    x = _as_chains(draws)
    if split:
        x = _split(x)
    m, n = x.shape
    if n < 4 or not np.isfinite(x).all():
        return float("nan")
    if rank_normalize:
        r = rankdata(x, method="average").reshape(x.shape)
        x = ndtri((r - 0.375) / (x.size + 0.25))
    with np.errstate(all="ignore"):  # overflowing draws give a NaN ESS, not a warning
        return _geyer_ess(x)


def _geyer_ess(x: np.ndarray) -> float:
    m, n = x.shape
    acov = _autocov(x)
    chain_var = acov[:, 0] * n / (n - 1)
    mean_var = float(chain_var.mean())
    var_plus = mean_var * (n - 1) / n
    if m > 1:
        var_plus += float(x.mean(axis=1).var(ddof=1))
    if not math.isfinite(var_plus) or var_plus <= 0.0:
        return float("nan")
    rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    # Geyer: sums of adjacent pairs, kept while positive, then made non-increasing
    pairs = rho[: 2 * ((n - 1) // 2)].reshape(-1, 2).sum(axis=1)
    positive = pairs > 0.0
    k = int(np.argmin(positive)) if not positive.all() else pairs.size
    kept = np.minimum.accumulate(pairs[:k]) if k else pairs[:0]
    tau = -1.0 + 2.0 * float(kept.sum())
    total = m * n
    tau = max(tau, 1.0 / math.log10(total))
    return total / tau


def bulk_ess(draws: np.ndarray) -> float:
    """Bulk effective sample size: rank-normalized split-chain ESS (Vehtari et al. 2021).

    Example:
        >>> rng = np.random.default_rng(1)
        >>> 3500 < bulk_ess(rng.standard_cauchy(size=(4, 1000))) < 4500
        True
    """
    return ess(draws, rank_normalize=True, split=True)
