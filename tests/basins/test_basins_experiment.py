"""The compression experiment: properties that must hold whatever the verdict."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.experiments.compression import (
    MEASURE_SPECS,
    CompressionConfig,
    RunRecord,
    label_seed,
    load_config,
    noisy_labels,
    run_compression,
    run_one,
    run_specs,
)

runner = CliRunner()
WORDS = ("supports", "contradicts", "confounded", "inconclusive")


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
    assert {s.arm for s in specs} == {"to_loss", "matched_steps"}
    summary = json.loads((out / "summary.json").read_text())["compression"]
    assert summary["num_runs"] == len(specs) == summary["runs_computed"]
    assert json.loads((out / "config.json").read_text())["compression"]["seeds"] == cfg.seeds

    records = [
        RunRecord.from_dict(json.loads((out / "runs" / f"{s.run_id}.json").read_text()))
        for s in specs
    ]
    # both arms start from the same initialization and labels; matched steps are matched
    by_net: dict[str, list[RunRecord]] = {}
    for rec in records:
        by_net.setdefault(rec.spec.network_id, []).append(rec)
    for pair in by_net.values():
        assert len(pair) == 2 and pair[0].run_seed == pair[1].run_seed
    matched = [r for r in records if r.spec.arm == "matched_steps"]
    assert {r.steps for r in matched} == {cfg.train.matched_steps}
    # labels are drawn per label draw, not once per noise level
    noisy = [r.spec for r in records if r.spec.noise == 1.0 and r.spec.arm == "to_loss"]
    y = torch.zeros(cfg.n_train, dtype=torch.long)
    draws = {s.label_draw: noisy_labels(y, 1.0, 10, label_seed(cfg, s)) for s in noisy}
    assert len(draws) == cfg.label_draws >= 2
    assert not torch.equal(draws[0], draws[1])
    assert label_seed(cfg, noisy[0]) == label_seed(cfg, noisy[1])  # two seeds share a draw

    # every network: control keeps the function, canonical measures do not move under it
    for rec in records:
        assert rec.control is not None and rec.control_function_diff < cfg.function_tol
        for spec in MEASURE_SPECS:
            a, b = rec.measures.value(spec.name), rec.control.value(spec.name)
            if spec.source in cfg.control_measures and _finite(a):
                assert b == pytest.approx(a, rel=cfg.control_tol, abs=1e-9), spec.name
        assert _finite(rec.param_norm) and rec.param_norm <= rec.raw_param_norm + 1e-4
        assert _finite(rec.margin) and _finite(rec.measures.log_prior_mass)
    assert all(c["invariant"] for c in summary["control"])

    # cells have intervals around their means; null measures are tested and reported
    assert len(summary["cells"]) == len(cfg.arms) * len(cfg.label_noise) * len(cfg.widths)
    for cell in summary["cells"]:
        for name in ("llc", "log_prior_mass", "log_steps", "param_norm", "margin"):
            m, (lo, hi) = cell[name]["mean"], cell[name]["ci"]
            assert _finite(m) and lo <= m <= hi, (cell["noise"], name)
    assert {t["measure"] for t in summary["null_tests"]} >= {"log_steps", "param_norm"}
    assert summary["min_p"] == pytest.approx(1 / (1 + cfg.permutations))

    # verdicts: one per measure, words from the data, never "supports" without significance
    verdicts = {(v["dataset"], v["measure"]): v for v in summary["verdict"]}
    for spec in MEASURE_SPECS:
        v = verdicts[("digits", spec.name)]
        assert v["verdict"] in WORDS
        if v["verdict"] in ("supports", "contradicts", "confounded"):
            assert v["noise"]["p_holm"] < cfg.alpha
    md = (out / "verdict.md").read_text()
    assert md.count("| digits |") >= len(summary["verdict"])
    assert "Null measures" in md
    csv = (out / "results.csv").read_text().splitlines()
    assert len(csv) == len(specs) + 1 and "log_prior_mass" in csv[0].split(",")
    figs = sorted(f.name for f in (out / "figures").glob("*.png"))
    assert figs == [
        "basin_counts.png",
        "compression_digits_matched_steps.png",
        "compression_digits_to_loss.png",
    ]

    # the same seed gives the same numbers
    again, _ = run_one(cfg, specs[-1])
    stored = records[-1]
    assert again.measures == stored.measures and again.train_loss == stored.train_loss

    # a resumed run recomputes nothing
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    args = ["experiment", "compression", "--preset", "quick", "--out", str(out)]
    r = runner.invoke(app, [*args, "--resume", "--quiet", "--no-figures"])
    assert r.exit_code == 0, r.output
    s2 = json.loads((out / "summary.json").read_text())["compression"]
    assert s2["runs_computed"] == 0 and s2["runs_reused"] == len(specs)
    assert s2["groups_computed"] == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == stamps
    assert s2["verdict"] == summary["verdict"]
    # without --resume an existing run is refused with a one-line message
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "--resume" in r.output


def _negative_config(canonicalize: bool) -> CompressionConfig:
    base = load_config("quick")
    return dataclasses.replace(
        base,
        negative_control=True,
        label_noise=(0.0, 0.5, 1.0),
        widths=(16,),
        seeds=6,
        seeds_per_label_draw=1,
        arms=("to_loss",),
        canonicalize=canonicalize,
        counting=False,
        control_measures=("curvature",),
        basins=dataclasses.replace(base.basins, measures=("curvature",)),
        train=dataclasses.replace(base.train, max_epochs=300),
    )


@pytest.mark.slow
def test_negative_control_never_supports(tmp_path: Path) -> None:
    """Clean labels; the 'noise' axis is a function-preserving rescaling of the network."""
    cfg = _negative_config(canonicalize=True)
    s = run_compression(cfg, tmp_path / "neg")
    assert s.negative_control and s.num_runs == 18
    assert all(v.verdict != "supports" for v in s.verdicts), [v.text for v in s.verdicts]
    # canonicalized, the rescaling leaves every measure where it was: nothing to test
    lam = next(v for v in s.verdicts if v.measure == "lambda_max")
    assert lam.verdict == "inconclusive"

    # measured raw, λ_max follows the rescaling and the control catches it
    raw = run_compression(_negative_config(canonicalize=False), tmp_path / "raw")
    lam_raw = next(v for v in raw.verdicts if v.measure == "lambda_max")
    assert lam_raw.noise is not None and lam_raw.noise.rho > 0.5
    assert lam_raw.verdict in ("confounded", "inconclusive"), lam_raw.text
    assert all(v.verdict != "supports" for v in raw.verdicts)
    moved = {c.measure for c in raw.control if not c.invariant}
    assert "lambda_max" in moved
