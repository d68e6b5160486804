"""PyVista off-screen renders and the scan/render entry points."""

from __future__ import annotations

import numpy as np
import pytest

from landscape.errors import ConfigError
from landscape.viz import offscreen_available, render_3d, scan_figures

needs_gl = pytest.mark.skipif(
    not offscreen_available(),
    reason="off-screen OpenGL (EGL/OSMesa) is unavailable on this machine",
)


def _rgb(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@needs_gl
def test_surface_render(run_factory, image_matches) -> None:
    run = run_factory("s", dims=2, kind="pca", test=False)
    (png,) = render_3d(run, size=(320, 240))
    assert png.name == "surface3d_iso.png"
    img = _rgb(png)
    assert img.shape == (240, 320, 3)
    # lit, coloured surface on white: many distinct colours, not a blank frame
    assert (img.reshape(-1, 3) != 255).any(axis=1).mean() > 0.2
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200
    image_matches(png, "render_surface_iso", tol=4.0)


@needs_gl
def test_volume_render(run_factory) -> None:
    run = run_factory("v", dims=3, test=False)
    paths = render_3d(run, camera="top", size=(200, 160), contours=False)
    assert [p.name for p in paths] == ["volume_slices_top.png", "volume_isosurfaces_top.png"]
    for p in paths:
        img = _rgb(p)
        assert img.shape == (160, 200, 3)
        assert (img.reshape(-1, 3) != 255).any(axis=1).mean() > 0.1


def test_render_bad_input(run_factory) -> None:
    run = run_factory("one", dims=1, test=False)
    with pytest.raises(ConfigError, match="--camera"):
        render_3d(run, camera="fisheye")
    with pytest.raises(ConfigError, match="1D"):
        render_3d(run)


def test_scan_figures_does_what_applies(run_factory, tmp_path) -> None:
    run = run_factory("scan", dims=2, spectrum=True, test=False)
    names = sorted(p.relative_to(run).as_posix() for p in scan_figures(run, formats=("png",)))
    expected = {
        "figures/hessian_spectrum.png",
        "figures/surface_contour.png",
        "vtk/surface.vts",
    }
    if offscreen_available():
        expected.add("figures/surface3d_iso.png")
    assert set(names) == expected
    from landscape.io.rundir import RunDir

    empty = RunDir.create(tmp_path / "empty", {"command": "scan"})
    assert scan_figures(empty.path) == []
