"""`torchrun --nproc-per-node 2 landscape scan` writes the summary a single process writes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.io.save import save
from landscape.models import mlp


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _args(ckpt: Path, out: Path) -> list[str]:
    return [
        "scan", str(ckpt), "--data", "digits", "--max-samples", "203", "--batch-size", "50",
        "--dtype", "float64", "--preset", "scan_quick", "--grid", "5x4", "--no-metrics",
        "--no-figures", "--quiet", "--out", str(out),
    ]  # fmt: skip


@pytest.mark.slow
def test_torchrun_scan_matches_single_process(tmp_path):
    torch.manual_seed(0)
    ckpt = save(
        mlp(64, 12, 10, activation="tanh"),
        tmp_path / "m.pt",
        factory="landscape.models:mlp",
        factory_kwargs={"in_features": 64, "hidden": 12, "num_classes": 10, "activation": "tanh"},
    )
    res = CliRunner().invoke(app, _args(ckpt, tmp_path / "one"))
    assert res.exit_code == 0, res.output
    exe = shutil.which("landscape") or str(Path(sys.executable).parent / "landscape")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1",
        "--master-addr=127.0.0.1", f"--master-port={free_port()}", exe,
        *_args(ckpt, tmp_path / "two"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count("run directory") == 1  # rank 0 alone prints

    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert two["peak_memory_bytes"] > 0 and one["peak_memory_bytes"] > 0
    for key in ("loss", "accuracy", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-10)
    h1, h2 = one["hessian"], two["hessian"]
    np.testing.assert_allclose(h2["top_eigenvalues"], h1["top_eigenvalues"], rtol=1e-8)
    np.testing.assert_allclose(h2["bottom_eigenvalues"], h1["bottom_eigenvalues"], rtol=1e-8)
    for key in ("trace", "frobenius"):
        np.testing.assert_allclose(h2[key]["mean"], h1[key]["mean"], rtol=1e-8)
    assert h2["matvecs"] == h1["matvecs"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )
    if "surface" in one:  # the surface stage ran (landscape.surface present)
        import xarray as xr

        for key in ("center_loss", "min_loss"):
            np.testing.assert_allclose(two["surface"][key], one["surface"][key], rtol=1e-10)
        with xr.open_dataset(tmp_path / "one" / "results.nc", engine="h5netcdf") as a:
            with xr.open_dataset(tmp_path / "two" / "results.nc", engine="h5netcdf") as b:
                np.testing.assert_allclose(
                    b["train_loss"].values, a["train_loss"].values, rtol=1e-10
                )
                assert b["train_loss"].shape == (5, 4)


@pytest.mark.slow
def test_torchrun_trajectory_matches_single_process(tmp_path):
    ckpts = tmp_path / "ckpts"
    for step in (0, 5, 10):
        torch.manual_seed(step)
        save(
            mlp(64, 8, 10, activation="tanh"),
            ckpts / f"step{step}.pt",
            factory="landscape.models:mlp",
            factory_kwargs={
                "in_features": 64,
                "hidden": 8,
                "num_classes": 10,
                "activation": "tanh",
            },
            meta={"step": step},
        )

    def args(out: Path) -> list[str]:
        return [
            "trajectory", str(ckpts), "--data", "digits", "--max-samples", "151",
            "--batch-size", "40", "--dtype", "float64", "--no-llc", "--no-surface",
            "--no-figures", "--quiet", "--out", str(out),
        ]  # fmt: skip

    res = CliRunner().invoke(app, args(tmp_path / "one"))
    assert res.exit_code == 0, res.output
    exe = shutil.which("landscape") or str(Path(sys.executable).parent / "landscape")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1",
        "--master-addr=127.0.0.1", f"--master-port={free_port()}", exe,
        *args(tmp_path / "two"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count("run directory") == 1  # rank 0 alone prints
    one = json.loads((tmp_path / "one" / "summary.json").read_text())["trajectory"]
    two = json.loads((tmp_path / "two" / "summary.json").read_text())["trajectory"]
    for step in ("0", "5", "10"):
        a, b = one["measured"][step], two["measured"][step]
        for key in ("train_loss", "train_accuracy", "test_loss", "lambda_max"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-8)
        np.testing.assert_allclose(b["trace"]["mean"], a["trace"]["mean"], rtol=1e-8)
