"""Stochastic Lanczos quadrature: normalization, moments, stderr."""

from __future__ import annotations

import numpy as np
import pytest

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.errors import ConfigError
from landscape.hessian import slq_density
from landscape.hessian.slq import trapezoid


def test_density_integrates_to_one_and_moments_match(spectrum_op):
    rng = np.random.default_rng(0)
    eigs = np.concatenate([rng.normal(0, 0.3, 380), [6.0, 5.0, 4.0], rng.uniform(-2, -1, 17)])
    op = spectrum_op(eigs, seed=0)
    sd = slq_density(op, num_runs=8, num_steps=40, seed=0)
    assert trapezoid(sd.density, sd.grid) == pytest.approx(1.0, abs=1e-10)
    assert np.all(sd.density >= 0)
    assert sd.nodes.shape == sd.weights.shape == (8, 40)
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, rtol=1e-10)
    assert sd.matvecs == 8 * 40 == op.matvecs
    assert sd.density_stderr.shape == sd.grid.shape and np.all(sd.density_stderr >= 0)
    for p in (1, 2, 3):
        m = sd.moment(p)
        exact = float(np.mean(eigs**p))
        assert abs(m.mean - exact) <= 4 * m.stderr + 1e-9, (p, m, exact)
    # the extreme Ritz values are converged eigenvalues
    assert sd.nodes.max() == pytest.approx(6.0, rel=1e-6)
    assert sd.nodes.min() == pytest.approx(eigs.min(), rel=1e-3)


def test_density_shape_follows_the_spectrum(spectrum_op):
    """Two well-separated clusters: the density mass splits in their proportion."""
    eigs = np.concatenate([np.full(150, -1.0), np.full(50, 2.0)])
    eigs = eigs + np.random.default_rng(1).normal(0, 0.01, 200)
    sd = slq_density(spectrum_op(eigs, seed=1), num_runs=10, num_steps=20, sigma=0.05)
    left = sd.grid < 0.5
    mass_left = trapezoid(sd.density[left], sd.grid[left])
    assert mass_left == pytest.approx(0.75, abs=0.08)
    assert sd.sigma == 0.05


def test_invariant_subspace_stops_runs_early():
    import torch

    from landscape.engine import DenseOperator

    a = torch.diag(torch.tensor([1.0, 2.0, 2.0, 3.0], dtype=torch.float64))
    sd = slq_density(DenseOperator(a), num_runs=3, num_steps=10)
    assert sd.nodes.shape[1] <= 4
    assert sd.moment(1).mean == pytest.approx(2.0, abs=1e-12)  # exact: quadrature on span
    assert sd.moment(2).mean == pytest.approx(4.5, abs=1e-12)  # Rademacher makes it exact


def test_slq_on_a_network(mlp_bundle, exact):
    space = ParamSpace(mlp_bundle)
    _, ev = exact(space)
    sd = slq_density(CurvatureOperator(space), num_runs=10, num_steps=20, seed=0)
    assert trapezoid(sd.density, sd.grid) == pytest.approx(1.0, abs=1e-10)
    for p in (1, 2):
        m = sd.moment(p)
        assert abs(m.mean - float(np.mean(ev**p))) <= 4 * m.stderr
    assert sd.grid[0] < ev[0] and sd.grid[-1] > ev[-1]


def test_bad_arguments(spectrum_op):
    op = spectrum_op(np.arange(5.0))
    with pytest.raises(ConfigError):
        slq_density(op, num_runs=0)
    with pytest.raises(ConfigError):
        slq_density(op, sigma=-1.0)
