"""Trajectory figures: the time series, the PCA path over its surface, the GIF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from landscape.errors import RunDirError
from landscape.io.rundir import RunDir
from landscape.viz.trajectory_plots import path_figure, series_figure, trajectory_figures


def _run(tmp_path: Path, surface: bool = True) -> RunDir:
    steps = np.array([0, 10, 20, 40])
    a = np.linspace(-2.0, 1.0, 7)
    b = np.linspace(-1.0, 1.0, 5)
    data = {
        "ckpt_train_loss": ("step", [2.0, 1.0, 0.5, 0.2]),
        "ckpt_test_loss": ("step", [2.1, 1.2, 0.7, 0.5]),
        "lambda_max": ("step", [1.0, 4.0, 3.0, 2.5]),
        "lambda_max_error": ("step", [1e-6] * 4),
        "trace": ("step", [5.0, 20.0, 15.0, 12.0]),
        "trace_stderr": ("step", [0.5, 1.0, 0.8, 0.6]),
        "llc": ("step", [np.nan] * 4),
        "weight_alpha": ("step", [3.0, 2.5, 2.0, 1.9]),
        "param_norm": ("step", [1.0, 2.0, 2.5, 2.7]),
        "distance_first": ("step", [0.0, 1.0, 1.5, 1.8]),
        "distance_last": ("step", [1.8, 0.9, 0.4, 0.0]),
        "path_pc1": ("step", [-1.8, -0.9, -0.3, 0.0]),
        "path_pc2": ("step", [0.0, -0.5, -0.2, 0.0]),
    }
    coords: dict[str, object] = {"step": steps}
    if surface:
        data["train_loss"] = (("alpha", "beta"), np.add.outer(a**2, b**2))
        coords.update(alpha=a, beta=b)
    ds = xr.Dataset(data, coords=coords, attrs={"pca_explained_variance": [0.832, 0.151]})
    run = RunDir.create(tmp_path / "r", {})
    run.write_arrays(ds)
    return run


def test_figures_are_non_empty_pngs(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert trajectory_figures(run.path) == []
    for name in ("trajectory_series.png", "trajectory_path.png"):
        data = (run.path / "figures" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_path_axes_carry_the_explained_variance(tmp_path: Path) -> None:
    ds = _run(tmp_path).read_arrays()
    ax = path_figure(ds).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("PC1 (83.2%)", "PC2 (15.1%)")
    (path,) = [ln for ln in ax.lines if ln.get_gid() == "path"]
    np.testing.assert_allclose(path.get_xdata(), ds["path_pc1"].values)


def test_series_say_when_a_measure_was_not_taken(tmp_path: Path) -> None:
    fig = series_figure(_run(tmp_path).read_arrays())
    llc_ax = fig.axes[4]
    assert [t.get_text() for t in llc_ax.texts] == ["not measured"]
    lam = [ln for ln in fig.axes[2].lines if ln.get_gid() == "lambda_max"]
    assert lam and lam[0].get_ydata().tolist() == [1.0, 4.0, 3.0, 2.5]


def test_animation_writes_a_gif(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert trajectory_figures(run.path, animate=True) == []
    assert (run.path / "figures" / "trajectory_path.gif").read_bytes()[:4] == b"GIF8"
    assert not list((run.path / "figures").glob(".*tmp*"))


def test_animation_is_skipped_with_a_note_without_pillow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib import animation

    monkeypatch.setattr(animation.PillowWriter, "isAvailable", classmethod(lambda cls: False))
    run = _run(tmp_path)
    notes = trajectory_figures(run.path, animate=True)
    assert notes and "PillowWriter is unavailable" in notes[0]
    assert not (run.path / "figures" / "trajectory_path.gif").exists()


def test_without_a_surface_only_the_series_is_drawn(tmp_path: Path) -> None:
    run = _run(tmp_path, surface=False)
    notes = trajectory_figures(run.path, animate=True)
    assert "no PCA surface" in notes[0]
    assert (run.path / "figures" / "trajectory_series.png").exists()
    assert not (run.path / "figures" / "trajectory_path.png").exists()


def test_a_run_without_a_trajectory_is_refused(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", {})
    run.write_arrays(xr.Dataset({"x": ("i", [1.0])}))
    with pytest.raises(RunDirError, match="holds no trajectory"):
        trajectory_figures(run.path)
