"""VTK files read back exactly; the HTML scene is self-contained and holds the data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr

from landscape.io.rundir import RunDir
from landscape.surface.result import Surface
from landscape.viz import render_html, write_vtk


def _read(path):
    import pyvista as pv

    return pv.read(path)


@pytest.mark.parametrize("dims", [1, 2])
def test_vts_round_trip(run_factory, dims: int) -> None:
    run = run_factory(f"v{dims}", dims=dims)
    surf = Surface.from_run(run)
    (path,) = write_vtk(run)
    assert path.name == "surface.vts"
    grid = _read(path)
    shape = surf.shape + ((1,) if dims == 1 else ())
    assert tuple(grid.dimensions) == (*shape, 1)
    pts = np.asarray(grid.points).reshape((*shape, 3), order="F")
    a, b = np.meshgrid(surf.axes[0], surf.axes[1] if dims == 2 else [0.0], indexing="ij")
    np.testing.assert_array_equal(pts[..., 0], a)
    np.testing.assert_array_equal(pts[..., 1], b)
    loss = surf.variables["train_loss"].reshape(shape)
    offset = float(grid.field_data["height_offset"][0])
    scale = float(grid.field_data["height_scale"][0])
    assert offset == loss.min()
    extent = max(float(ax[-1] - ax[0]) for ax in surf.axes)
    assert (loss.max() - offset) * scale == pytest.approx(0.5 * extent)
    np.testing.assert_array_equal(pts[..., 2], (loss - offset) * scale)
    for name in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        back = np.asarray(grid.point_data[name]).reshape(shape, order="F")
        np.testing.assert_array_equal(back, surf.variables[name].reshape(shape))


def test_vts_hides_nonfinite_points(run_factory) -> None:
    run = run_factory("vnan", dims=2, nonfinite=True, test=False)
    grid = _read(write_vtk(run)[0])
    finite = np.asarray(grid.point_data["finite"]).astype(bool)
    loss = np.asarray(grid.point_data["train_loss"])
    np.testing.assert_array_equal(finite, np.isfinite(loss))
    assert (~finite).sum() == 2 * 31
    ghosts = np.asarray(grid.point_data["vtkGhostType"])
    assert np.all(ghosts[~finite] != 0) and np.all(ghosts[finite] == 0)
    assert np.isfinite(np.asarray(grid.points)).all()


def test_vti_round_trip(run_factory) -> None:
    run = run_factory("v3", dims=3)
    surf = Surface.from_run(run)
    (path,) = write_vtk(run)
    assert path.name == "volume.vti"
    img = _read(path)
    assert tuple(img.dimensions) == surf.shape
    np.testing.assert_array_equal(img.origin, [ax[0] for ax in surf.axes])
    for k, ax in enumerate(surf.axes):
        coords = img.origin[k] + img.spacing[k] * np.arange(len(ax))
        np.testing.assert_allclose(coords, ax, rtol=0, atol=1e-14)
    for name in ("train_loss", "test_loss", "train_accuracy"):
        back = np.asarray(img.point_data[name]).reshape(surf.shape, order="F")
        np.testing.assert_array_equal(back, surf.variables[name])


def test_uneven_3d_axes_become_rectilinear(tmp_path) -> None:
    run = RunDir.create(tmp_path / "u", {})
    a = np.array([-1.0, -0.2, 0.0, 0.3, 1.0])
    vol = a[:, None, None] ** 2 + a[None, :, None] ** 2 + a[None, None, :] ** 2
    run.write_arrays(
        xr.Dataset(
            {"train_loss": (("alpha", "beta", "gamma"), vol)},
            coords={"alpha": a, "beta": a, "gamma": a},
        )
    )
    (path,) = write_vtk(run.path)
    assert path.name == "volume.vtr"
    grid = _read(path)
    np.testing.assert_array_equal(grid.x, a)
    back = np.asarray(grid.point_data["train_loss"]).reshape(vol.shape, order="F")
    np.testing.assert_array_equal(back, vol)


def _data_block(text: str) -> dict:
    m = re.search(r'<script id="landscape-data" type="application/json">(.*?)</script>', text, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_html_is_self_contained_and_holds_the_data(run_factory, dims: int) -> None:
    run = run_factory(
        f"h{dims}", dims=dims, nonfinite=(dims == 2), kind="pca" if dims == 2 else "random"
    )
    surf = Surface.from_run(run)
    path = render_html(run)
    assert path == run / "surface.html"
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"<script[^>]*\bsrc=", text)
    assert not re.search(r"<link[^>]*\bhref=", text)
    data = _data_block(text)
    assert data["shape"] == list(surf.shape)
    for k, ax in enumerate(surf.axes):
        assert data["axes"][k] == ax.tolist()
    for name, values in surf.variables.items():
        expected = [v if np.isfinite(v) else None for v in values.ravel().tolist()]
        assert data["variables"][name] == expected
    idx = np.unravel_index(
        np.nanargmin(
            np.where(
                np.isfinite(surf.variables["train_loss"]), surf.variables["train_loss"], np.nan
            )
        ),
        surf.shape,
    )
    assert data["min"]["index"] == [int(i) for i in idx]
    if dims == 2:
        assert data["trajectory"] == surf.trajectory.tolist()
    node = shutil.which("node")
    if node:  # the viewer script parses
        script = text.rsplit("<script>", 1)[1].split("</script>", 1)[0]
        js = path.with_suffix(".js")
        js.write_text(script)
        proc = subprocess.run([node, "--check", str(js)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_height_scale_linear_and_log() -> None:
    from landscape.viz.vtk_export import HeightScale

    loss = np.array([0.01, 0.1, 1.0, 10.0, np.nan, np.inf])
    lin = HeightScale.fit(loss, extent=2.0)
    h = lin.apply(loss)
    assert h[0] == 0.0 and h[3] == pytest.approx(1.0) and not np.isfinite(h[4:]).any()
    log = HeightScale.fit(loss[:4], extent=2.0, log=True)
    np.testing.assert_allclose(log.apply(loss[:4]), [0.0, 1 / 3, 2 / 3, 1.0])
    assert np.isnan(log.apply(np.array([-1.0, 0.0]))).all()
    assert "log10" in log.describe()
