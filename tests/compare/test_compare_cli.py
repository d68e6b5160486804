"""`landscape compare` and `landscape report` through typer's CliRunner, on fixture runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from landscape.cli.app import app

runner = CliRunner()


def _one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_compare_writes_table_figures_and_report(cli_comparison):
    out, r = cli_comparison
    assert r.exit_code == 0, r.output
    assert "λmax" in r.output and "rank correlation with the generalization gap" in r.output
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [int(x["lambda_max_rank"]) for x in rows] == [1, 2, 3, 4]
    assert [int(x["metrics.pac_bayes_sigma_rank"]) for x in rows] == [1, 2, 3, 4]
    data = json.loads((out / "table.json").read_text())
    assert [c["metric"] for c in data["correlations"]][:3] == ["lambda_max", "trace", "frobenius"]
    for name in ("curves", "contours", "density", "metric_vs_gap"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 5000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "sgd_b256" in html and "<script" not in html


def test_one_run_is_refused(fake_runs_shared):
    _one_line_error(runner.invoke(app, ["compare", str(fake_runs_shared[0])]), "at least two")


def test_missing_input_is_refused(tmp_path, fake_runs_shared):
    r = runner.invoke(app, ["compare", str(fake_runs_shared[0]), str(tmp_path / "nope")])
    _one_line_error(r, "does not exist")


def test_missing_summary(tmp_path, make_run_fn):
    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1)
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2)
    (b / "summary.json").unlink()
    _one_line_error(runner.invoke(app, ["compare", str(a), str(b)]), "no summary.json", "scan")


def test_older_and_broken_scans(tmp_path, make_run_fn):
    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1)
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2)
    cfg = json.loads((b / "config.json").read_text())
    cfg["format_version"] = 0
    (b / "config.json").write_text(json.dumps(cfg))
    _one_line_error(runner.invoke(app, ["compare", str(a), str(b)]), "older", "landscape scan")
    c = make_run_fn(tmp_path / "c", lam=2.0, gap=0.2)
    (c / "summary.json").write_text("{not json")
    _one_line_error(runner.invoke(app, ["compare", str(a), str(c)]), "broken")
    d = make_run_fn(tmp_path / "d", lam=2.0, gap=0.2)
    s = json.loads((d / "summary.json").read_text())
    del s["hessian"]
    (d / "summary.json").write_text(json.dumps(s))
    _one_line_error(runner.invoke(app, ["compare", str(a), str(d)]), "hessian", "--resume")


def test_mixed_architectures(tmp_path, make_run_fn):
    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1)
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2, num_params=50, factory="m:linear")
    _one_line_error(
        runner.invoke(app, ["compare", str(a), str(b)]), "different architectures", "--no-surfaces"
    )
    out = tmp_path / "cmp"
    r = runner.invoke(
        app, ["compare", str(a), str(b), "--no-surfaces", "--out", str(out), "--bootstrap", "100"]
    )
    assert r.exit_code == 0, r.output
    assert "architectures differ" in r.output
    assert not (out / "figures" / "contours.png").exists()
    assert (out / "figures" / "density.png").exists()


def test_incomparable_needs_force(tmp_path, make_run_fn):
    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1)
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2, config_overrides={"max_samples": 100})
    _one_line_error(runner.invoke(app, ["compare", str(a), str(b)]), "--max-samples", "--force")


def test_bad_format_is_refused(fake_runs_shared):
    r = runner.invoke(app, ["compare", *map(str, fake_runs_shared[:2]), "--format", "png,gif"])
    _one_line_error(r, "--format")


def test_report_of_one_run(tmp_path, fake_runs_shared):
    out = tmp_path / "r.html"
    r = runner.invoke(
        app, ["report", str(fake_runs_shared[1]), "--out", str(out), "--no-render-3d"]
    )
    assert r.exit_code == 0, r.output
    html = out.read_text()
    assert "landscape report · sgd_b64" in html
    assert html.count("data:image/png;base64,") == 3  # curves, contours, density
    assert "λmax (top Hessian eigenvalue)" in html and "5 ± 1e-05" in html


def test_report_errors(tmp_path, make_run_fn):
    _one_line_error(runner.invoke(app, ["report", str(tmp_path / "nope")]), "does not exist")
    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1)
    (a / "summary.json").unlink()
    _one_line_error(runner.invoke(app, ["report", str(a)]), "summary.json")


@pytest.mark.parametrize("flag", ["--force"])
def test_forced_comparison_is_recorded(tmp_path, make_run_fn, flag):
    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1, surface=False)
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2, surface=False,
                    scan_overrides={"trace_matvecs": 99})  # fmt: skip
    out = tmp_path / "cmp"
    r = runner.invoke(app, ["compare", str(a), str(b), flag, "--out", str(out), "--bootstrap",
                            "100", "--report", "--no-render-3d"])  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads((out / "table.json").read_text())
    assert data["check"]["forced"] and data["check"]["differences"][0]["key"] == "trace_matvecs"
    assert "compared anyway" in (out / "report.html").read_text()
    # `landscape report` on the comparison directory rebuilds its report
    r2 = runner.invoke(app, ["report", str(out), "--no-render-3d"])
    assert r2.exit_code == 0, r2.output
    assert Path(out / "report.html").read_text().count("<table>") >= 3
