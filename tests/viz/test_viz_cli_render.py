"""`landscape render`: files on success; one-line errors and exit 2 on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.io.rundir import RunDir

runner = CliRunner()


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_render_1d_run(run_factory) -> None:
    run = run_factory("ok", dims=1, test=False)
    r = runner.invoke(app, ["render", str(run), "--format", "png", "--html", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (run / "figures" / "surface_1d.png").exists()
    assert (run / "vtk" / "surface.vts").exists()
    assert (run / "surface.html").exists()
    assert "wrote 3 files" in r.output


def test_missing_run(tmp_path: Path) -> None:
    _one_line_error(runner.invoke(app, ["render", str(tmp_path / "nope")]), "does not exist")


def test_not_a_run_directory(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hi")
    _one_line_error(runner.invoke(app, ["render", str(tmp_path)]), "not a run directory")


def test_results_missing(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", {})
    _one_line_error(runner.invoke(app, ["render", str(run.path)]), "results.nc is missing")


def test_results_without_surface(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", {})
    run.write_arrays(xr.Dataset({"something": ("k", np.arange(3.0))}))
    _one_line_error(runner.invoke(app, ["render", str(run.path)]), "no surface")


def test_html_needs_a_surface(run_factory) -> None:
    run = run_factory("spec", dims=None, spectrum=True)
    _one_line_error(runner.invoke(app, ["render", str(run), "--html"]), "--html")


def test_bad_options(run_factory) -> None:
    run = run_factory("ok2", dims=1, test=False)
    _one_line_error(runner.invoke(app, ["render", str(run), "--format", "png,bmp"]), "--format")
    for opt, bad in (("--camera", "fish"), ("--style", "poster")):
        # Choices are checked by the option parser: a usage error naming the option.
        r = runner.invoke(app, ["render", str(run), opt, bad])
        assert r.exit_code == 2, r.output
        assert opt in r.output and bad in r.output and "Traceback" not in r.output


def test_log_levels_with_negative_loss(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "neg", {})
    a = np.linspace(-1, 1, 5)
    loss = np.add.outer(a**2, a**2) - 0.5
    run.write_arrays(
        xr.Dataset({"train_loss": (("alpha", "beta"), loss)}, coords={"alpha": a, "beta": a})
    )
    r = runner.invoke(app, ["render", str(run.path), "--log-levels", "--no-3d", "--quiet"])
    _one_line_error(r, "--log-levels")
