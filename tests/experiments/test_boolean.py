"""The Boolean simplicity-bias experiment end to end, through the CLI, at a tiny size."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.errors import ConfigError
from landscape.experiments.boolean import (
    BooleanConfig,
    boolean_inputs,
    load_config,
    target_function,
    train_indices,
)
from landscape.io.presets import load_preset

runner = CliRunner()

TINY = """
[boolean]
n_bits = 5
hidden = [16, 16]
num_samples = 6000
sample_batch = 3000
sgd_runs = 24
train_size = 16
target = "first_bit"
lr = 0.02
max_epochs = 200
permutations = 200
top_functions = 5
"""


def test_boolean_cli_end_to_end(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    t0 = time.perf_counter()
    res = runner.invoke(
        app, ["experiment", "boolean", "--config", str(cfg), "--out", str(out), "--quiet"]
    )
    elapsed = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    assert "ρ(log P(f), LZ)" in res.output and str(out) in res.output.replace("\n", "")
    assert elapsed < 45  # about 10 s alone on 2 cores (figures included); shared CPUs vary
    s = json.loads((out / "summary.json").read_text())["boolean"]
    prior = s["prior"]
    assert prior["num_samples"] == 6000 and prior["functions_seen"] >= 10
    # simplicity bias: frequent functions under the prior have low LZ complexity
    assert s["rho_logp_lz"]["rho"] < 0 and s["rho_logp_lz"]["p"] < 0.05
    assert s["sgd"]["runs"] == 24 and s["sgd"]["converged"] >= 20
    rows = [f for f in s["functions"] if f["sgd_count"] > 0]
    assert sum(f["sgd_count"] for f in rows) == s["sgd"]["converged"]
    train = np.array(s["train_indices"])
    target = np.array([int(c) for c in s["target"]["function"]])
    for f in rows:  # every SGD function fits the training set
        bits = np.array([int(c) for c in f["function"]])
        assert np.array_equal(bits[train], target[train])
        assert np.isfinite(f["log10_p_bayes"]) and f["log10_p_bayes"] <= 1e-6
    assert np.isfinite(s["rho_psgd_pbayes"]["rho"]) or s["rho_psgd_pbayes"]["n"] < 3
    for stem in ("boolean_prior_lz", "boolean_sgd_bayes"):
        assert (out / "figures" / f"{stem}.png").stat().st_size > 1000
    # a rerun with --resume reuses both samplers and gives the same numbers
    res2 = runner.invoke(
        app,
        ["experiment", "boolean", "--config", str(cfg), "--out", str(out), "--quiet",
         "--resume", "--no-figures"],
    )  # fmt: skip
    assert res2.exit_code == 0, res2.output
    s2 = json.loads((out / "summary.json").read_text())["boolean"]
    assert not s2["prior_computed"] and not s2["sgd_computed"]
    assert s2["rho_logp_lz"] == s["rho_logp_lz"]


def test_presets_load_and_are_packaged() -> None:
    table = load_preset("boolean", "boolean")
    assert table["n_bits"] == 7 and table["hidden"] == [40, 40]
    cfg = load_config()
    assert cfg.num_inputs == 128 and cfg.train_size == 64
    assert load_config("quick").num_samples < cfg.num_samples
    with pytest.raises(ConfigError):
        load_config("gpu")


def test_inputs_targets_and_training_subset() -> None:
    x = boolean_inputs(3)
    assert x.shape == (8, 3) and x[5].tolist() == [1.0, 0.0, 1.0]
    cfg = BooleanConfig(n_bits=3, train_size=4, target="first_bit")
    assert target_function(cfg).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert target_function(BooleanConfig(n_bits=3, train_size=4, target="01" * 4)).tolist() == [
        0, 1, 0, 1, 0, 1, 0, 1,
    ]  # fmt: skip
    idx = train_indices(cfg)
    assert idx.size == 4 and len(set(idx.tolist())) == 4
    assert np.array_equal(idx, train_indices(cfg))


@pytest.mark.parametrize(
    "bad",
    [
        {"num_samples": 0},
        {"sgd_runs": 0},
        {"train_size": 500},
        {"target": "0101"},
        {"optimizer": "lbfgs"},
        {"hidden": []},
        {"unknown_key": 1},
    ],
)
def test_bad_config_raises_config_error(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        BooleanConfig.from_dict(bad)


def test_cli_rejects_unknown_experiment_and_bad_preset(tmp_path: Path) -> None:
    res = runner.invoke(app, ["experiment", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    res = runner.invoke(
        app, ["experiment", "boolean", "--preset", "gpu", "--out", str(tmp_path / "y")]
    )
    assert res.exit_code == 2 and "preset" in res.output
