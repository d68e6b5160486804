"""Two gloo processes under torchrun give the numbers of one process (float64)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.surface.sharded import point_evaluator, sharded_grid_eval

HERE = Path(__file__).resolve().parent
RTOL = 1e-10


def _load_worker():
    spec = importlib.util.spec_from_file_location("gloo_worker", HERE / "gloo_worker.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


worker = _load_worker()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(script: Path, *args: str, nproc: int = 2, timeout: float = 120) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        "--nnodes=1",
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        str(script),
        *args,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.fixture(scope="module")
def gloo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gloo")
    # a single-process run leaves 4 finished grid points that the 2-process run resumes from
    space = ParamSpace(worker.build_bundle())
    pts, dirs = worker.grid(space.dim)
    first = sharded_grid_eval(space, pts, dirs, progress_dir=out / "progress", max_new_points=4)
    assert first.evaluated == 4 and np.isnan(first.values).any()
    torchrun(HERE / "gloo_worker.py", str(out))
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.fixture(scope="module")
def single():
    bundle = worker.build_bundle()
    space = ParamSpace(bundle)
    V = worker.probes(space.dim)
    ref: dict = {"space": space, "V": V}
    for strategy in ("cached", "forward"):
        op = CurvatureOperator(space, strategy=strategy)
        ref[f"hvp_{strategy}"] = op.matvec(V[0])
        ref[f"hmm_{strategy}"] = op.matmat(V)
    ref["ggn"] = CurvatureOperator(space, kind="ggn").matmat(V)
    ref["fisher"] = CurvatureOperator(space, kind="fisher").matvec(V[0])
    ref["eval_train"] = torch.tensor(space.evaluate(), dtype=torch.float64)
    ref["eval_test"] = torch.tensor(space.evaluate(split="test"), dtype=torch.float64)
    loss, g = space.value_and_grad()
    ref["loss"] = torch.tensor(loss, dtype=torch.float64)
    ref["grad"] = g
    return ref


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=RTOL, atol=1e-13)


@pytest.mark.slow
def test_shards_cover_data_once(gloo_run):
    n0, n1 = (int(o["n_local"]) for o in gloo_run)
    assert n0 + n1 == worker.build_bundle().data.num_train
    assert abs(n0 - n1) <= 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "key", ["hvp_cached", "hmm_cached", "hvp_forward", "hmm_forward", "ggn", "fisher"]
)
def test_curvature_products_match_single_process(gloo_run, single, key):
    r0, r1 = gloo_run
    assert torch.equal(r0[key], r1[key])  # identical on every rank
    close(r0[key], single[key])


@pytest.mark.slow
def test_hvp_matches_dense_hessian(gloo_run, single):
    space = single["space"]
    from torch.func import hessian

    H = hessian(lambda th: space.loss(th))(space.theta0)
    close(gloo_run[0]["hmm_cached"], single["V"] @ H.T)


@pytest.mark.slow
def test_loss_accuracy_and_gradient_match(gloo_run, single):
    for key in ("eval_train", "eval_test", "loss", "grad"):
        assert torch.equal(gloo_run[0][key], gloo_run[1][key])
        close(gloo_run[0][key], single[key])


@pytest.mark.slow
def test_top_eigenvalues_and_trace_match(gloo_run, single):
    from landscape.hessian import hutchinson_trace, top_eigenpairs

    op = CurvatureOperator(single["space"])
    eig = top_eigenpairs(op, 5, seed=0, tol=1e-8)
    assert torch.equal(gloo_run[0]["top_eigs"], gloo_run[1]["top_eigs"])
    close(gloo_run[0]["top_eigs"], torch.as_tensor(eig.values))
    assert int(gloo_run[0]["eig_matvecs"]) == op.matvecs
    tr = hutchinson_trace(CurvatureOperator(single["space"]), 20, seed=0)
    close(gloo_run[0]["trace"], torch.tensor([tr.mean, tr.stderr], dtype=torch.float64))


@pytest.mark.slow
def test_sharded_grid_matches_single_process_and_resumes(gloo_run, single):
    space = single["space"]
    pts, dirs = worker.grid(space.dim)
    ref = point_evaluator(space, dirs, splits=("train", "test"))(pts)
    r0, r1 = gloo_run
    assert not bool(r0["grid_is_none"]) and bool(r1["grid_is_none"])  # rank 0 only
    np.testing.assert_allclose(r0["grid"].numpy(), ref, rtol=RTOL)
    np.testing.assert_allclose(r0["grid_fresh"].numpy(), ref, rtol=RTOL)
    assert torch.equal(r0["grid_fresh"], r1["grid_fresh"])
    # 4 points from the single-process run, then 3 per rank, then the remaining 15
    assert r0["grid_part_counts"].tolist() == [6, 4]
    assert int(torch.isfinite(r0["grid_part"][:, 0]).sum()) == 10
    assert r0["grid_counts"].tolist() == [15, 10]
    assert r0["grid_progress"].tolist() == [15, 15]  # rank 0's bar counts both ranks


@pytest.mark.slow
def test_sharded_quick_surface_matches_single_process(gloo_run, single):
    from landscape.surface import quick_surface

    ref = quick_surface(single["space"], grid=(5, 4), span=1.0, seed=0)
    for r in gloo_run:  # every rank gets the whole surface
        np.testing.assert_allclose(r["surf_train"].numpy(), ref.train_loss, rtol=RTOL)
        np.testing.assert_allclose(r["surf_test"].numpy(), ref.test_loss, rtol=RTOL)
        np.testing.assert_allclose(float(r["surf_center"]), ref.center_loss, rtol=RTOL)
