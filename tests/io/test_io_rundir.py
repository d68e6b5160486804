"""Run directories: refuse foreign runs, never delete files that are not ours, atomic writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from landscape.errors import RunDirError
from landscape.io.rundir import RunDir, atomic_write, write_json


def _files(p: Path) -> list[str]:
    return sorted(str(f.relative_to(p)) for f in p.rglob("*"))


def test_create_new_and_refuse_existing(tmp_path: Path, one_line) -> None:
    out = tmp_path / "run"
    run = RunDir.create(out, {"command": "scan", "seed": 0})
    assert run.config()["seed"] == 0 and run.config()["format_version"] == 1
    with pytest.raises(RunDirError) as ei:
        RunDir.create(out, {"command": "scan", "seed": 0})
    one_line(ei.value, "already holds a run", "--resume", "--overwrite")
    with pytest.raises(RunDirError) as ei:
        RunDir.create(out, {"command": "scan", "seed": 1}, resume=True)
    one_line(ei.value, "different configuration", "--overwrite")
    assert run.config()["seed"] == 0  # refused runs leave the old config alone


def test_resume_keeps_results(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = RunDir.create(out, {"a": 1})
    run.update_summary({"loss": 0.5})
    again = RunDir.create(out, {"a": 1}, resume=True)
    assert again.summary() == {"loss": 0.5}


def test_overwrite_removes_only_our_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = RunDir.create(out, {"a": 1})
    run.update_summary({"loss": 0.5})
    run.write_arrays(xr.Dataset({"v": ("k", np.arange(3.0))}))
    (out / "progress").mkdir()
    (out / "progress" / "grid.npy").write_bytes(b"x")
    (out / "notes.txt").write_text("mine")
    (out / "figures").mkdir()
    (out / "figures" / "keep.png").write_bytes(b"png")
    RunDir.create(out, {"a": 2}, overwrite=True)
    assert _files(out) == ["config.json", "figures", "figures/keep.png", "notes.txt", "progress"]
    assert json.loads((out / "config.json").read_text())["a"] == 2


def test_foreign_directory_left_alone(tmp_path: Path, one_line) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(RunDirError) as ei:
        RunDir.create(out, {"a": 1})
    one_line(ei.value, "not a landscape run")
    assert _files(out) == ["thesis.tex"]
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(RunDirError) as ei:
        RunDir.create(f, {"a": 1})
    one_line(ei.value, "is a file")


def test_damaged_config(tmp_path: Path, one_line) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{not json")
    with pytest.raises(RunDirError) as ei:
        RunDir.create(out, {"a": 1}, resume=True)
    one_line(ei.value, "damaged", "--overwrite")
    run = RunDir.create(out, {"a": 1}, overwrite=True)
    assert run.config()["a"] == 1


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    write_json(target, {"a": 1})
    assert _files(tmp_path) == ["summary.json"]

    def boom(p: Path) -> None:
        p.write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert _files(tmp_path) == ["summary.json"]
    assert json.loads(target.read_text()) == {"a": 1}  # the old file survives a failed write


def test_update_summary_deep_merges(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Est:
        mean: float
        n: int

    run = RunDir.create(tmp_path / "r", {})
    run.update_summary({"hessian": {"top": [3.0, 2.0], "trace": {"mean": 1.0}}, "model": "m"})
    s = run.update_summary(
        {
            "hessian": {"trace": {"stderr": 0.1}, "est": Est(1.5, 3)},
            "nan": float("nan"),
            "t": torch.tensor([1.0, 2.0]),
            "np": np.float32(0.5),
        }
    )
    assert s["hessian"] == {
        "top": [3.0, 2.0],
        "trace": {"mean": 1.0, "stderr": 0.1},
        "est": {"mean": 1.5, "n": 3},
    }
    assert s["model"] == "m" and s["nan"] == "nan" and s["t"] == [1.0, 2.0] and s["np"] == 0.5
    assert run.summary() == s
    assert _files(run.path) == ["config.json", "summary.json"]


def test_write_arrays_merges_variables(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", {})
    alpha = np.linspace(-1, 1, 5)
    a = xr.Dataset({"loss": ("alpha", alpha**2)}, coords={"alpha": alpha}, attrs={"seed": 0})
    a["loss"].attrs["units"] = "nats"
    run.write_arrays(a)
    run.write_arrays(
        xr.Dataset({"acc": ("alpha", 1 - alpha**2)}, coords={"alpha": alpha}, attrs={"grid": "1d"})
    )
    run.write_arrays(xr.Dataset({"eig": ("k", np.arange(4.0))}))
    ds = run.read_arrays()
    assert set(ds.data_vars) == {"loss", "acc", "eig"}
    np.testing.assert_array_equal(ds["loss"].values, alpha**2)
    np.testing.assert_array_equal(ds["acc"].values, 1 - alpha**2)
    assert ds["loss"].attrs["units"] == "nats"
    assert ds.attrs["seed"] == 0 and ds.attrs["grid"] == "1d"
    # replacing a variable and changing its grid drops only what lived on the old grid
    beta = np.linspace(-2, 2, 7)
    run.write_arrays(xr.Dataset({"loss": ("alpha", beta)}, coords={"alpha": beta}))
    ds = run.read_arrays()
    assert set(ds.data_vars) == {"loss", "eig"} and ds.sizes["alpha"] == 7
    assert _files(run.path) == ["config.json", "results.nc"]
