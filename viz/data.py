"""Read what the figures need from a run directory, with one-line errors on bad input."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import RunDirError
from landscape.io.rundir import RUN_FILES, RunDir

AXIS_NAMES = ("alpha", "beta", "gamma")
SURFACE_VARIABLES = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
SPECTRUM_VARIABLES = (
    "slq_grid",
    "slq_density",
    "hessian_top_eigenvalues",
    "hessian_bottom_eigenvalues",
    "hessian_exact_spectrum",
)

# Symbols of the directions per axis, as in Li et al. (2018): f(α, β) = L(θ* + αδ + βη).
_RANDOM_SYMBOLS = (r"$\delta$", r"$\eta$", r"$\zeta$")
_STEP_SYMBOLS = (r"$\alpha$", r"$\beta$", r"$\gamma$")
_NORMALIZATION = {"filter": "filter-normalized", "layer": "layer-normalized"}


def open_run(run_dir: str | Path) -> RunDir:
    """Check that ``run_dir`` is a run directory and return it.

    Raises:
        RunDirError: the path is missing, not a directory, or holds none of the run files.

    Example:
        >>> import tempfile
        >>> open_run(tempfile.mkdtemp())  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        landscape.errors.RunDirError: ... is not a run directory ...
    """
    path = Path(run_dir)
    if not path.exists():
        raise RunDirError(f"run directory {path} does not exist; give the folder a scan wrote.")
    if not path.is_dir():
        raise RunDirError(f"{path} is a file, not a run directory; give the folder a scan wrote.")
    if not any((path / name).exists() for name in RUN_FILES):
        raise RunDirError(
            f"{path} is not a run directory (no config.json, summary.json or results.nc);"
            " give the folder `landscape scan` or `landscape surface` wrote."
        )
    return RunDir(path)


def read_results(run_dir: str | Path) -> Any:
    """The run's ``results.nc`` as an ``xarray.Dataset`` (loaded into memory)."""
    run = open_run(run_dir)
    if not run.results_path.exists():
        raise RunDirError(
            f"{run.results_path} is missing; compute the arrays first with `landscape scan`"
            " or `landscape surface`."
        )
    try:
        return run.read_arrays()
    except (OSError, ValueError) as exc:
        raise RunDirError(
            f"{run.results_path} cannot be read ({type(exc).__name__}); rerun the scan."
        ) from exc


def has_surface(ds: Any) -> bool:
    """Whether a results dataset holds a surface (``train_loss`` over alpha[, beta[, gamma]]).

    Example:
        >>> import xarray as xr
        >>> has_surface(xr.Dataset())
        False
    """
    return "train_loss" in ds and ds["train_loss"].dims[:1] == ("alpha",)


def has_spectrum(ds: Any, summary: dict[str, Any] | None = None) -> bool:
    """Whether there is a Hessian spectrum (SLQ density or eigenvalues) to plot."""
    if any(v in ds for v in SPECTRUM_VARIABLES):
        return True
    hess = (summary or {}).get("hessian") or {}
    return bool(hess.get("top_eigenvalues"))


@dataclass(frozen=True, eq=False)
class SurfaceData:
    """A surface read from ``results.nc``, with arrays ordered as ``names``.

    Attributes:
        names: axis names (``alpha``, ``beta``, ``gamma``), one per dimension.
        axes: coordinates of each axis (float64).
        variables: ``train_loss`` etc. present in the file, shaped like the grid.
        attrs: the dataset's ``surface_*`` attributes.
        trajectory: PCA trajectory projected on the axes, shape ``(steps, k)``, or None.
        anchors: coordinates of the defining checkpoints (interpolation/plane), one
            point per row, or None.
    """

    names: tuple[str, ...]
    axes: tuple[np.ndarray, ...]
    variables: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)
    trajectory: np.ndarray | None = None
    anchors: np.ndarray | None = None

    @property
    def dims(self) -> int:
        """Number of axes (1, 2 or 3)."""
        return len(self.names)

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid points per axis."""
        return tuple(len(a) for a in self.axes)

    @property
    def kind(self) -> str:
        """Direction kind (``random``, ``pca``, ``interpolation``, ``plane``, ``eigen``)."""
        return str(self.attrs.get("surface_kind", "random"))

    @property
    def normalization(self) -> str:
        """Direction normalization (``filter``, ``layer``, ``none``)."""
        return str(self.attrs.get("surface_normalization", "none"))

    def argmin(self, name: str = "train_loss") -> tuple[tuple[int, ...], float] | None:
        """Grid index and value of the smallest finite value of ``name`` (None if none)."""
        values = self.variables[name]
        finite = np.isfinite(values)
        if not finite.any():
            return None
        masked = np.where(finite, values, np.inf)
        idx = np.unravel_index(int(np.argmin(masked)), values.shape)
        return tuple(int(i) for i in idx), float(values[idx])

    def point(self, index: tuple[int, ...]) -> tuple[float, ...]:
        """Coordinates of a grid index."""
        return tuple(float(a[i]) for a, i in zip(self.axes, index, strict=True))

    def center_index(self) -> tuple[int, ...]:
        """Grid index nearest the centre θ* (coordinate 0 on every axis)."""
        return tuple(int(np.argmin(np.abs(a))) for a in self.axes)

    def contains_center(self) -> bool:
        """Whether the centre θ* lies inside the grid's range."""
        return all(a.min() <= 0.0 <= a.max() for a in self.axes)

    def explained_variance(self) -> list[float] | None:
        """PCA explained-variance ratios, if stored."""
        ev = self.attrs.get("surface_explained_variance")
        if ev is None:
            return None
        return [float(x) for x in np.atleast_1d(ev)]

    def axis_label(self, i: int) -> str:
        """A label saying what axis ``i`` moves along.

        Random directions read ``δ (filter-normalized)``, ``η (…)``, ``ζ (…)``; PCA axes
        ``PC1 (62.3% var.)``; Hessian eigenvectors ``v₁ (Hessian eigenvector)``;
        interpolation ``α (θ₀ → θ₁)``; planes ``α (plane of θ₀, θ₁, θ₂)``.
        """
        norm = _NORMALIZATION.get(self.normalization)
        kind = self.kind
        if kind == "pca":
            ev = self.explained_variance()
            if ev is not None and i < len(ev):
                return f"PC{i + 1} ({100.0 * ev[i]:.1f}% var.)"
            return f"PC{i + 1}"
        if kind == "eigen":
            base = rf"$v_{i + 1}$ (Hessian eigenvector)"
            return base
        if kind == "interpolation" and i == 0:
            return rf"{_STEP_SYMBOLS[0]} ($\theta_0 \to \theta_1$)"
        if kind == "plane" and i < 2:
            return rf"{_STEP_SYMBOLS[i]} (plane of $\theta_0, \theta_1, \theta_2$)"
        sym = _RANDOM_SYMBOLS[i]
        return f"{sym} ({norm})" if norm else sym


def read_surface(ds: Any, run_path: Path | None = None) -> SurfaceData:
    """Extract the surface of a results dataset.

    Raises:
        RunDirError: no ``train_loss`` or axes other than alpha/beta/gamma.
    """
    where = f"{run_path / 'results.nc'}" if run_path is not None else "the results"
    if "train_loss" not in ds:
        raise RunDirError(
            f"{where} holds no surface (no train_loss); compute one with `landscape surface`"
            " or `landscape scan`."
        )
    dims = tuple(ds["train_loss"].dims)
    if not 1 <= len(dims) <= 3 or dims != AXIS_NAMES[: len(dims)]:
        raise RunDirError(
            f"{where} has train_loss over {dims}, expected (alpha[, beta[, gamma]]);"
            " recompute the surface."
        )
    axes = tuple(np.asarray(ds[n].values, dtype=np.float64) for n in dims)
    for n, a in zip(dims, axes, strict=True):
        if a.size < 2 or not np.all(np.isfinite(a)) or not np.all(np.diff(a) > 0):
            raise RunDirError(
                f"{where} axis {n} is not increasing with at least 2 points; recompute it."
            )
    variables: dict[str, np.ndarray] = {}
    for v in SURFACE_VARIABLES:
        if v in ds and set(ds[v].dims) == set(dims):
            variables[v] = np.asarray(ds[v].transpose(*dims).values, dtype=np.float64)
    attrs = {k: _plain(v) for k, v in ds.attrs.items() if str(k).startswith("surface_")}
    traj = None
    tnames = [f"trajectory_{n}" for n in dims if f"trajectory_{n}" in ds]
    if tnames:
        traj = np.stack([np.asarray(ds[t].values, dtype=np.float64) for t in tnames], axis=1)
    anchors = None
    cols = [attrs.get(f"surface_anchor_{n}") for n in dims]
    if any(c is not None for c in cols):
        lists = [np.atleast_1d(np.asarray(c if c is not None else [], dtype=float)) for c in cols]
        n_pts = max(len(c) for c in lists)
        anchors = np.zeros((n_pts, len(dims)))
        for k, c in enumerate(lists):
            anchors[: len(c), k] = c
    return SurfaceData(dims, axes, variables, attrs, traj, anchors)


def load_surface(run_dir: str | Path) -> SurfaceData:
    """Read the surface stored in ``run_dir/results.nc``.

    Example:
        >>> import tempfile, xarray as xr
        >>> run = RunDir.create(Path(tempfile.mkdtemp()) / "r", {})
        >>> run.write_arrays(xr.Dataset({"train_loss": ("alpha", [1.0, 0.0, 1.0])},
        ...                             coords={"alpha": [-1.0, 0.0, 1.0]}))
        >>> load_surface(run.path).argmin()
        ((1,), 0.0)
    """
    path = Path(run_dir)
    return read_surface(read_results(path), path)


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v
