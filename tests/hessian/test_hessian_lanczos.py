"""Lanczos eigenpairs on operators with known spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.engine import DenseOperator
from landscape.errors import ConfigError
from landscape.hessian import bottom_eigenpairs, eigenpairs, top_eigenpairs


def _check_pairs(op, r, exact, tol=1e-6):
    scale = max(1.0, float(torch.linalg.eigvalsh(op.matrix).abs().max()))
    np.testing.assert_allclose(r.values, exact, rtol=1e-6, atol=1e-9 * scale)
    assert r.all_converged
    # explicit residuals of the returned vectors
    y = torch.as_tensor(r.vectors)
    ay = op.matrix @ y.T
    res = torch.linalg.vector_norm(ay.T - torch.as_tensor(r.values)[:, None] * y, dim=1)
    np.testing.assert_allclose(res.numpy(), r.residuals, rtol=1e-3, atol=1e-12 * scale)
    assert np.all(r.residuals <= tol * scale)
    np.testing.assert_allclose(np.linalg.norm(r.vectors, axis=1), 1.0, rtol=1e-10)


def test_top_and_bottom_of_indefinite_spectrum(spectrum_op):
    rng = np.random.default_rng(0)
    eigs = np.concatenate(
        [[50.0, 31.0, 30.0, 12.0, 11.5], rng.uniform(-2, 8, 300), [-7.0, -5.0, -4.5]]
    )
    op = spectrum_op(eigs, seed=1)
    top = top_eigenpairs(op, k=5, return_vectors=True)
    _check_pairs(op, top, np.sort(eigs)[::-1][:5])
    assert top.which == "top"
    bot = bottom_eigenpairs(op, k=3, return_vectors=True)
    _check_pairs(op, bot, np.sort(eigs)[:3])
    assert bot.which == "bottom"
    assert list(bot.values) == sorted(bot.values)
    assert list(top.values) == sorted(top.values, reverse=True)


def test_clustered_top_eigenvalues(spectrum_op):
    """Ten near-equal top eigenvalues (relative gaps 1e-3) are all resolved."""
    rng = np.random.default_rng(1)
    cluster = 10.0 + 0.01 * np.arange(10)
    eigs = np.concatenate([cluster, rng.uniform(-1, 3, 400)])
    op = spectrum_op(eigs, seed=2)
    r = top_eigenpairs(op, k=10, max_iter=400, return_vectors=True)
    _check_pairs(op, r, np.sort(eigs)[::-1][:10])
    # vectors of a cluster are orthonormal
    gram = r.vectors @ r.vectors.T
    np.testing.assert_allclose(gram, np.eye(10), atol=1e-6)


def test_matvec_count_and_iterations(spectrum_op, monkeypatch):
    op = spectrum_op(np.linspace(-1, 10, 200), seed=3)
    before = op.matvecs
    r = top_eigenpairs(op, k=3, return_vectors=True)
    assert r.matvecs == op.matvecs - before
    # one matvec per Lanczos step; explicit residuals come from the stored products
    assert r.matvecs == r.iterations
    # without stored products, the explicit check costs one matmat of k vectors
    monkeypatch.setattr(eigenpairs, "KEEP_PRODUCTS_MAX", 0)
    r2 = top_eigenpairs(op, k=3, return_vectors=True)
    assert r2.matvecs == r2.iterations + 3
    np.testing.assert_array_equal(r.values, r2.values)
    np.testing.assert_allclose(r.residuals, r2.residuals, rtol=1e-4, atol=1e-13)
    _check_pairs(op, r2, np.sort(np.linspace(-1, 10, 200))[::-1][:3])


def test_not_converged_when_max_iter_too_small(spectrum_op):
    rng = np.random.default_rng(4)
    op = spectrum_op(np.concatenate([[5.0, 4.9, 4.8], rng.uniform(-1, 4.7, 500)]), seed=4)
    r = top_eigenpairs(op, k=3, max_iter=6)
    assert r.iterations == 6
    assert not r.all_converged
    # the flags follow the explicit residuals
    scale = max(1.0, float(np.max(np.abs(r.values))))
    np.testing.assert_array_equal(r.converged, r.residuals <= 1e-6 * scale)
    assert np.any(r.residuals > 1e-3)


def test_dim_smaller_than_k_and_invariant_subspaces():
    a = torch.diag(torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64))
    r = top_eigenpairs(DenseOperator(a), k=5)
    np.testing.assert_allclose(r.values, [3.0, 2.0, -1.0], atol=1e-12)
    assert r.all_converged and r.iterations == 3
    # a rank-2 matrix in dimension 50: the Krylov space is invariant after 2-3 steps
    u = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    low = u @ torch.diag(torch.tensor([4.0, -2.0], dtype=torch.float64)) @ u.T
    ev = np.linalg.eigvalsh(low.numpy())
    r = top_eigenpairs(DenseOperator(low), k=4, return_vectors=True)
    np.testing.assert_allclose(r.values, np.sort(ev)[::-1][:4], atol=1e-10)
    assert r.all_converged
    rb = bottom_eigenpairs(DenseOperator(low), k=2)
    np.testing.assert_allclose(rb.values, np.sort(ev)[:2], atol=1e-10)
    # the zero operator
    z = top_eigenpairs(DenseOperator(torch.zeros(7, 7, dtype=torch.float64)), k=2)
    np.testing.assert_allclose(z.values, [0.0, 0.0])
    assert z.all_converged


def test_repeated_eigenvalue_found_by_restart():
    """An eigenvalue of multiplicity 2 needs a restart after the Krylov space is exhausted."""
    a = torch.diag(torch.tensor([5.0, 5.0, 1.0, 0.5], dtype=torch.float64))
    r = top_eigenpairs(DenseOperator(a), k=3)
    np.testing.assert_allclose(r.values, [5.0, 5.0, 1.0], atol=1e-12)


def test_float32_operator(spectrum_op):
    eigs = np.concatenate([[9.0, 7.0], np.linspace(-1, 3, 300)])
    op64 = spectrum_op(eigs, seed=5)
    op = DenseOperator(op64.matrix.float())
    r = top_eigenpairs(op, k=2, tol=1e-4)
    np.testing.assert_allclose(r.values, [9.0, 7.0], rtol=1e-5)
    assert r.all_converged


def test_seed_reproducible(spectrum_op):
    op = spectrum_op(np.linspace(0, 1, 100) ** 3, seed=6)
    a = top_eigenpairs(op, k=2, seed=3)
    b = top_eigenpairs(op, k=2, seed=3)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.iterations == b.iterations


def test_progress_reported(spectrum_op):
    calls = []

    class P:
        def task(self, description, total):
            calls.append((description, total))

            class T:
                def advance(self, n=1):
                    calls.append(n)

            return T()

        def finish(self, task):
            calls.append("done")

    op = spectrum_op(np.linspace(-1, 1, 60), seed=7)
    r = top_eigenpairs(op, k=1, progress=P())
    assert calls[0][1] == 60 and calls[-1] == "done"
    assert sum(c for c in calls if isinstance(c, int)) == r.iterations


@pytest.mark.parametrize("kw", [{"k": 0}, {"tol": 0.0}, {"k": 5, "max_iter": 3}])
def test_bad_arguments(spectrum_op, kw):
    with pytest.raises(ConfigError):
        top_eigenpairs(spectrum_op(np.arange(10.0)), **kw)
