"""The run-directory reader: figures and comparisons read the same files, with one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from landscape.errors import RunDirError
from landscape.io.rundir import RunDir
from landscape.io.runs import has_spectrum, has_surface, load_run, open_run, read_results
from landscape.surface.result import Surface


def _surface() -> Surface:
    a = np.linspace(-1.0, 1.0, 5)
    b = np.linspace(-0.5, 0.5, 3)
    loss = np.add.outer(a**2, 2.0 * b**2) + 0.1
    return Surface(
        (a, b),
        loss,
        np.exp(-loss),
        test_loss=loss + 0.05,
        test_accuracy=np.exp(-loss - 0.05),
        kind="plane",
        normalization="none",
        seed=3,
        center_loss=0.1,
        anchors=((0.0, 0.8, 0.1), (0.0, 0.0)),
    )


def test_surface_round_trips_through_the_run_directory(tmp_path: Path) -> None:
    s = _surface()
    run = RunDir.create(tmp_path / "r", {})
    run.write_arrays(s.to_dataset())
    back = Surface.from_run(run.path)
    for name, values in s.variables.items():
        np.testing.assert_array_equal(back.variables[name], values)
    assert back.attrs == s.attrs and back.kind == "plane" and back.seed == 3
    # the minimum 0.1 lies at the centre (2, 1), coordinates (0, 0)
    assert back.argmin() == ((2, 1), 0.1) and back.point((2, 1)) == (0.0, 0.0)
    assert back.contains_center() and back.center_index() == (2, 1)
    # anchors per point, the shorter beta column padded with zeros
    np.testing.assert_array_equal(back.anchor_points(), [[0.0, 0.0], [0.8, 0.0], [0.1, 0.0]])
    assert has_surface(read_results(run.path)) and not has_spectrum(read_results(run.path))


def test_reader_errors_are_one_line(tmp_path: Path, one_line) -> None:
    with pytest.raises(RunDirError) as ei:
        open_run(tmp_path / "nope")
    one_line(ei.value, "does not exist")
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirError) as ei:
        read_results(tmp_path / "f")
    one_line(ei.value, "is a file")
    run = RunDir.create(tmp_path / "r", {})
    with pytest.raises(RunDirError) as ei:
        read_results(run.path)
    one_line(ei.value, "results.nc is missing")
    run.results_path.write_bytes(b"not netcdf")
    with pytest.raises(RunDirError) as ei:
        read_results(run.path)
    one_line(ei.value, "results.nc is unreadable", "rerun the scan")
    # the comparison reader names the same fault, with the scan to rerun
    run.update_summary({"loss": 0.1, "hessian": {"top_eigenvalues": [1.0]}})
    with pytest.raises(RunDirError) as ei:
        load_run(run.path)
    one_line(ei.value, "results.nc is unreadable", "landscape scan")
    assert load_run(run.path, arrays=False).arrays is None


def test_from_results_refuses_what_it_cannot_draw(one_line) -> None:
    with pytest.raises(RunDirError) as ei:
        Surface.from_results(xr.Dataset(), "R/results.nc")
    one_line(ei.value, "R/results.nc holds no surface")
    odd = xr.Dataset({"train_loss": ("x", [1.0, 2.0])}, coords={"x": [0.0, 1.0]})
    with pytest.raises(RunDirError) as ei:
        Surface.from_results(odd)
    one_line(ei.value, "expected (alpha[, beta[, gamma]])")
    flat = xr.Dataset({"train_loss": ("alpha", [1.0, 2.0])}, coords={"alpha": [1.0, 0.0]})
    with pytest.raises(RunDirError) as ei:
        Surface.from_results(flat)
    one_line(ei.value, "axis alpha is not increasing")
