"""Hutchinson, Hutch++ and Frobenius estimates against exact answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.engine import CurvatureOperator, DenseOperator, ParamSpace
from landscape.errors import ConfigError
from landscape.hessian import frobenius_norm, hutchinson_trace, hutchpp_trace


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_within_three_stderr_and_shrinking(spectrum_op, distribution):
    rng = np.random.default_rng(0)
    eigs = rng.uniform(-1, 3, 300)
    op = spectrum_op(eigs, seed=1)
    small = hutchinson_trace(op, 20, seed=0, distribution=distribution)
    large = hutchinson_trace(op, 320, seed=1, distribution=distribution)
    for est in (small, large):
        assert abs(est.mean - eigs.sum()) <= 3 * est.stderr
    assert large.stderr < 0.5 * small.stderr  # √16 = 4 in expectation
    assert large.n == 320 and large.method == f"hutchinson-{distribution}"


def test_hutchinson_variance_matches_theory(spectrum_op):
    """Rademacher: Var(zᵀAz) = 2(‖A‖_F² − Σ a_ii²)."""
    op = spectrum_op(np.linspace(-2, 2, 100), seed=2)
    a = op.matrix
    var = 2 * (float((a * a).sum()) - float((torch.diagonal(a) ** 2).sum()))
    est = hutchinson_trace(op, 2000, seed=3)
    assert abs(est.stderr**2 * 2000 / var - 1) < 0.15


def test_hutchpp_within_three_stderr_and_shrinking(spectrum_op):
    rng = np.random.default_rng(4)
    eigs = np.concatenate([[40.0, 25.0, 20.0], rng.uniform(-1, 2, 400)])
    op = spectrum_op(eigs, seed=4)
    small = hutchpp_trace(op, 30, seed=0)
    large = hutchpp_trace(op, 300, seed=1)
    for est in (small, large):
        assert abs(est.mean - eigs.sum()) <= 3 * est.stderr
    assert large.stderr < 0.5 * small.stderr
    assert small.n == 10 and large.n == 100


def test_hutchpp_beats_hutchinson_on_low_rank_dominated_matrix(spectrum_op):
    rng = np.random.default_rng(5)
    eigs = np.concatenate([rng.uniform(50, 100, 10), rng.normal(0, 0.05, 490)])
    op = spectrum_op(eigs, seed=5)
    exact = eigs.sum()
    err_h = [abs(hutchinson_trace(op, 60, seed=s).mean - exact) for s in range(10)]
    err_pp = [abs(hutchpp_trace(op, 60, seed=s).mean - exact) for s in range(10)]
    assert np.mean(err_pp) < 0.1 * np.mean(err_h)
    assert hutchpp_trace(op, 60).stderr < 0.1 * hutchinson_trace(op, 60).stderr


def test_hutchpp_exact_when_sketch_spans_space():
    a = torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64))
    est = hutchpp_trace(DenseOperator(a), 30)
    assert est.mean == pytest.approx(15.0, abs=1e-10)
    assert est.stderr == pytest.approx(0.0, abs=1e-10)


def test_frobenius_within_three_stderr(spectrum_op):
    rng = np.random.default_rng(6)
    eigs = rng.normal(0, 1, 300)
    op = spectrum_op(eigs, seed=6)
    exact = float(np.sqrt((eigs**2).sum()))
    small = frobenius_norm(op, 10, seed=0)
    large = frobenius_norm(op, 160, seed=1)
    for est in (small, large):
        assert abs(est.mean - exact) <= 3 * est.stderr
    assert large.stderr < 0.5 * small.stderr


def test_traces_on_a_network(mlp_bundle, exact):
    space = ParamSpace(mlp_bundle)
    h, ev = exact(space)
    tr, fro = float(ev.sum()), float(np.sqrt((ev**2).sum()))
    op = CurvatureOperator(space)
    hut = hutchinson_trace(op, 60, seed=0)
    hpp = hutchpp_trace(op, 60, seed=0)
    fr = frobenius_norm(op, 30, seed=0)
    assert abs(hut.mean - tr) <= 3 * hut.stderr
    assert abs(hpp.mean - tr) <= 3 * hpp.stderr
    assert abs(fr.mean - fro) <= 3 * fr.stderr
    assert op.matvecs == 150


@pytest.mark.parametrize(
    "call",
    [
        lambda op: hutchinson_trace(op, 1),
        lambda op: hutchinson_trace(op, 10, distribution="uniform"),
        lambda op: hutchpp_trace(op, 5),
        lambda op: frobenius_norm(op, 1),
    ],
)
def test_bad_arguments(call):
    with pytest.raises(ConfigError):
        call(DenseOperator(torch.eye(3)))


def test_hutchpp_stderr_is_honest_with_few_probes(spectrum_op):
    """At 12 matvecs (4 residual probes) the reported stderr tracks the true spread."""
    rng = np.random.default_rng(7)
    eigs = np.concatenate([[30.0, 12.0, 8.0, 6.0, 5.0, 4.0], rng.exponential(0.3, 300)])
    op = spectrum_op(eigs, seed=7)
    ests = [hutchpp_trace(op, 12, seed=s) for s in range(60)]
    means = np.array([e.mean for e in ests])
    ses = np.array([e.stderr for e in ests])
    spread = means.std(ddof=1)
    assert 0.8 * spread <= np.sqrt(np.mean(ses**2)) <= 1.6 * spread
    assert np.mean(np.abs(means - eigs.sum()) <= 2 * ses) >= 0.9
