"""The Hessian spectrum figure: what it draws and how it looks."""

from __future__ import annotations

import numpy as np
import pytest

from landscape.errors import RunDirError
from landscape.io.rundir import RunDir
from landscape.viz.spectrum import load_spectrum, spectrum_axes_figure, spectrum_figure
from landscape.viz.style import style_context


def test_spectrum_draws_density_band_and_eigenvalues(run_factory) -> None:
    run = run_factory("spec", dims=None, spectrum=True)
    data = load_spectrum(run)
    with style_context("paper"):
        fig = spectrum_axes_figure(data, log_y=True)
    dens_ax, eig_ax = fig.axes[:2]
    line = [ln for ln in dens_ax.lines if ln.get_gid() == "density"][0]
    y = np.asarray(line.get_ydata(), dtype=float)
    shown = np.isfinite(y)
    np.testing.assert_array_equal(y[shown], data.density[shown])
    # everything hidden is below the log floor (1e-6 of the peak)
    assert np.all(data.density[~shown] < 1e-6 * data.density.max())
    assert dens_ax.get_yscale() == "log"
    lmax = [ln for ln in dens_ax.lines if ln.get_gid() == "lambda_max"][0]
    assert lmax.get_xdata()[0] == pytest.approx(30.1)
    top = [ln for ln in eig_ax.lines if ln.get_gid() == "top_eigenvalues"][0]
    unconv = [ln for ln in eig_ax.lines if ln.get_gid() == "top_unconverged"][0]
    np.testing.assert_array_equal(top.get_ydata(), [30.1, 12.2, 11.8, 3.1])
    np.testing.assert_array_equal(unconv.get_xdata(), [4])
    bottom = [ln for ln in eig_ax.lines if ln.get_gid() == "bottom_eigenvalues"][0]
    np.testing.assert_array_equal(bottom.get_ydata(), [-0.9, -0.4, -0.1])
    assert any("81.5" in t.get_text() for t in eig_ax.texts)


def test_spectrum_from_summary_only(tmp_path) -> None:
    run = RunDir.create(tmp_path / "s", {})
    run.update_summary({"hessian": {"top_eigenvalues": [5.0, 2.0, "nan"]}})
    paths = spectrum_figure(run.path, formats="png", dpi=40)
    assert [p.name for p in paths] == ["hessian_spectrum.png"]
    assert load_spectrum(run.path).top[2] != load_spectrum(run.path).top[2]  # NaN kept


def test_no_spectrum_is_an_error(run_factory) -> None:
    with pytest.raises(RunDirError, match="no Hessian spectrum"):
        spectrum_figure(run_factory("surf", dims=1))


def test_spectrum_image(run_factory, image_matches) -> None:
    run = run_factory("spec_img", dims=None, spectrum=True)
    (png,) = spectrum_figure(run, formats=("png",), dpi=50)
    image_matches(png, "spectrum")
