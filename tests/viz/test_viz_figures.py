"""Matplotlib figures: content (markers, labels, data) and image regression."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from landscape.errors import ConfigError, RunDirError
from landscape.surface.result import Surface
from landscape.viz.style import style_context
from landscape.viz.surface_plots import (
    contour_figure,
    contour_levels,
    curve_figure,
    slices_figure,
    surface_figures,
)


def _line(fig, gid: str, ax: int = 0):
    found = [ln for ln in fig.axes[ax].lines if ln.get_gid() == gid]
    assert found, f"no line with gid {gid!r}"
    return found[0]


def test_import_is_lazy_and_headless() -> None:
    code = (
        "import sys, landscape.viz as v; v.set_style; v.surface_figures;"
        "bad=[m for m in ('matplotlib','pyvista','vtk') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_contour_marks_minimum_centre_and_trajectory(run_factory) -> None:
    surf = Surface.from_run(run_factory("pca", dims=2, kind="pca", test=False))
    loss = surf.variables["train_loss"]
    i, j = np.unravel_index(np.argmin(loss), loss.shape)
    with style_context("paper"):
        fig = contour_figure(surf)
    mn = _line(fig, "minimum")
    assert (mn.get_xdata()[0], mn.get_ydata()[0]) == (surf.axes[0][i], surf.axes[1][j])
    # the analytic minimum of the fixture is at (0.3, -0.01)
    assert abs(surf.axes[0][i] - 0.3) < 0.05 and abs(surf.axes[1][j] + 0.01) < 0.07
    c = _line(fig, "center")
    assert (c.get_xdata()[0], c.get_ydata()[0]) == (0.0, 0.0)
    tr = _line(fig, "trajectory")
    np.testing.assert_array_equal(tr.get_xdata(), surf.trajectory[:, 0])
    np.testing.assert_array_equal(tr.get_ydata(), surf.trajectory[:, 1])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "PC1 (62.3% var.)" and ax.get_ylabel() == "PC2 (21.1% var.)"
    assert ax.get_aspect() == 1.0  # equal ranges → equal aspect
    cbar_labels = [a.get_ylabel() for a in fig.axes[1:]]
    assert "train loss" in cbar_labels


def test_contour_labels_anchors_and_unequal_aspect(run_factory) -> None:
    surf = Surface.from_run(run_factory("rand", dims=2, test=False, shape=(21, 11)))
    with style_context("paper"):
        fig = contour_figure(surf)
    assert fig.axes[0].get_xlabel() == r"$\delta$ (filter-normalized)"
    assert fig.axes[0].get_ylabel() == r"$\eta$ (filter-normalized)"
    plane = Surface.from_run(run_factory("plane", dims=2, kind="plane", test=False))
    with style_context("paper"):
        fig = contour_figure(plane)
    an = _line(fig, "anchors")
    np.testing.assert_array_equal(an.get_xdata(), [0.0, 0.8, 0.1])
    np.testing.assert_array_equal(an.get_ydata(), [0.0, 0.0, 0.7])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == [r"$\theta_0$", r"$\theta_1$", r"$\theta_2$"]


def test_nonfinite_points_are_hatched_and_ignored(run_factory) -> None:
    surf = Surface.from_run(run_factory("nan", dims=2, nonfinite=True, test=False))
    with style_context("paper"):
        fig = contour_figure(surf)
    assert any(p.get_gid() == "nonfinite" for p in fig.axes[0].patches)
    mn = _line(fig, "minimum")
    assert np.isfinite(mn.get_ydata()[0])
    assert "0.1002" in mn.get_label()


def test_levels() -> None:
    lin = contour_levels(0.13, 7.9)
    assert lin[0] <= 0.13 and lin[-1] >= 7.9 and np.allclose(np.diff(lin), np.diff(lin)[0])
    log = contour_levels(0.01, 10.0, log=True, n=4)
    np.testing.assert_allclose(log, [0.01, 0.1, 1.0, 10.0])
    with pytest.raises(ConfigError, match="--log-levels"):
        contour_levels(-1.0, 1.0, log=True)
    flat = contour_levels(2.0, 2.0)
    assert flat[0] < 2.0 < flat[-1]


def test_curve_figure_data_accuracy_and_anchors(run_factory) -> None:
    surf = Surface.from_run(run_factory("interp", dims=1, kind="interpolation"))
    with style_context("paper"):
        fig = curve_figure(surf)
    np.testing.assert_array_equal(
        _line(fig, "train_loss").get_ydata(), surf.variables["train_loss"]
    )
    np.testing.assert_array_equal(_line(fig, "test_loss").get_ydata(), surf.variables["test_loss"])
    acc = [ln for ln in fig.axes[1].lines if ln.get_gid() == "train_accuracy"]
    np.testing.assert_array_equal(acc[0].get_ydata(), surf.variables["train_accuracy"])
    mn = _line(fig, "minimum")
    k = int(np.argmin(surf.variables["train_loss"]))
    assert (
        mn.get_xdata()[0] == surf.axes[0][k]
        and mn.get_ydata()[0] == surf.variables["train_loss"][k]
    )
    assert fig.axes[0].get_xlabel() == r"$\alpha$ ($\theta_0 \to \theta_1$)"
    assert {ln.get_gid() for ln in fig.axes[0].lines} >= {"anchor0", "anchor1", "center"}


def test_slices_go_through_the_centre(run_factory) -> None:
    surf = Surface.from_run(run_factory("vol", dims=3))
    with style_context("paper"):
        fig = slices_figure(surf)
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert titles[:3] == [
        r"train loss, $\gamma$ = 0",
        r"train loss, $\beta$ = 0",
        r"train loss, $\alpha$ = 0",
    ]
    assert titles[3].startswith("test loss")
    # the fixture's minimum is the centre, so each slice's minimum sits at (0, 0)
    for ax in fig.axes[:6]:
        mn = [ln for ln in ax.lines if ln.get_gid() == "minimum"][0]
        assert (mn.get_xdata()[0], mn.get_ydata()[0]) == (0.0, 0.0)


def test_surface_figures_files_and_reproducible_bytes(run_factory) -> None:
    run = run_factory("r2", dims=2, test=False)
    first = surface_figures(run, formats=("pdf", "svg"))
    assert [p.name for p in first] == ["surface_contour.pdf", "surface_contour.svg"]
    blobs = [p.read_bytes() for p in first]
    again = surface_figures(run, formats="pdf,svg")
    assert [p.read_bytes() for p in again] == blobs
    assert b"CreationDate" not in blobs[0]
    assert b"/FontFile2" in blobs[0]  # TrueType fonts embedded (journals reject Type 3)


def test_paper_png_is_300_dpi_single_column(run_factory) -> None:
    from PIL import Image

    run = run_factory("r1", dims=1, test=False)
    (png,) = surface_figures(run, formats=("png",))
    with Image.open(png) as im:
        dpi = im.info["dpi"]
        w = im.size[0]
    assert round(dpi[0]) == 300
    assert 0.85 * 3.25 * 300 < w <= 3.25 * 300 + 2


def test_bad_inputs(tmp_path: Path, run_factory) -> None:
    with pytest.raises(RunDirError, match="does not exist"):
        surface_figures(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="not a run directory"):
        surface_figures(tmp_path / "empty")
    spec_only = run_factory("spec", dims=None, spectrum=True)
    with pytest.raises(RunDirError, match="no surface"):
        surface_figures(spec_only)
    run = run_factory("ok", dims=1, test=False)
    with pytest.raises(ConfigError, match="--format"):
        surface_figures(run, formats=("png", "gif"))
    with pytest.raises(ConfigError, match="--style"):
        surface_figures(run, style="poster")


def test_set_style() -> None:
    import matplotlib

    from landscape.viz import set_style

    with matplotlib.rc_context():
        set_style("talk")
        assert matplotlib.rcParams["font.size"] == 14.0
        set_style("paper")
        assert matplotlib.rcParams["font.size"] == 8.0
        assert matplotlib.rcParams["savefig.dpi"] == 300
        assert matplotlib.rcParams["pdf.fonttype"] == 42


# -- image regression (small, low-dpi renders of the fixtures) -----------------------------
@pytest.mark.parametrize(
    ("name", "kwargs", "stem"),
    [
        ("contour_pca", dict(dims=2, kind="pca", test=False), "surface_contour"),
        ("contour_log_nonfinite", dict(dims=2, test=False, nonfinite=True), "surface_contour"),
        ("curve_interp", dict(dims=1, kind="interpolation"), "surface_1d"),
        ("slices", dict(dims=3, test=False), "surface_slices"),
    ],
)
def test_figure_images(run_factory, image_matches, name, kwargs, stem) -> None:
    run = run_factory(name, **kwargs)
    log = "log" in name
    paths = surface_figures(run, formats=("png",), dpi=60, log_levels=log)
    png = [p for p in paths if p.stem == stem][0]
    image_matches(png, name)
