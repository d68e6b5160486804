"""The arrays a comparison plots, read from each run's ``results.nc``.

Pure data extraction (no plotting): a 1D loss curve (a 1D surface, or the centre row of a
2D one), a 2D loss grid, and the SLQ spectral density.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landscape.io.runs import RunData


@dataclass(frozen=True)
class Curve:
    """A loss curve along the first direction.

    Attributes:
        alpha: step sizes along the direction.
        values: the variable along ``alpha``.
        source: ``1d`` (a 1D surface) or ``2d centre row`` (β = the value nearest 0).
    """

    alpha: np.ndarray
    values: np.ndarray
    source: str


@dataclass(frozen=True)
class Grid:
    """A 2D surface: ``values[i, j]`` at ``(alpha[i], beta[j])``."""

    alpha: np.ndarray
    beta: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Density:
    """A smoothed Hessian spectral density (SLQ) and its standard error."""

    grid: np.ndarray
    density: np.ndarray
    stderr: np.ndarray | None


def curve(run: RunData, var: str = "train_loss") -> Curve | None:
    """The 1D curve of ``var`` (``None`` when the run has no such surface).

    For a 2D (or 3D) surface the curve is the centre row: β (and γ) fixed at the grid
    value nearest 0, so the curve passes through the trained parameters.

    Example:
        >>> from pathlib import Path
        >>> curve(RunData(Path("r"), "r", {}, {})) is None
        True
    """
    ds = run.arrays
    if ds is None or var not in ds or "alpha" not in ds[var].dims:
        return None
    da = ds[var]
    sel = {}
    for d in da.dims:
        if d == "alpha":
            continue
        coord = np.asarray(ds[d].values, dtype=float)
        sel[d] = int(np.argmin(np.abs(coord)))
    da = da.isel(sel).transpose("alpha")
    src = "1d" if da.ndim == 1 and not sel else f"{len(sel) + 1}d centre row"
    return Curve(np.asarray(ds["alpha"].values, float), np.asarray(da.values, float), src)


def grid2d(run: RunData, var: str = "train_loss") -> Grid | None:
    """The 2D grid of ``var`` over ``(alpha, beta)`` (a 3D surface is cut at γ ≈ 0).

    Example:
        >>> from pathlib import Path
        >>> grid2d(RunData(Path("r"), "r", {}, {})) is None
        True
    """
    ds = run.arrays
    if ds is None or var not in ds:
        return None
    da = ds[var]
    if "alpha" not in da.dims or "beta" not in da.dims:
        return None
    sel = {
        d: int(np.argmin(np.abs(np.asarray(ds[d].values, float))))
        for d in da.dims
        if d not in ("alpha", "beta")
    }
    da = da.isel(sel).transpose("alpha", "beta")
    return Grid(
        np.asarray(ds["alpha"].values, float),
        np.asarray(ds["beta"].values, float),
        np.asarray(da.values, float),
    )


def density(run: RunData) -> Density | None:
    """The SLQ spectral density stored by the scan (``None`` when absent).

    Example:
        >>> from pathlib import Path
        >>> density(RunData(Path("r"), "r", {}, {})) is None
        True
    """
    ds = run.arrays
    if ds is None or "slq_grid" not in ds or "slq_density" not in ds:
        return None
    se = ds["slq_density_stderr"].values if "slq_density_stderr" in ds else None
    return Density(
        np.asarray(ds["slq_grid"].values, float),
        np.asarray(ds["slq_density"].values, float),
        None if se is None else np.asarray(se, float),
    )
