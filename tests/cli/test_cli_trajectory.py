"""`landscape trajectory` through typer's CliRunner: table, run directory, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.io.rundir import RunDir
from landscape.io.save import save
from landscape.models import mlp

runner = CliRunner()
FACTORY = "landscape.models:mlp"
FAST = ["--no-llc", "--no-figures", "--quiet", "--grid", "5x5", "--data", "synthetic"]


def _run(folder: Path, hidden: tuple[int, ...] = (6, 6, 6)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, h in enumerate(hidden):
        torch.manual_seed(k)
        kw = {"in_features": 10, "hidden": h, "num_classes": 3}
        save(mlp(**kw), folder / f"ckpt_{10 * k}.pt", factory=FACTORY, factory_kwargs=kw)
    return folder


def test_trajectory_prints_a_row_per_checkpoint_and_writes_the_run(tmp_path: Path) -> None:
    ck = _run(tmp_path / "ck")
    out = tmp_path / "run"
    r = runner.invoke(
        app, ["trajectory", str(ck), "--out", str(out), *FAST], env={"COLUMNS": "200"}
    )
    assert r.exit_code == 0, r.output
    for word in ("step", "λmax", "trace", "d(first)", "PCA plane explains", "run directory"):
        assert word in r.output, word
    rows = [ln for ln in r.output.splitlines() if ln.startswith("│")]
    assert [ln.split("│")[1].strip() for ln in rows] == ["0", "10", "20"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trajectory"]["steps"] == [0, 10, 20]
    assert json.loads((out / "config.json").read_text())["command"] == "trajectory"
    ds = RunDir(out).read_arrays()
    assert ds["train_loss"].shape == (5, 5) and ds.sizes["step"] == 3


def test_trajectory_resume_keeps_the_measured_checkpoints(tmp_path: Path) -> None:
    ck = _run(tmp_path / "ck")
    out = tmp_path / "run"
    args = ["trajectory", str(ck / "ckpt_*.pt"), "--out", str(out), *FAST, "--no-surface"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = runner.invoke(app, [*args, "--resume"], env={"COLUMNS": "200"})
    assert resumed.exit_code == 0, resumed.output
    assert "3 checkpoint(s) kept" in resumed.output


def test_trajectory_figures_are_drawn(tmp_path: Path) -> None:
    ck = _run(tmp_path / "ck")
    out = tmp_path / "run"
    args = ["trajectory", str(ck), "--out", str(out), *[a for a in FAST if a != "--no-figures"]]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    for name in ("trajectory_series.png", "trajectory_path.png"):
        assert (out / "figures" / name).stat().st_size > 1000


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d.mkdir(), "no checkpoints match"),
        (lambda d: _run(d, hidden=(6, 7)), "is not the architecture of ckpt_0.pt"),
        (lambda d: _run(d, hidden=(6,)), "a trajectory needs at least 2"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path: Path, make: object, message: str) -> None:
    ck = tmp_path / "ck"
    make(ck)  # type: ignore[operator]
    r = runner.invoke(app, ["trajectory", str(ck), "--out", str(tmp_path / "run"), *FAST])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1, r.output


def test_a_three_dimensional_grid_is_refused(tmp_path: Path) -> None:
    ck = _run(tmp_path / "ck")
    r = runner.invoke(app, ["trajectory", str(ck), *FAST, "--grid", "5x5x5"])
    assert r.exit_code == 2 and "two sizes" in r.output


def test_trajectory_demo_trains_and_measures(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["trajectory-demo", "--out", str(out), "--epochs", "2", "--every", "1"]
    args += ["--hidden", "4", "--no-llc", "--grid", "5x5", "--quiet"]
    r = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_0.pt",
        "step_23.pt",
        "step_46.pt",
    ]
    assert json.loads((out / "summary.json").read_text())["trajectory"]["steps"] == [0, 23, 46]
    assert (out / "figures" / "trajectory_path.png").stat().st_size > 1000
    again = runner.invoke(app, [*args, "--resume"], env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "3 checkpoint(s) kept" in again.output


def test_files_as_a_shell_expands_a_glob_and_resume_after_training_went_on(
    tmp_path: Path,
) -> None:
    ck = _run(tmp_path / "ck", hidden=(6, 6, 6, 6))
    files = sorted(str(p) for p in ck.iterdir())
    out = tmp_path / "run"
    first = runner.invoke(app, ["trajectory", *files[:3], "--out", str(out), *FAST])
    assert first.exit_code == 0, first.output
    grown = runner.invoke(
        app, ["trajectory", *files, "--out", str(out), *FAST, "--resume"], env={"COLUMNS": "200"}
    )
    assert grown.exit_code == 0, grown.output
    assert "3 checkpoint(s) kept" in grown.output
    assert json.loads((out / "summary.json").read_text())["trajectory"]["steps"] == [0, 10, 20, 30]
