"""Statistics shared by ``compare`` and the experiments.

Rank correlations with honest uncertainty, stratified and partial rank correlations with
permutation p-values, bootstrap intervals, effect sizes and Holm's correction.

Rank correlations between a metric and the generalization gap: Kendall's τ-b and
Spearman's ρ are computed across runs. Their uncertainty comes from a
seeded bootstrap that resamples runs (and, where a run's value has a standard error,
perturbs it by that error, so estimator noise widens the interval), and a permutation
test whose p-value is exact for few runs. With few runs the interval is wide and no
correlation can be significant; the result says so instead of pretending otherwise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from landscape.results import _json_float

#: Up to this many runs the permutation test enumerates every ordering.
EXACT_PERMUTATION_MAX = 8

#: Below this many runs a bootstrap over runs cannot show the sampling spread of a rank
#: correlation (resamples of a handful of runs mostly repeat the same ordering, so a
#: perfect ordering gives the degenerate interval [1, 1]); the interval is then flagged.
BOOTSTRAP_MIN_RUNS = 8


def _rankdata(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share the mean rank)."""
    from scipy.stats import rankdata

    return rankdata(a, axis=-1, method="average")


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's τ-b along the last axis (batched; NaN when either side is constant).

    Example:
        >>> float(kendall_tau_b(np.array([1., 2, 3]), np.array([1., 3, 2])))
        0.3333333333333333
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    sx = np.sign(x[..., :, None] - x[..., None, :])
    sy = np.sign(y[..., :, None] - y[..., None, :])
    num = (sx * sy).sum(axis=(-1, -2))
    den = np.sqrt((sx * sx).sum(axis=(-1, -2)) * (sy * sy).sum(axis=(-1, -2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def spearman_rho(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ (Pearson correlation of average ranks) along the last axis.

    Example:
        >>> float(spearman_rho(np.array([1., 2, 3, 4]), np.array([10., 20, 40, 30])))
        0.8
    """
    rx = _rankdata(np.asarray(x, dtype=float))
    ry = _rankdata(np.asarray(y, dtype=float))
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    num = (rx * ry).sum(axis=-1)
    den = np.sqrt((rx * rx).sum(axis=-1) * (ry * ry).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


@dataclass(frozen=True)
class RankCorrelation:
    """Rank correlation of a metric with a target (the generalization gap) across runs.

    Attributes:
        metric: the metric's key.
        against: the target's key (``generalization_gap``).
        n: number of runs with both values finite.
        kendall_tau: Kendall's τ-b.
        kendall_ci: bootstrap percentile interval of τ.
        kendall_p: two-sided permutation p-value of τ.
        spearman_rho: Spearman's ρ.
        spearman_ci: bootstrap percentile interval of ρ.
        spearman_p: two-sided permutation p-value of ρ.
        expected_sign: +1 when a sharper minimum should mean a larger gap for this metric
            (sharpness measures), −1 for flatness measures (larger = flatter).
        ci_level: coverage of the intervals.
        n_boot: bootstrap replicates drawn.
        n_boot_valid: replicates where the correlation was defined.
        ci_reliable: whether there are enough runs (≥ 8) and defined replicates (≥ 90 %)
            for the bootstrap interval to mean something; when false, the interval is
            reported but should not be read as the uncertainty (use the p-value).
        p_method: ``exact permutation`` or ``Monte Carlo permutation``.
        min_p: the smallest two-sided p-value any ordering of ``n`` runs can reach.
        seed: seed of the bootstrap and the permutation test.
        note: plain-language caveat (few runs, wide interval, not significant).
    """

    metric: str
    against: str
    n: int
    kendall_tau: float
    kendall_ci: tuple[float, float]
    kendall_p: float
    spearman_rho: float
    spearman_ci: tuple[float, float]
    spearman_p: float
    expected_sign: int
    ci_level: float
    n_boot: int
    n_boot_valid: int
    ci_reliable: bool
    p_method: str
    min_p: float
    seed: int
    note: str

    @property
    def significant(self) -> bool:
        """Whether both permutation p-values are below ``1 − ci_level``."""
        alpha = 1.0 - self.ci_level
        return bool(self.kendall_p < alpha and self.spearman_p < alpha)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (non-finite floats as strings)."""
        return {
            "metric": self.metric,
            "against": self.against,
            "n": self.n,
            "kendall_tau": _json_float(self.kendall_tau),
            "kendall_ci": [_json_float(v) for v in self.kendall_ci],
            "kendall_p": _json_float(self.kendall_p),
            "spearman_rho": _json_float(self.spearman_rho),
            "spearman_ci": [_json_float(v) for v in self.spearman_ci],
            "spearman_p": _json_float(self.spearman_p),
            "expected_sign": self.expected_sign,
            "significant": self.significant,
            "ci_level": self.ci_level,
            "n_boot": self.n_boot,
            "n_boot_valid": self.n_boot_valid,
            "ci_reliable": self.ci_reliable,
            "p_method": self.p_method,
            "min_p": _json_float(self.min_p),
            "seed": self.seed,
            "note": self.note,
        }


def _chunked(fn: Any, xb: np.ndarray, yb: np.ndarray, budget: int = 4_000_000) -> np.ndarray:
    """Apply a batched pairwise statistic in row chunks to bound memory (rows × n²)."""
    n = xb.shape[-1]
    step = max(1, budget // max(1, n * n))
    return np.concatenate([fn(xb[i : i + step], yb[i : i + step]) for i in range(0, len(xb), step)])


def _permutations(n: int, rng: np.random.Generator, mc: int) -> tuple[np.ndarray, str]:
    if n <= EXACT_PERMUTATION_MAX:
        return np.array(list(itertools.permutations(range(n)))), "exact permutation"
    return np.argsort(rng.random((mc, n)), axis=1), "Monte Carlo permutation"


def _perm_p(stat_perm: np.ndarray, observed: float, exact: bool) -> float:
    if not math.isfinite(observed):
        return math.nan
    vals = np.nan_to_num(np.abs(stat_perm), nan=0.0)
    hits = int(np.sum(vals >= abs(observed) - 1e-12))
    if exact:
        return hits / vals.shape[0]
    return (hits + 1) / (vals.shape[0] + 1)


def _percentile_ci(vals: np.ndarray, level: float) -> tuple[float, float]:
    v = vals[np.isfinite(vals)]
    if v.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.quantile(v, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def rank_correlation(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    x_err: Sequence[float] | np.ndarray | None = None,
    y_err: Sequence[float] | np.ndarray | None = None,
    metric: str = "metric",
    against: str = "generalization_gap",
    expected_sign: int = 1,
    n_boot: int = 2000,
    ci_level: float = 0.95,
    permutations: int = 9999,
    seed: int = 0,
) -> RankCorrelation:
    """Kendall τ-b and Spearman ρ of ``x`` with ``y``, with bootstrap CIs and p-values.

    Pairs where either value is not finite are dropped. The bootstrap resamples runs with
    replacement; where ``x_err``/``y_err`` give a finite standard error, each replicate
    also perturbs that run's value by Gaussian noise of that size (drawn once per run
    per replicate, so a run drawn twice stays tied with itself). The p-value is a
    two-sided permutation test, exact up to 8 runs.

    Args:
        x: metric values, one per run.
        y: target values (generalization gaps), one per run.
        x_err: standard errors of ``x`` (NaN where unknown).
        y_err: standard errors of ``y``.
        metric: the metric's key (recorded in the result).
        against: the target's key.
        expected_sign: +1 if sharper should mean a larger gap (see :class:`RankCorrelation`).
        n_boot: bootstrap replicates.
        ci_level: coverage of the intervals.
        permutations: Monte Carlo permutations when there are more than 8 runs.
        seed: seed of the bootstrap and permutations.

    Returns:
        A :class:`RankCorrelation` (NaN statistics when fewer than 3 runs remain).

    Example:
        >>> r = rank_correlation([1, 2, 3, 4, 5], [0.1, 0.2, 0.3, 0.5, 0.4], seed=0)
        >>> round(r.kendall_tau, 2), r.n, r.p_method
        (0.8, 5, 'exact permutation')
    """
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    xe = np.full_like(xa, np.nan) if x_err is None else np.asarray(x_err, dtype=float)
    ye = np.full_like(ya, np.nan) if y_err is None else np.asarray(y_err, dtype=float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya, xe, ye = xa[keep], ya[keep], xe[keep], ye[keep]
    n = int(xa.size)
    nan2 = (math.nan, math.nan)
    if n < 3:
        return RankCorrelation(
            metric, against, n, math.nan, nan2, math.nan, math.nan, nan2, math.nan,
            expected_sign, ci_level, 0, 0, False, "none", math.nan, seed,
            f"{n} run(s) with a gap: a rank correlation needs at least 3",
        )  # fmt: skip
    tau = float(kendall_tau_b(xa, ya))
    rho = float(spearman_rho(xa, ya))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    xn = np.where(np.isfinite(xe) & (xe > 0), xe, 0.0)
    yn = np.where(np.isfinite(ye) & (ye > 0), ye, 0.0)
    xb = xa[None, :] + rng.standard_normal((n_boot, n)) * xn[None, :]
    yb = ya[None, :] + rng.standard_normal((n_boot, n)) * yn[None, :]
    rows = np.arange(n_boot)[:, None]
    xb, yb = xb[rows, idx], yb[rows, idx]
    tau_b = _chunked(kendall_tau_b, xb, yb)
    rho_b = spearman_rho(xb, yb)
    valid = int(np.sum(np.isfinite(tau_b) & np.isfinite(rho_b)))
    perms, method = _permutations(n, rng, permutations)
    exact = method.startswith("exact")
    yp = ya[perms]
    tau_p = _chunked(kendall_tau_b, np.broadcast_to(xa, yp.shape), yp)
    rho_p = spearman_rho(np.broadcast_to(xa, yp.shape), yp)
    p_tau = _perm_p(tau_p, tau, exact)
    p_rho = _perm_p(rho_p, rho, exact)
    min_p = 2.0 / math.factorial(n) if n <= 20 else 0.0
    alpha = 1 - ci_level
    tau_ci = _percentile_ci(tau_b, ci_level)
    rho_ci = _percentile_ci(rho_b, ci_level)
    reliable = n >= BOOTSTRAP_MIN_RUNS and valid >= 0.9 * n_boot
    parts = [f"{n} runs"]
    if min_p >= alpha:
        parts.append(
            f"even a perfect ordering of {n} runs has p = {min_p:.2g} ≥ {alpha:.2g}, so no"
            " correlation can be significant"
        )
    if not reliable:
        parts.append(
            f"too few runs for a bootstrap interval (needs ≥ {BOOTSTRAP_MIN_RUNS}): the true"
            " uncertainty is wide, read the permutation p-value instead"
        )
    elif n < 15:
        parts.append("few runs: the bootstrap interval is rough")
    if math.isfinite(p_tau) and min_p < alpha:
        if p_tau < alpha and p_rho < alpha:
            parts.append(f"significant at {alpha:.2g} (permutation test)")
        else:
            parts.append(f"not significant at {alpha:.2g} (permutation test)")
    if reliable and math.isfinite(tau_ci[0]) and tau_ci[0] <= 0 <= tau_ci[1]:
        parts.append("the τ interval includes 0")
    return RankCorrelation(
        metric=metric,
        against=against,
        n=n,
        kendall_tau=tau,
        kendall_ci=tau_ci,
        kendall_p=p_tau,
        spearman_rho=rho,
        spearman_ci=rho_ci,
        spearman_p=p_rho,
        expected_sign=expected_sign,
        ci_level=ci_level,
        n_boot=n_boot,
        n_boot_valid=valid,
        ci_reliable=reliable,
        p_method=method,
        min_p=min_p,
        seed=seed,
        note="; ".join(parts),
    )


# -- experiment statistics (stratified, partial, bootstrap, effect sizes, Holm) ---------
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


def _strata_groups(
    ok: np.ndarray, strata: Sequence[object] | np.ndarray, *arrays: np.ndarray
) -> list[np.ndarray]:
    """Indices (into the filtered arrays) of each stratum with ≥ 3 pairs and variation."""
    sa = np.asarray([str(s) for s in strata])[ok]
    groups = []
    for s in np.unique(sa):
        idx = np.nonzero(sa == s)[0]
        if idx.size >= 3 and all(np.ptp(a[idx]) > 0 for a in arrays):
            groups.append(idx)
    return groups


def _within_strata_perm_p(
    rx: list[np.ndarray], ry: list[np.ndarray], observed: float, permutations: int, seed: int
) -> float:
    """Two-sided permutation p of the size-weighted mean correlation, shuffling within strata.

    ``rx`` and ``ry`` are centred, unit-norm vectors per stratum, so a stratum's
    correlation is their dot product (a permutation keeps the norm).
    """
    if permutations <= 0 or not math.isfinite(observed):
        return float("nan")
    rng = np.random.default_rng(seed)
    n = sum(a.size for a in rx)
    total = np.zeros(permutations)
    for a, b in zip(rx, ry, strict=True):
        perm = np.argsort(rng.random((permutations, b.size)), axis=1)
        total += a.size * (b[perm] @ a)
    hits = int(np.sum(np.abs(total / n) >= abs(observed) - 1e-12))
    return (1 + hits) / (1 + permutations)


def _unit(v: np.ndarray) -> np.ndarray:
    c = v - v.mean()
    norm = float(np.sqrt((c * c).sum()))
    return c / norm if norm > 0 else c


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
    ``p = (1 + #{|ρ_perm| ≥ |ρ|}) / (1 + permutations)``, so it cannot fall below
    ``1 / (1 + permutations)``. Pairs with a non-finite value are dropped; strata with
    fewer than three pairs or no variation are skipped.

    Returns:
        ``(rho, p, n)`` with ``n`` the number of pairs used.

    Example:
        >>> r, p, n = stratified_spearman([0, 1, 2, 0, 1, 2], [1, 2, 3, 5, 6, 7], [0, 0, 0, 1, 1, 1])
        >>> round(r, 12), n
        (1.0, 6)
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    groups = _strata_groups(ok, strata, xa, ya)
    if not groups:
        return float("nan"), float("nan"), 0
    n = int(sum(g.size for g in groups))
    rx = [_unit(rankdata(xa[g])) for g in groups]
    ry = [_unit(rankdata(ya[g])) for g in groups]
    rho = float(sum(a.size * float(a @ b) for a, b in zip(rx, ry, strict=True)) / n)
    return rho, _within_strata_perm_p(rx, ry, rho, permutations, seed), n


def _residualize(r: np.ndarray, design: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(design, r, rcond=None)
    return r - design @ coef


def partial_spearman(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    covariates: Sequence[Sequence[float]] | np.ndarray,
    strata: Sequence[object],
    *,
    permutations: int = 2000,
    seed: int = 0,
) -> tuple[float, float, int]:
    """Spearman ρ of ``x`` and ``y`` controlling for covariates, within strata.

    Within each stratum the ranks of ``x`` and ``y`` are regressed on the ranks of the
    covariates (and a constant); ρ is the size-weighted mean correlation of the residuals.
    The two-sided p-value permutes the residuals of ``y`` within strata (Kennedy's method).
    Rows with any non-finite value are dropped; strata with fewer than ``3 + #covariates``
    rows are skipped, and a covariate with no variation in a stratum is left out there.

    Args:
        x: the factor (e.g. label noise).
        y: the measure.
        covariates: rows of covariate values, shape ``(k, n)``.
        strata: stratum of each row (e.g. the width).
        permutations: Monte Carlo permutations.
        seed: seed of the permutations.

    Returns:
        ``(rho, p, n)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> z = rng.normal(size=60)
        >>> x, y = z + 0.1 * rng.normal(size=60), z + 0.1 * rng.normal(size=60)
        >>> rho, p, n = partial_spearman(x, y, [z], [0] * 60, permutations=200)
        >>> abs(rho) < 0.3, n
        (True, 60)
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    cov = np.atleast_2d(np.asarray(covariates, dtype=np.float64))
    if cov.size == 0:
        cov = np.zeros((0, xa.size))
    ok = np.isfinite(xa) & np.isfinite(ya) & np.all(np.isfinite(cov), axis=0)
    xa, ya, cov = xa[ok], ya[ok], cov[:, ok]
    sa = np.asarray([str(s) for s in strata])[ok]
    rx: list[np.ndarray] = []
    ry: list[np.ndarray] = []
    for s in np.unique(sa):
        idx = np.nonzero(sa == s)[0]
        if idx.size < 3 + cov.shape[0]:
            continue
        cols = [np.ones(idx.size)] + [rankdata(c[idx]) for c in cov if np.ptp(c[idx]) > 0]
        design = np.stack(cols, axis=1)
        a = _residualize(rankdata(xa[idx]), design)
        b = _residualize(rankdata(ya[idx]), design)
        if np.ptp(a) <= 1e-9 or np.ptp(b) <= 1e-9:
            continue
        rx.append(_unit(a))
        ry.append(_unit(b))
    if not rx:
        return float("nan"), float("nan"), 0
    n = int(sum(a.size for a in rx))
    rho = float(sum(a.size * float(a @ b) for a, b in zip(rx, ry, strict=True)) / n)
    return rho, _within_strata_perm_p(rx, ry, rho, permutations, seed), n


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
