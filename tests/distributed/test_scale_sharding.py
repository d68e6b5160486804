"""Single-process behaviour of the distributed layer: shards, operators, grids, run dirs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from landscape.engine import CurvatureOperator, DenseOperator, ParamSpace
from landscape.engine.distributed import (
    DataParallel,
    DistributedContext,
    DistributedOperator,
    MainOnlyRun,
    backend_for,
    shard_bounds,
    shard_data,
)
from landscape.errors import ConfigError, DataError
from landscape.io.data import load_data
from landscape.io.rundir import RunDir
from landscape.surface.sharded import point_evaluator, sharded_grid_eval


@pytest.mark.parametrize("mode", ["contiguous", "strided"])
@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_every_sample_in_exactly_one_shard(mode, world):
    data = load_data("digits", max_samples=101, seed=0)
    # tag each sample by its index through the first pixel so shards can be traced back
    tagged = data.x_train.clone()
    tagged[:, 0, 0, 0] = torch.arange(data.num_train, dtype=tagged.dtype)
    tagged_test = data.x_test.clone()
    tagged_test[:, 0, 0, 0] = torch.arange(data.num_test, dtype=tagged.dtype)
    from dataclasses import replace

    data = replace(data, x_train=tagged, x_test=tagged_test)
    train_ids, test_ids, sizes = [], [], []
    for r in range(world):
        s = shard_data(data, r, world, mode=mode)
        assert s.batch_size == data.batch_size and s.name == data.name
        train_ids += s.x_train[:, 0, 0, 0].long().tolist()
        test_ids += s.x_test[:, 0, 0, 0].long().tolist()
        sizes.append(s.num_train)
        # targets travel with their inputs
        assert torch.equal(s.y_train, data.y_train[s.x_train[:, 0, 0, 0].long()])
    assert sorted(train_ids) == list(range(data.num_train))
    assert sorted(test_ids) == list(range(data.num_test))
    assert max(sizes) - min(sizes) <= 1


def test_shard_errors():
    data = load_data("synthetic", max_samples=3)
    with pytest.raises(DataError, match="fewer processes"):
        shard_data(data, 0, 4)
    with pytest.raises(ConfigError):
        shard_data(data, 2, 2)
    with pytest.raises(ConfigError):
        shard_data(data, 0, 2, mode="random")
    assert shard_bounds(10, 2, 3) == (6, 10)


def test_single_process_context_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = DistributedContext.init_from_env()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed) == (0, 1, True, False)
    t = torch.arange(3.0)
    assert ctx.all_reduce_sum(t) is t and ctx.broadcast(t) is t
    assert ctx.gather_object("x") == ["x"] and ctx.all_gather_object(1) == [1]
    assert ctx.sum_int(4) == 4 and ctx.max_int(4) == 4
    assert ctx.on_main(lambda: 5) == 5
    assert backend_for("cpu") == "gloo" and backend_for("cuda") == "nccl"


def test_torchrun_variables_are_checked(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        DistributedContext.init_from_env()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        DistributedContext.init_from_env()


def test_distributed_operator_weights_shards_by_size():
    # one process holding "shard" 1 of 3 samples out of 4: the operator is n_r/N · A_r
    a = torch.diag(torch.tensor([2.0, 4.0], dtype=torch.float64))
    op = DistributedOperator(DenseOperator(a), n_local=3, n_total=4)
    v = torch.ones(2, dtype=torch.float64)
    assert op.matvec(v).tolist() == [1.5, 3.0]
    assert op.matmat(torch.stack([v, 2 * v])).tolist() == [[1.5, 3.0], [3.0, 6.0]]
    assert op.matvecs == 3 and op.dim == 2 and op.strategy == "distributed"
    with pytest.raises(ConfigError):
        DistributedOperator(DenseOperator(a), n_local=0, n_total=0)


def test_data_parallel_in_one_process_is_the_plain_space(mlp_bundle, tmp_path):
    dp = DataParallel(mlp_bundle)
    assert dp.local is dp.space and dp.is_main
    assert dp.evaluate() == dp.space.evaluate()
    assert isinstance(dp.operator(), CurvatureOperator)
    run = RunDir.create(tmp_path / "r", {})
    assert dp.main_only(run) is run


def test_main_only_run_never_writes(tmp_path):
    run = MainOnlyRun(tmp_path / "r", {"stages_done": ["evaluate"], "model": {"a": 1}})
    merged = run.update_summary({"model": {"b": np.float64(2.0)}, "loss": float("nan")})
    assert merged == {"stages_done": ["evaluate"], "model": {"a": 1, "b": 2.0}, "loss": "nan"}
    run.write_arrays(None)
    assert run.summary() is merged
    assert not (tmp_path / "r").exists()


def test_sharded_grid_matches_loop_and_resumes(mlp_bundle, tmp_path):
    space = ParamSpace(mlp_bundle)
    g = torch.Generator().manual_seed(3)
    dirs = 0.1 * torch.randn(2, space.dim, generator=g, dtype=torch.float64)
    a = torch.linspace(-1, 1, 4, dtype=torch.float64)
    pts = torch.cartesian_prod(a, a)
    ref = point_evaluator(space, dirs, splits=("train", "test"))(pts)
    # exact: θ + c·D evaluated by ParamSpace.evaluate
    th = space.theta0 + pts[5] @ dirs
    assert ref[5, 0] == space.evaluate(th)[0] and ref[5, 3] == space.evaluate(th, "test")[1]

    part = sharded_grid_eval(space, pts, dirs, progress_dir=tmp_path, max_new_points=6)
    assert part.evaluated == 6 and part.resumed == 0
    assert np.isnan(part.values[6:]).all()
    np.testing.assert_array_equal(part.values[:6], ref[:6])
    full = sharded_grid_eval(space, pts, dirs, progress_dir=tmp_path)
    assert (full.evaluated, full.resumed) == (10, 6)
    np.testing.assert_array_equal(full.values, ref)
    assert full.names == ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
    np.testing.assert_array_equal(full.column("test_loss"), ref[:, 2])
    assert json.dumps(full.to_dict())
    # another grid never reads these progress files
    other = sharded_grid_eval(space, pts[:3], dirs, progress_dir=tmp_path)
    assert other.resumed == 0
    with pytest.raises(ConfigError):
        sharded_grid_eval(space, pts, dirs[:, :10])
    with pytest.raises(ConfigError):
        sharded_grid_eval(space, pts[:, :1], dirs)
