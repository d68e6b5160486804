"""Fixture run directories in the FORMATS.md layout, with analytic contents.

Each fake run is a quadratic minimum: the 2D surface is ``c + ½(a α² + b β²)`` (so the
centre row is ``c + ½ a α²``), the Hessian summary says λmax = ``a`` and the SLQ density
is a mixture of two Gaussians; the generalization gap is given explicitly. Tests can so
check every extracted number against the closed form it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from landscape.io.rundir import RunDir

SCAN_CFG = {
    "top_k": 3,
    "bottom_k": 1,
    "trace_matvecs": 30,
    "frobenius_probes": 10,
    "slq_runs": 2,
    "slq_steps": 30,
    "exact": False,
    "tol": 1e-4,
    "strategy": "auto",
    "surface": True,
    "surface_grid": [11, 11],
    "surface_range": 1.0,
    "metrics": True,
    "seed": 0,
}


def make_run(
    path: Path,
    *,
    lam: float,
    gap: float,
    trace: float | None = None,
    loss: float = 0.05,
    grid: tuple[int, ...] = (11, 11),
    num_params: int = 1000,
    factory: str = "landscape.models:digits_cnn",
    surface: bool = True,
    test: bool = True,
    config_overrides: dict[str, Any] | None = None,
    scan_overrides: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    b: float | None = None,
) -> Path:
    """Write a fake, finished scan into ``path`` and return it."""
    scan = {**SCAN_CFG, "surface_grid": list(grid), **(scan_overrides or {})}
    config = {
        "command": "scan",
        "checkpoint": str(path) + ".pt",
        "model": None,
        "model_kwargs": {},
        "data": "digits",
        "loss": "cross_entropy",
        "max_samples": 300,
        "batch_size": 1024,
        "test_fraction": 0.2,
        "device": None,
        "dtype": None,
        "seed": 0,
        "scan": scan,
        **(config_overrides or {}),
    }
    run = RunDir.create(path, config)
    trace = trace if trace is not None else 3.0 * lam
    b = b if b is not None else lam / 4
    summary: dict[str, Any] = {
        "name": path.name,
        "seed": 0,
        "model": {"num_params": num_params, "format": "bundle", "factory": factory},
        "data": {"name": "digits", "num_samples": 240, "num_test_samples": 60 if test else 0},
        "loss_function": "cross_entropy",
        "loss": loss,
        "accuracy": 0.98,
        "test_loss": loss + gap if test else None,
        "test_accuracy": 0.9 if test else None,
        "generalization_gap": gap if test else None,
        "hessian": {
            "top_eigenvalues": [lam, lam / 2, lam / 3],
            "top_residuals": [1e-5, 1e-5, 1e-5],
            "top_converged": [True, True, True],
            "bottom_eigenvalues": [-0.01 * lam],
            "trace": {"mean": trace, "stderr": 0.05 * trace, "n": 30, "method": "hutch++"},
            "frobenius": {"mean": 1.2 * lam, "stderr": 0.01 * lam, "n": 10, "method": "hutch"},
            "exact": False,
            "matvecs": 100,
        },
        "stages_done": ["evaluate", "hessian"],
    }
    if metrics is not None:
        summary["metrics"] = metrics
    ds = xr.Dataset()
    eig = np.linspace(-0.5, 1.2 * lam + 1, 200)
    dens = (
        0.8 * np.exp(-0.5 * (eig / 0.1) ** 2) / 0.1
        + 0.2 * np.exp(-0.5 * ((eig - lam) / 0.3) ** 2) / 0.3
    )
    dens /= np.trapezoid(dens, eig)
    ds["slq_grid"] = ("slq_point", eig)
    ds["slq_density"] = ("slq_point", dens)
    ds["slq_density_stderr"] = ("slq_point", 0.05 * dens)
    if surface:
        axes = ["alpha", "beta", "gamma"][: len(grid)]
        span = float(scan["surface_range"])
        coords = {ax: np.linspace(-span, span, n) for ax, n in zip(axes, grid, strict=True)}
        mesh = np.meshgrid(*coords.values(), indexing="ij")
        curv = [lam, b, b][: len(grid)]
        val = loss + 0.5 * sum(c * m**2 for c, m in zip(curv, mesh, strict=True))
        ds = ds.assign_coords(coords)
        ds["train_loss"] = (axes, val)
        ds["train_accuracy"] = (axes, np.clip(0.98 - val / 10, 0, 1))
        if test:
            ds["test_loss"] = (axes, val + gap)
        ds.attrs.update(
            surface_kind="random",
            surface_normalization="filter",
            surface_ignore="biasbn",
            surface_seed=0,
            surface_dims=len(grid),
            surface_grid="x".join(map(str, grid)),
            surface_center_loss=loss,
        )
        summary["surface"] = {
            "dims": len(grid),
            "grid": list(grid),
            "range": [[-span, span]] * len(grid),
            "normalization": "filter",
            "center_loss": loss,
            "min_loss": loss,
        }
        summary["stages_done"].append("surface")
    run.write_arrays(ds)
    run.update_summary(summary)
    return path


@pytest.fixture()
def fake_runs(tmp_path: Path) -> list[Path]:
    """Four comparable runs whose sharpness order matches their gap order exactly."""
    specs = [("sgd_b16", 2.0, 0.10), ("sgd_b64", 5.0, 0.20), ("sgd_b256", 9.0, 0.35),
             ("adam_b64", 14.0, 0.50)]  # fmt: skip
    return [make_run(tmp_path / n, lam=lam, gap=gap) for n, lam, gap in specs]


@pytest.fixture(scope="session")
def make_run_fn():
    """The fake-run writer, for tests that need variations."""
    return make_run


@pytest.fixture(scope="session")
def fake_runs_shared(tmp_path_factory) -> list[Path]:
    """Like ``fake_runs`` (with metrics sections), shared by read-only tests of a session."""
    root = tmp_path_factory.mktemp("shared_runs")
    specs = [("sgd_b16", 2.0, 0.10), ("sgd_b64", 5.0, 0.20), ("sgd_b256", 9.0, 0.35),
             ("adam_b64", 14.0, 0.50)]  # fmt: skip
    return [
        make_run(
            root / n,
            lam=lam,
            gap=gap,
            metrics={
                "eps_sharpness": {"mean": lam / 10, "stderr": lam / 100, "n": 5},
                "pac_bayes_sigma": {"mean": 1 / lam, "stderr": 0.01, "n": 3},
            },
        )
        for n, lam, gap in specs
    ]


@pytest.fixture(scope="session")
def cli_comparison(tmp_path_factory, fake_runs_shared):
    """``landscape compare RUNS --report`` run once: ``(out_dir, CliRunner result)``."""
    from typer.testing import CliRunner

    from landscape.cli.app import app

    out = tmp_path_factory.mktemp("cli_cmp") / "cmp"
    args = ["compare", *map(str, fake_runs_shared), "--out", str(out), "--report",
            "--no-render-3d", "--bootstrap", "300"]  # fmt: skip
    return out, CliRunner().invoke(app, args)
