"""Comparison figures: shared scales, the plotted numbers, formats, and the 3D panel."""

from __future__ import annotations

import numpy as np
import pytest

from landscape.compare import compare_runs, load_runs
from landscape.viz import compare_plots as cp


@pytest.fixture(scope="module")
def comparison(fake_runs_shared):
    return compare_runs(fake_runs_shared, n_boot=200)


def test_contours_share_one_colour_scale(comparison):
    fig = cp.contours_figure(list(comparison.runs))
    sets = [c for ax in fig.axes for c in ax.collections if hasattr(c, "levels") and c.filled]
    assert len(sets) == 4
    lv = sets[0].levels
    for s in sets[1:]:
        np.testing.assert_allclose(s.levels, lv)
        assert (s.norm.vmin, s.norm.vmax) == (sets[0].norm.vmin, sets[0].norm.vmax)
    lo = min(float(np.min(r.arrays["train_loss"])) for r in comparison.runs)
    hi = max(float(np.max(r.arrays["train_loss"])) for r in comparison.runs)
    assert lv[0] == pytest.approx(lo) and lv[-1] == pytest.approx(hi)
    assert len(fig.axes) == 5  # four panels and one colour bar


def test_curves_plot_the_centre_rows(comparison):
    fig = cp.curves_figure(list(comparison.runs))
    train_ax = fig.axes[0]
    curves = [ln for ln in train_ax.get_lines() if len(ln.get_xdata()) > 1]
    assert [ln.get_label() for ln in curves] == list(comparison.table.runs)
    for ln, lam in zip(curves, (2.0, 5.0, 9.0, 14.0), strict=True):
        a = np.asarray(ln.get_xdata())
        np.testing.assert_allclose(ln.get_ydata(), 0.05 + 0.5 * lam * a**2)
    assert fig.axes[1].get_title() == "test loss"


def test_density_is_log_scaled_and_marks_lambda_max(comparison):
    fig = cp.density_figure(list(comparison.runs))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    vlines = [ln for ln in ax.get_lines() if len(set(ln.get_xdata())) == 1]
    assert sorted(float(ln.get_xdata()[0]) for ln in vlines) == [2.0, 5.0, 9.0, 14.0]


def test_scatter_reports_the_correlation(comparison):
    fig = cp.gap_scatter_figure(comparison, ["lambda_max"])
    ax = fig.axes[0]
    text = ax.get_legend().get_texts()[0].get_text()
    assert "τ = +1.00" in text and "p = 0.083" in text and "too few for a CI" in text
    assert "flatter" in ax.get_xlabel()


def test_all_formats_written(tmp_path, comparison):
    png, pdf, svg = cp.save_figure(
        cp.density_figure(list(comparison.runs)), tmp_path / "density", ("png", "pdf", "svg")
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert "<svg" in svg.read_text()[:2000]
    with pytest.raises(Exception, match="--format"):
        cp.comparison_figures(comparison, tmp_path, ("gif",))


def test_mixed_architectures_skip_surface_figures(tmp_path, make_run_fn):
    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1)
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2, num_params=9, factory="m:f")
    cmp = compare_runs(load_runs([a, b]), surfaces=False, n_boot=100)
    fs = cp.comparison_figures(cmp, tmp_path / "f", render_3d=True)
    assert "curves" not in fs.files and "different architectures" in fs.skipped["curves"]
    assert "surfaces_3d" not in fs.files and "density" in fs.files


def test_3d_panel_renders_or_says_why(tmp_path, comparison, monkeypatch):
    ok, why = cp.offscreen_available()
    if not ok:
        pytest.skip(f"PyVista off-screen rendering is unavailable here: {why}")
    path = cp.surfaces_3d_panel(list(comparison.runs)[:2], tmp_path / "s.png")
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.shape[1] > img.shape[0] > 100
    assert float(np.std(img[..., :3])) > 0.05
    monkeypatch.setattr(cp, "offscreen_available", lambda: (False, "no display (test)"))
    fs = cp.comparison_figures(comparison, tmp_path / "f", render_3d=True)
    assert fs.skipped["surfaces_3d"] == "no display (test)"
