"""Run directories holding analytic surfaces and spectra, for the viz tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from landscape.io.rundir import RunDir


def rosenbrock_like(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A curved valley with its minimum 0.1 at (0.3, -0.01), off the grid centre."""
    return 0.1 + 0.5 * (0.3 - a) ** 2 + 2.0 * (b - a**2 + 0.1) ** 2


def accuracy_of(loss: np.ndarray) -> np.ndarray:
    return np.exp(-0.8 * loss)


def surface_dataset(
    dims: int,
    *,
    kind: str = "random",
    test: bool = True,
    shape: tuple[int, ...] | None = None,
    nonfinite: bool = False,
) -> xr.Dataset:
    """An analytic surface in the results.nc layout (FORMATS.md)."""
    names = ("alpha", "beta", "gamma")[:dims]
    shape = shape or {1: (41,), 2: (41, 31), 3: (9, 11, 13)}[dims]
    if kind == "interpolation" and dims == 1:
        axes = [np.linspace(-0.5, 1.5, shape[0])]
    else:
        axes = [np.linspace(-1.0, 1.0, n) for n in shape]
    grids = np.meshgrid(*axes, indexing="ij")
    if dims == 1:
        a = grids[0]
        if kind == "interpolation":
            loss = 0.08 + 0.6 * (a * (a - 1.0)) ** 2 + 0.25 * np.sin(np.pi * a) ** 2
        else:
            loss = 0.05 + (a - 0.15) ** 2 + 0.2 * np.sin(3.0 * a) ** 2
    elif dims == 2:
        loss = rosenbrock_like(grids[0], grids[1])
    else:
        a, b, g = grids
        loss = 0.1 + a**2 + 2.0 * b**2 + 0.5 * g**2 + 0.3 * a * b
    if nonfinite:
        loss = loss.copy()
        loss[-1, ...] = np.inf
        loss[-2, ...] = np.nan
    data = {
        "train_loss": (names, loss),
        "train_accuracy": (names, accuracy_of(loss)),
    }
    if test:
        test_loss = 1.15 * loss + 0.05
        data["test_loss"] = (names, test_loss)
        data["test_accuracy"] = (names, accuracy_of(test_loss))
    attrs: dict = {
        "surface_kind": kind,
        "surface_normalization": "filter" if kind == "random" else "none",
        "surface_ignore": "biasbn",
        "surface_seed": 0,
        "surface_dims": dims,
        "surface_grid": "x".join(str(n) for n in shape),
        "surface_center_loss": float(loss[tuple(n // 2 for n in shape)]),
    }
    if kind == "pca" and dims == 2:
        t = np.linspace(0.0, 1.0, 12)
        data["trajectory_alpha"] = ("step", 0.85 * (1 - t) * np.cos(5 * t))
        data["trajectory_beta"] = ("step", 0.85 * (1 - t) * np.sin(5 * t))
        attrs["surface_explained_variance"] = [0.623, 0.211]
    if kind == "interpolation":
        attrs["surface_anchor_alpha"] = [0.0, 1.0]
        if dims == 2:
            attrs["surface_anchor_beta"] = [0.0, 0.0]
    if kind == "plane" and dims == 2:
        attrs["surface_anchor_alpha"] = [0.0, 0.8, 0.1]
        attrs["surface_anchor_beta"] = [0.0, 0.0, 0.7]
    coords = {n: ax for n, ax in zip(names, axes, strict=True)}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def spectrum_dataset() -> xr.Dataset:
    """A spectral density with a bulk near zero and a few outliers, plus eigenvalues."""
    grid = np.linspace(-2.0, 32.0, 400)
    sigma = 0.4

    def g(mu: float, w: float) -> np.ndarray:
        return w * np.exp(-0.5 * ((grid - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))

    density = g(0.0, 0.9) + g(1.5, 0.07) + g(12.0, 0.02) + g(30.0, 0.01)
    stderr = 0.15 * density + 1e-5 * density.max()
    return xr.Dataset(
        {
            "slq_grid": ("slq_point", grid),
            "slq_density": ("slq_point", density),
            "slq_density_stderr": ("slq_point", stderr),
            "hessian_top_eigenvalues": ("top_k", np.array([30.1, 12.2, 11.8, 5.0, 3.1])),
            "hessian_bottom_eigenvalues": ("bottom_k", np.array([-0.9, -0.4, -0.1])),
        }
    )


SPECTRUM_SUMMARY = {
    "hessian": {
        "top_eigenvalues": [30.1, 12.2, 11.8, 5.0, 3.1],
        "top_residuals": [1e-7, 2e-7, 3e-7, 1e-3, 1e-7],
        "top_converged": [True, True, True, False, True],
        "bottom_eigenvalues": [-0.9, -0.4, -0.1],
        "trace": {"mean": 81.5, "stderr": 2.1, "n": 99, "method": "hutch++"},
        "exact": False,
    }
}


def make_run(
    root: Path,
    name: str,
    *,
    dims: int | None = 2,
    spectrum: bool = False,
    **kwargs,
) -> Path:
    """A run directory with a surface of ``dims`` (None: none) and optionally a spectrum."""
    run = RunDir.create(root / name, {"command": "test"})
    parts = []
    if dims is not None:
        parts.append(surface_dataset(dims, **kwargs))
    if spectrum:
        parts.append(spectrum_dataset())
        run.update_summary(SPECTRUM_SUMMARY)
    if parts:
        run.write_arrays(xr.merge(parts, combine_attrs="override"))
    run.update_summary({"name": name})
    return run.path


@pytest.fixture()
def run2d(tmp_path: Path) -> Path:
    return make_run(tmp_path, "r2d", dims=2)


@pytest.fixture()
def run_factory(tmp_path: Path):
    def factory(name: str, **kwargs) -> Path:
        return make_run(tmp_path, name, **kwargs)

    return factory


# -- image regression -------------------------------------------------------------------
REFERENCE_DIR = Path(__file__).parent / "reference"
UPDATE = os.environ.get("LANDSCAPE_UPDATE_REFERENCES") == "1"


def _gray(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float64)


def compare_image(actual: Path, name: str, tol: float, tmp_dir: Path) -> float:
    """Compare ``actual`` with ``reference/<name>.png``: mean |Δ| of grayscale (0-255) ≤ tol.

    With LANDSCAPE_UPDATE_REFERENCES=1 the reference is (re)written from ``actual``.
    Returns the measured difference.
    """
    from PIL import Image

    ref = REFERENCE_DIR / f"{name}.png"
    if UPDATE:
        REFERENCE_DIR.mkdir(exist_ok=True)
        with Image.open(actual) as im:
            im.convert("RGB").save(ref, optimize=True)
        return 0.0
    assert ref.exists(), (
        f"missing reference image {ref}; create it with LANDSCAPE_UPDATE_REFERENCES=1 pytest tests/viz"
    )
    a, r = _gray(actual), _gray(ref)
    if a.shape != r.shape:
        # tight bounding boxes may differ by a pixel or two across font builds
        assert all(abs(x - y) <= 3 for x, y in zip(a.shape, r.shape, strict=True)), (
            f"{name}: image size {a.shape} differs from the reference {r.shape}"
        )
        h, w = min(a.shape[0], r.shape[0]), min(a.shape[1], r.shape[1])
        a, r = a[:h, :w], r[:h, :w]
    diff = float(np.abs(a - r).mean())
    if diff > tol:
        out = tmp_dir / f"{name}-diff.png"
        Image.fromarray(np.clip(np.abs(a - r) * 4, 0, 255).astype(np.uint8)).save(out)
        raise AssertionError(
            f"{name}: mean grayscale difference {diff:.3f} > {tol} (actual {actual}, diff {out});"
            " if the change is intended, rerun with LANDSCAPE_UPDATE_REFERENCES=1"
        )
    return diff


@pytest.fixture()
def image_matches(tmp_path: Path):
    def check(actual: Path, name: str, tol: float = 2.0) -> float:
        return compare_image(actual, name, tol, tmp_path)

    return check
