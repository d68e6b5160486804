"""Statistics for the compression experiment.

Bootstrap intervals, stratified rank correlations with permutation p-values, effect sizes
and Holm's correction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata


def bootstrap_mean_ci(
    values: Sequence[float], *, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean and percentile bootstrap interval of the mean (NaNs dropped).

    Example:
        >>> m, lo, hi = bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0])
        >>> m, lo <= m <= hi
        (2.5, True)
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if x.size == 1:
        return m, m, m
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    a = (1 - level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    return m, float(lo), float(hi)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))


def stratified_spearman(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    strata: Sequence[object],
    *,
    permutations: int = 2000,
    seed: int = 0,
) -> tuple[float, float, int]:
    """Spearman ρ within each stratum, averaged (weighted by size), with a permutation p.

    The p-value is two-sided: ``y`` is shuffled within strata ``permutations`` times and
    ``p = (1 + #{|ρ_perm| ≥ |ρ|}) / (1 + permutations)``. Pairs with a non-finite value are
    dropped; strata with fewer than three pairs or no variation are skipped.

    Returns:
        ``(rho, p, n)`` with ``n`` the number of pairs used.

    Example:
        >>> r, p, n = stratified_spearman([0, 1, 2, 0, 1, 2], [1, 2, 3, 5, 6, 7], [0, 0, 0, 1, 1, 1])
        >>> r, n
        (1.0, 6)
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    sa = np.asarray([str(s) for s in strata])
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya, sa = xa[ok], ya[ok], sa[ok]
    groups = []
    for s in np.unique(sa):
        idx = np.nonzero(sa == s)[0]
        if idx.size >= 3 and np.ptp(xa[idx]) > 0 and np.ptp(ya[idx]) > 0:
            groups.append(idx)
    if not groups:
        return float("nan"), float("nan"), 0
    n = int(sum(g.size for g in groups))
    # ranks within strata once; a permutation shuffles the y-ranks within each stratum
    rx = [rankdata(xa[g]) for g in groups]
    ry = [rankdata(ya[g]) for g in groups]

    def combined(rys: list[np.ndarray]) -> float:
        tot = 0.0
        for a, b in zip(rx, rys, strict=True):
            sa_, sb = a.std(), b.std()
            tot += a.size * float(((a - a.mean()) * (b - b.mean())).mean() / (sa_ * sb))
        return tot / n

    rho = combined(ry)
    if permutations <= 0:
        return rho, float("nan"), n
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        if abs(combined([rng.permutation(b) for b in ry])) >= abs(rho) - 1e-12:
            hits += 1
    return rho, (1 + hits) / (1 + permutations), n


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """Standardized mean difference ``(mean(b) − mean(a)) / pooled sd``.

    Example:
        >>> round(cohens_d([0.0, 1.0, 2.0], [1.0, 2.0, 3.0]), 6)
        1.0
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size < 2 or y.size < 2:
        return float("nan")
    pooled = ((x.size - 1) * x.var(ddof=1) + (y.size - 1) * y.var(ddof=1)) / (x.size + y.size - 2)
    if pooled <= 0:
        return (
            float("nan") if y.mean() == x.mean() else float(np.sign(y.mean() - x.mean()) * np.inf)
        )
    return float((y.mean() - x.mean()) / np.sqrt(pooled))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaNs stay NaN and are not counted).

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    idx = np.nonzero(np.isfinite(p))[0]
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
