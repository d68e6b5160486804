"""The quick compression experiment: properties that must hold whatever the verdict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.experiments.compression import (
    MEASURE_SPECS,
    RunSpec,
    load_config,
    run_one,
    run_specs,
)

runner = CliRunner()


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


@pytest.mark.slow
def test_quick_experiment(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    r = runner.invoke(
        app, ["experiment", "compression", "--preset", "quick", "--out", str(out), "--quiet"]
    )
    assert r.exit_code == 0, r.output
    assert "verdict" in r.output
    cfg = load_config("quick")
    specs = run_specs(cfg)
    summary = json.loads((out / "summary.json").read_text())["compression"]
    assert summary["num_runs"] == len(specs) == summary["runs_computed"]
    assert json.loads((out / "config.json").read_text())["compression"]["seeds"] == cfg.seeds

    # every measure is finite and has a bootstrap interval around its mean, in every cell
    assert len(summary["cells"]) == len(cfg.label_noise) * len(cfg.widths)
    for cell in summary["cells"]:
        assert cell["n"] >= 2
        for name, _, _ in MEASURE_SPECS:
            m, (lo, hi) = cell[name]["mean"], cell[name]["ci"]
            assert _finite(m) and _finite(lo) and _finite(hi), (cell["noise"], name)
            assert lo <= m <= hi
        assert cell["num_basins"] >= 1 and _finite(cell["mean_barrier"])

    # the rescaling control keeps the function and the Jacobian rank; λ_max moves
    records = [json.loads((out / "runs" / f"{s.run_id}.json").read_text()) for s in specs]
    for rec in records:
        assert rec["control_function_diff"] < 1e-5
        assert abs(rec["control_train_loss"] - rec["train_loss"]) < 1e-5
        assert rec["control_jacobian_rank"] == rec["jacobian_rank"]
        assert rec["control_jacobian_effective_rank"] == pytest.approx(
            rec["jacobian_effective_rank"], rel=1e-3
        )
        assert abs(rec["control_lambda_max"] / rec["lambda_max"] - 1) > 0.1
    ctl = summary["control"]["measures"]
    assert ctl["jacobian_rank"]["invariant"] and not ctl["lambda_max"]["invariant"]

    # one verdict per measure, from the numbers in the tests table
    verdicts = {(v["dataset"], v["measure"]): v for v in summary["verdict"]}
    for name, _, _ in MEASURE_SPECS:
        v = verdicts[("digits", name)]
        assert v["verdict"] in ("supports", "contradicts", "inconclusive")
        if v["verdict"] != "inconclusive":
            assert v["p_holm"] < cfg.alpha
    md = (out / "verdict.md").read_text()
    assert md.count("| digits |") == len(summary["verdict"])
    csv = (out / "results.csv").read_text().splitlines()
    assert len(csv) == len(specs) + 1 and "llc" in csv[0].split(",")
    figs = sorted((out / "figures").glob("*.png"))
    assert [f.name for f in figs] == ["basin_counts.png", "compression_digits.png"]
    assert all(f.stat().st_size > 10_000 for f in figs)

    # the same seed gives the same numbers
    spec: RunSpec = specs[-1]
    again, _ = run_one(cfg, spec)
    stored = records[-1]
    for key, val in again.items():
        if key in ("details", "seconds", "train_seconds"):
            continue
        assert (
            stored[key] == pytest.approx(val, rel=1e-9, abs=1e-12)
            if _finite(val)
            else (stored[key] == val)
        ), key

    # a resumed run recomputes nothing
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    r = runner.invoke(
        app,
        [
            "experiment",
            "compression",
            "--preset",
            "quick",
            "--out",
            str(out),
            "--resume",
            "--quiet",
            "--no-figures",
        ],
    )
    assert r.exit_code == 0, r.output
    s2 = json.loads((out / "summary.json").read_text())["compression"]
    assert s2["runs_computed"] == 0 and s2["runs_reused"] == len(specs)
    assert s2["cells_computed"] == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == stamps
    assert s2["verdict"] == summary["verdict"]
    # without --resume an existing run is refused with a one-line message
    r = runner.invoke(app, ["experiment", "compression", "--preset", "quick", "--out", str(out)])
    assert r.exit_code == 2 and "--resume" in r.output
