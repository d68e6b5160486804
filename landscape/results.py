"""Typed, frozen results shared by every estimator.

Each result carries the numbers and what is needed to judge them (standard errors,
residuals, convergence, sample counts). ``to_dict`` gives JSON-ready scalars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def _json_float(x: float) -> float | str:
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


@dataclass(frozen=True)
class Estimate:
    """A stochastic estimate: its mean, standard error and number of samples.

    Example:
        >>> Estimate(2.0, 0.1, 10).interval()
        (1.804, 2.196)
    """

    mean: float
    stderr: float
    n: int
    method: str = ""

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """Return the normal-approximation confidence interval ``mean ± z·stderr``."""
        return (round(self.mean - z * self.stderr, 12), round(self.mean + z * self.stderr, 12))

    def to_dict(self) -> dict[str, Any]:
        """Return ``{mean, stderr, n, method}`` with JSON-safe floats."""
        return {
            "mean": _json_float(self.mean),
            "stderr": _json_float(self.stderr),
            "n": int(self.n),
            "method": self.method,
        }


@dataclass(frozen=True)
class Eigenpairs:
    """Eigenvalues (and optionally eigenvectors) of a symmetric operator.

    Attributes:
        values: eigenvalues, in the order requested (descending for top, ascending
            for bottom).
        vectors: array of shape ``(k, dim)`` or ``None`` when not kept.
        residuals: ``‖A v − λ v‖`` for each pair (absolute).
        converged: per-pair flag: residual below ``tol · max(1, |λ_max|)``.
        iterations: Lanczos steps taken.
        matvecs: operator applications used.
    """

    values: np.ndarray
    vectors: np.ndarray | None
    residuals: np.ndarray
    converged: np.ndarray
    iterations: int
    matvecs: int
    which: str = "top"

    @property
    def all_converged(self) -> bool:
        """Whether every returned pair met the tolerance."""
        return bool(np.all(self.converged))

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready lists (without the vectors)."""
        return {
            "values": [_json_float(v) for v in self.values],
            "residuals": [_json_float(v) for v in self.residuals],
            "converged": [bool(c) for c in self.converged],
            "iterations": int(self.iterations),
            "matvecs": int(self.matvecs),
            "which": self.which,
        }


@dataclass(frozen=True)
class SpectralDensity:
    """A smoothed spectral density from stochastic Lanczos quadrature.

    Attributes:
        grid: eigenvalue axis.
        density: density on ``grid`` (averaged over runs), integrating to one.
        density_stderr: standard error of the density across runs.
        nodes: Ritz values per run, shape ``(runs, m)``.
        weights: quadrature weights per run, shape ``(runs, m)``; each row sums to one.
        sigma: Gaussian broadening width.
    """

    grid: np.ndarray
    density: np.ndarray
    density_stderr: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    matvecs: int = 0

    def moment(self, p: int) -> Estimate:
        """Estimate ``tr(H^p)/dim`` from the quadrature nodes and weights."""
        per_run = np.sum(self.weights * self.nodes**p, axis=1)
        n = per_run.shape[0]
        se = float(per_run.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        return Estimate(float(per_run.mean()), se, n, "slq")
