"""Iterative magnitude pruning with rewinding: masks, masked training, barriers, statistics."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from landscape.basins.connect import linear_path
from landscape.engine import ParamSpace
from landscape.errors import ConfigError
from landscape.experiments.lottery import (
    Interval,
    LotteryConfig,
    LotteryTrain,
    basin_verdict,
    full_mask,
    kept_indices,
    magnitude_prune,
    mask_count,
    prunable_names,
    remaining_schedule,
    restricted_curvature,
    run_lottery,
    steps_per_epoch,
    train_masked,
)
from landscape.hessian.dense import dense_hessian
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import mlp

TRAIN = LotteryTrain(epochs=3, batch_size=32)


@pytest.fixture(scope="module")
def data():
    return load_data("digits", max_samples=200)


def _model(seed: int = 0, hidden: int = 8) -> torch.nn.Module:
    torch.manual_seed(seed)
    return mlp(64, hidden, 10)


def _params(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.named_parameters()}


def _theta(space: ParamSpace, m: torch.nn.Module) -> torch.Tensor:
    return space.flatten({k: v.detach() for k, v in m.named_parameters()})


def test_prunable_weights_are_linear_weights_only() -> None:
    m = _model()
    assert prunable_names(m) == ["1.weight", "3.weight"]
    assert mask_count(full_mask(m)) == (64 * 8 + 8 * 10, 64 * 8 + 8 * 10)


def test_mask_removes_exactly_the_smallest_magnitudes_globally() -> None:
    g = torch.Generator().manual_seed(3)
    w = {"a": torch.randn(7, 5, generator=g), "b": 3 * torch.randn(11, generator=g)}
    mask = {k: torch.ones_like(v, dtype=torch.bool) for k, v in w.items()}
    mask["a"][0, :3] = False  # already pruned: stays pruned, not counted again
    new = magnitude_prune(w, mask, 0.3)
    kept_before = mask_count(mask)[0]
    n_prune = round(0.3 * kept_before)
    assert mask_count(new)[0] == kept_before - n_prune
    assert not new["a"][0, :3].any()
    # brute force: among the weights kept before, the n_prune smallest |w| go, across tensors
    mags = torch.cat([w[k].abs().reshape(-1) for k in w])
    was = torch.cat([mask[k].reshape(-1) for k in w])
    now = torch.cat([new[k].reshape(-1) for k in w])
    removed = was & ~now
    cutoff = torch.sort(mags[was]).values[n_prune - 1]
    assert int(removed.sum()) == n_prune
    assert torch.all(mags[removed] <= cutoff) and torch.all(mags[now] > cutoff)
    # both tensors lose weights: the ranking is global, not per layer
    assert (~new["b"]).any() and (mask["a"] & ~new["a"]).any()
    # the input mask is not modified
    assert int(mask["a"].sum()) == 32


def test_prune_fraction_zero_keeps_everything_and_one_is_refused() -> None:
    w = {"a": torch.randn(4, 4)}
    m = {"a": torch.ones(4, 4, dtype=torch.bool)}
    assert magnitude_prune(w, m, 0.0)["a"].all()
    with pytest.raises(ConfigError, match="prune-fraction"):
        magnitude_prune(w, m, 1.0)
    with pytest.raises(ConfigError, match="prune-fraction"):
        LotteryConfig(prune_fraction=1.0)


def test_sparsity_schedule_is_one_minus_p_to_the_r() -> None:
    sched = remaining_schedule(10_000, 0.2, 6)
    for r, kept in enumerate(sched):
        assert abs(kept / 10_000 - 0.8**r) <= r / 10_000
    assert remaining_schedule(5, 0.2, 2) == [5, 4, 3]


def test_rewound_dense_run_reproduces_the_uninterrupted_run_exactly(data) -> None:
    dense = _model()
    k = 5
    rewind = train_masked(dense, data, TRAIN, order_seed=7, snapshot_step=k)
    assert rewind is not None and rewind.step == k
    again = _model()  # a fresh initialization, overwritten by the rewind state
    train_masked(again, data, TRAIN, mask=full_mask(again), order_seed=7, start=rewind)
    pa, pb = _params(dense), _params(again)
    assert all(torch.equal(pa[n], pb[n]) for n in pa)
    # and the snapshot is the state of a run stopped at step k
    short = _model()
    train_masked(short, data, LotteryTrain(epochs=1, batch_size=32), order_seed=7)
    spe = steps_per_epoch(data.num_train, 32)
    mid = train_masked(_model(), data, TRAIN, order_seed=7, snapshot_step=spe)
    assert mid is not None
    assert all(torch.equal(mid.params[n], p) for n, p in _params(short).items())


def test_zero_pruning_levels_are_the_dense_network(data) -> None:
    cfg = LotteryConfig(
        max_samples=200,
        hidden=(8,),
        train=TRAIN,
        rounds=2,
        prune_fraction=0.0,
        seeds=(0,),
        points=3,
        curvature=False,
    )
    res = run_lottery(cfg)
    lv = res.runs[0].levels
    assert [x.kept for x in lv] == [lv[0].total] * 3
    for x in lv[1:]:
        assert x.test_loss == lv[0].test_loss and x.train_loss == lv[0].train_loss
        assert abs(x.dense_path.barrier) < 1e-6
        # the second copy is retrained the same way at every level
        assert x.instability.barrier == pytest.approx(lv[0].instability.barrier, abs=1e-9)


def test_masked_weights_stay_exactly_zero_and_the_rewind_state_is_kept(data) -> None:
    dense = _model()
    rewind = train_masked(dense, data, TRAIN, order_seed=0, snapshot_step=4)
    assert rewind is not None
    mask = magnitude_prune(_params(dense), full_mask(dense), 0.7)
    ticket = copy.deepcopy(dense)
    train_masked(ticket, data, TRAIN, mask=mask, order_seed=0, start=rewind)
    params = dict(ticket.named_parameters())
    for name, m in mask.items():
        assert torch.all(params[name].detach()[~m] == 0.0)
        assert torch.count_nonzero(params[name].detach()[m]) == int(m.sum())
    # the rewind state itself is untouched (still dense)
    assert all(v.count_nonzero() > 0 for v in rewind.params.values())


def test_two_copies_with_the_same_order_have_no_barrier(data) -> None:
    dense = _model()
    rewind = train_masked(dense, data, TRAIN, order_seed=0, snapshot_step=4)
    mask = magnitude_prune(_params(dense), full_mask(dense), 0.5)
    a, b, c = (copy.deepcopy(dense) for _ in range(3))
    train_masked(a, data, TRAIN, mask=mask, order_seed=1, start=rewind)
    train_masked(b, data, TRAIN, mask=mask, order_seed=1, start=rewind)
    train_masked(c, data, TRAIN, mask=mask, order_seed=2, start=rewind)
    space = ParamSpace(ModelBundle.from_module(dense, data))
    ta, tb, tc = (_theta(space, m) for m in (a, b, c))
    assert torch.equal(ta, tb)
    same = linear_path(space, ta, tb, points=5)
    assert abs(same.barrier) < 1e-6
    other = linear_path(space, ta, tc, points=5)
    assert not torch.equal(ta, tc) and other.barrier > same.barrier
    # pruned coordinates are zero at every point of the path between two tickets
    idx = torch.ones(space.dim, dtype=torch.bool)
    idx[kept_indices(space, mask)] = False
    assert int(idx.sum()) == mask_count(mask)[1] - mask_count(mask)[0]
    for t in (0.25, 0.5):
        assert torch.all(((1 - t) * ta + t * tc)[idx] == 0)


def test_restricted_curvature_matches_the_dense_principal_submatrix(data) -> None:
    dense = _model(hidden=4)
    train_masked(dense, data, LotteryTrain(epochs=2), order_seed=0)
    mask = magnitude_prune(_params(dense), full_mask(dense), 0.6)
    space = ParamSpace(ModelBundle.from_module(dense, data))
    theta = space.theta0
    h = dense_hessian(space, theta)
    idx = kept_indices(space, mask)
    sub = h[idx][:, idx]
    c = restricted_curvature(space, theta, mask, matvecs=3 * len(idx), seed=0)
    assert c.dim == len(idx) < space.dim
    assert c.lambda_max == pytest.approx(float(torch.linalg.eigvalsh(sub)[-1]), rel=1e-4)
    # Hutch++ with a budget of 3·dim sketches the whole space: the trace is exact
    assert c.trace.mean == pytest.approx(float(sub.trace()), rel=1e-4)
    full = restricted_curvature(space, theta, None, matvecs=30, seed=0)
    assert full.dim == space.dim
    assert full.lambda_max == pytest.approx(float(torch.linalg.eigvalsh(h)[-1]), rel=1e-4)


def test_t_interval_and_verdict_rule() -> None:
    vals = [0.02, 0.05, 0.03, 0.04]
    iv = Interval.of(vals)
    half = sps.t.ppf(0.975, 3) * np.std(vals, ddof=1) / 2
    assert iv.mean == pytest.approx(0.035) and iv.high == pytest.approx(0.035 + half)
    assert iv.low == pytest.approx(0.035 - half) and iv.n == 4
    one = Interval.of([0.01, math.nan])
    assert one.n == 1 and math.isnan(one.high)
    assert basin_verdict(one, 0.1, 0.05, 0.05)[0] == "undecided (one seed)"
    # the cutoff is the absolute floor or 5% of the endpoint loss, whichever is larger
    assert basin_verdict(iv, 0.5, 0.05, 0.05) == ("different basin", 0.05)
    assert basin_verdict(iv, 2.0, 0.05, 0.05) == ("same basin", pytest.approx(0.1))


def test_quick_run_summaries_and_run_directory(tmp_path) -> None:
    cfg = LotteryConfig.quick(
        max_samples=200, hidden=(8,), train=LotteryTrain(epochs=3), rounds=2, seeds=(0, 1)
    )
    res = run_lottery(cfg, tmp_path / "run")
    assert [lv.level for lv in res.levels] == [0, 1, 2]
    total = res.runs[0].levels[0].total
    sched = remaining_schedule(total, 0.2, 2)
    assert [round(lv.remaining * total) for lv in res.levels] == sched
    for lv in res.levels:
        assert lv.test_acc.n == 2 and lv.instability.n == 2
        assert lv.stability in ("same basin", "different basin")
        assert lv.lambda_max.mean > 0
    assert res.levels[0].dense_verdict == "same network"
    assert "% of the weights" in res.levels[1].sentence()
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["lottery"]["levels"][2]["remaining"] == pytest.approx(sched[2] / total)
    assert (tmp_path / "run" / "results.nc").exists()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["experiment"] == "lottery"


def test_rewind_past_the_end_is_a_config_error() -> None:
    cfg = LotteryConfig(max_samples=100, hidden=(4,), train=LotteryTrain(epochs=1), rewind_step=99)
    with pytest.raises(ConfigError, match="rewind-step"):
        run_lottery(cfg)
