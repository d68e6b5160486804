"""Weight-spectra columns in the comparison table: mean α and weighted α, not ranked."""

from __future__ import annotations

import math

import numpy as np
import pytest
from torch import nn

from landscape.compare import build_table, load_runs
from landscape.io.rundir import RunDir
from landscape.metrics.weight_spectra import weight_spectra


def _with_weights(path, section):
    RunDir(path).update_summary({"weights": section})
    return path


def test_alpha_columns_come_from_the_weights_section(tmp_path, make_run_fn) -> None:
    a = make_run_fn(tmp_path / "a", lam=2.0, gap=0.1)
    b = make_run_fn(tmp_path / "b", lam=5.0, gap=0.2)
    c = make_run_fn(tmp_path / "c", lam=9.0, gap=0.3)
    ws = weight_spectra(nn.Sequential(nn.Linear(40, 60), nn.Linear(60, 30)))
    _with_weights(a, ws.to_dict())
    _with_weights(b, {**ws.to_dict(), "averages": {"alpha": 3.5, "weighted_alpha": -1.0}})
    _with_weights(c, {"skipped": "the model has no weight matrix"})
    t = build_table(load_runs([a, b, c]), n_boot=200)
    row = t.row("weights.alpha")
    assert row.means[0] == pytest.approx(ws.averages()["alpha"]) and row.means[1] == 3.5
    assert math.isnan(row.means[2]) and row.values[2] is None
    assert row.role == "info" and row.ranks == (None, None, None)
    assert row.values[0].n == 2 and math.isnan(row.values[0].stderr)
    np.testing.assert_allclose(
        t.row("weights.weighted_alpha").means[:2], [ws.averages()["weighted_alpha"], -1.0]
    )
    assert any("weights.alpha" in n and "no weight matrix" in n for n in t.notes), t.notes
    assert all(not c.metric.startswith("weights.") for c in t.correlations)


def test_runs_without_weights_have_no_alpha_rows(fake_runs) -> None:
    t = build_table(load_runs(fake_runs), n_boot=200)
    assert not any(k.startswith("weights.") for k in t.keys)
