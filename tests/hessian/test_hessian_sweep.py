"""The shared Krylov sweep against known spectra and dense network Hessians."""

from __future__ import annotations

import numpy as np
import pytest

from landscape.engine import CurvatureOperator, DenseOperator, ParamSpace
from landscape.errors import ConfigError
from landscape.hessian import bottom_eigenpairs, frobenius_norm, hutchpp_trace, top_eigenpairs
from landscape.hessian.slq import slq_density, trapezoid
from landscape.hessian.sweep import spectrum


def _decaying(dim: int = 400) -> np.ndarray:
    """A trained-network-like spectrum: a few outliers, a bulk near zero of both signs."""
    rng = np.random.default_rng(0)
    bulk = rng.normal(0.0, 0.02, dim - 8)
    return np.concatenate([[40.0, 25.0, 12.0, 7.0, 4.0, 2.5, -0.5, -0.4], bulk])


def test_sweep_recovers_a_known_spectrum(spectrum_op):
    eigs = _decaying()
    op = spectrum_op(eigs)
    s = spectrum(op, top_k=5, bottom_k=2, slq_runs=4, slq_steps=40, seed=1)
    ref = np.sort(eigs)
    np.testing.assert_allclose(s.top.values, ref[::-1][:5], rtol=1e-8)
    np.testing.assert_allclose(s.bottom.values, ref[:2], rtol=1e-8)
    assert s.top.all_converged and s.bottom.all_converged
    tr, fro = float(eigs.sum()), float(np.sqrt((eigs**2).sum()))
    assert abs(s.trace.mean - tr) <= 4 * s.trace.stderr + 1e-9
    assert s.trace.stderr <= 0.01 * abs(tr) * 1.5
    assert abs(s.frobenius.mean - fro) <= 4 * s.frobenius.stderr + 1e-9
    assert s.trace_resolved and s.trace_note is None
    # the density is a probability density whose mean is tr/dim
    assert float(trapezoid(s.density.density, s.density.grid)) == pytest.approx(1.0, abs=1e-9)
    assert s.density.nodes.shape[0] == 4
    m1 = s.density.moment(1)
    assert abs(m1.mean - tr / eigs.size) <= 4 * m1.stderr + 1e-12


def test_sweep_spends_fewer_products_than_separate_estimators(spectrum_op):
    eigs = _decaying()
    op = spectrum_op(eigs)
    s = spectrum(op, top_k=5, bottom_k=3, slq_runs=5, slq_steps=60, seed=2)
    assert s.matvecs["total"] == op.matvecs
    assert s.matvecs["total"] == sum(v for k, v in s.matvecs.items() if k != "total")
    sep = DenseOperator(op.matrix)
    top_eigenpairs(sep, 5)
    bottom_eigenpairs(sep, 3)
    hutchpp_trace(sep, 99)
    frobenius_norm(sep, 30)
    slq_density(sep, num_runs=5, num_steps=60)
    assert s.matvecs["total"] < 0.8 * sep.matvecs
    # the first SLQ run is the eigenpair run: only slq_runs - 1 further runs
    assert s.matvecs["slq"] == 4 * 60


def test_an_unresolvable_trace_says_so(spectrum_op):
    rng = np.random.default_rng(3)
    eigs = rng.choice([-1.0, 1.0], 600) * rng.uniform(0.5, 1.0, 600)  # tr ≈ 0, ‖A‖_F large
    op = spectrum_op(eigs)
    s = spectrum(op, top_k=2, bottom_k=1, slq_runs=2, slq_steps=20, trace_matvecs=8, seed=0)
    assert not s.trace_resolved
    assert "trace not resolved" in s.trace_note and "--trace-matvecs" in s.trace_note
    assert s.matvecs["trace"] <= 8
    assert abs(s.trace.mean - eigs.sum()) <= 4 * s.trace.stderr


def test_a_krylov_space_that_fills_the_space_is_exact(spectrum_op):
    eigs = np.linspace(-2.0, 5.0, 30)
    s = spectrum(spectrum_op(eigs), top_k=3, bottom_k=2, slq_runs=2, slq_steps=40)
    assert s.krylov_dim == 30 and s.trace.stderr == 0.0 and s.matvecs["trace"] == 0
    assert s.trace.mean == pytest.approx(eigs.sum(), abs=1e-9)
    assert s.frobenius.mean == pytest.approx(np.sqrt((eigs**2).sum()), rel=1e-10)


def test_trace_stops_at_its_tolerance(spectrum_op):
    op = spectrum_op(_decaying())
    loose = spectrum(op, top_k=2, bottom_k=0, slq_runs=1, trace_tol=0.2, seed=4)
    tight = spectrum(op, top_k=2, bottom_k=0, slq_runs=1, trace_tol=0.002, seed=4)
    assert loose.matvecs["trace"] < tight.matvecs["trace"]
    assert tight.trace.stderr <= 0.002 * abs(tight.trace.mean) or not tight.trace_resolved


@pytest.mark.parametrize("which", ["mlp_bundle", "cnn_bn_bundle"])
def test_sweep_on_network_hessians_matches_dense(which, request, exact):
    space = ParamSpace(request.getfixturevalue(which))
    _, ev = exact(space)
    op = CurvatureOperator(space, strategy="cached")
    s = spectrum(op, top_k=5, bottom_k=3, keep_top=8, slq_runs=3, slq_steps=40, seed=0)
    scale = float(np.abs(ev).max())
    assert len(s.top.values) == 8
    assert s.top.converged[:5].all() and s.bottom.all_converged
    np.testing.assert_allclose(s.top.values[:5], ev[::-1][:5], rtol=1e-5, atol=1e-8 * scale)
    np.testing.assert_allclose(s.bottom.values, ev[:3], rtol=1e-5, atol=1e-8 * scale)
    tr, fro = float(ev.sum()), float(np.sqrt((ev**2).sum()))
    assert abs(s.trace.mean - tr) <= 4 * s.trace.stderr + 1e-6 * scale
    assert abs(s.frobenius.mean - fro) <= 4 * s.frobenius.stderr + 1e-6 * fro


def test_bad_counts_are_config_errors(spectrum_op):
    op = spectrum_op(np.arange(1.0, 11.0))
    with pytest.raises(ConfigError, match="slq_runs"):
        spectrum(op, slq_runs=0)
    with pytest.raises(ConfigError, match="trace_tol"):
        spectrum(op, trace_tol=0.0)
    with pytest.raises(ConfigError, match="max_iter"):
        spectrum(op, top_k=5, max_iter=3)


def test_separate_estimators_give_the_same_summary_shape(spectrum_op):
    from landscape.hessian.sweep import separate_spectrum

    op = spectrum_op(_decaying())
    sw = spectrum(op, top_k=3, bottom_k=2, slq_runs=2, slq_steps=20, seed=0)
    sep = separate_spectrum(op, top_k=3, bottom_k=2, slq_runs=2, slq_steps=20, seed=0)
    a, b = sw.summary(), sep.summary()
    assert set(a) - set(b) == {"sweep"} and set(b) <= set(a)
    np.testing.assert_allclose(a["top_eigenvalues"], b["top_eigenvalues"], rtol=1e-8)
    assert abs(a["trace"]["mean"] - b["trace"]["mean"]) <= 4 * (
        a["trace"]["stderr"] + b["trace"]["stderr"]
    )
    assert sep.matvecs["total"] == sum(v for k, v in sep.matvecs.items() if k != "total")
    assert set(sw.arrays()) == set(sep.arrays())
