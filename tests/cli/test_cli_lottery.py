"""`landscape experiment lottery --quick` end to end, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from landscape.cli.app import app

runner = CliRunner()


def test_quick_lottery_prints_a_table_per_sparsity(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["experiment", "lottery", "--quick", "--rounds", "2", "--seeds", "2"]
    r = runner.invoke(app, [*args, "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    for pct in ("100.0%", "80.0%", "64.0%"):
        assert pct in r.output
    assert "barrier" in r.output and "±" in r.output
    assert r.output.count("of the weights, the two copies:") == 3
    png = (out / "figures" / "lottery.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    s = json.loads((out / "summary.json").read_text())["lottery"]
    assert [lv["level"] for lv in s["levels"]] == [0, 1, 2]
    assert s["config"]["seeds"] == [0, 1] and s["config"]["rounds"] == 2
    for lv in s["levels"]:
        assert lv["stability"] in ("same basin", "different basin")
        assert lv["instability"]["n"] == 2
    # the table's numbers are the summary's
    acc = s["levels"][1]["test_acc"]
    assert f"{acc['mean']:.3f} ± {acc['high'] - acc['mean']:.3f}" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lottery", "--prune-fraction", "1.5"], "prune-fraction"),
        (["lottery", "--seeds", "0"], "--seeds"),
        (["lottery", "--quick", "--rewind-step", "100000"], "rewind-step"),
        (["lottery", "--preset", "quick"], "not --preset"),
        (["compression", "--rounds", "3"], "only apply to `landscape experiment lottery`"),
    ],
)
def test_bad_lottery_options_are_one_line_errors(
    args: list[str], message: str, tmp_path: Path
) -> None:
    r = runner.invoke(app, ["experiment", *args, "--out", str(tmp_path / "r"), "--quiet"])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "r").exists()  # refused before a run directory is made
