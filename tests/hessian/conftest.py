"""Hessian-test helpers: matrices with known spectra and cached dense references."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from landscape.engine import DenseOperator, ParamSpace
from landscape.hessian import dense_hessian


def matrix_with_spectrum(eigs: np.ndarray, seed: int = 0) -> torch.Tensor:
    """A float64 symmetric matrix ``U diag(eigs) Uᵀ`` with a seeded random orthogonal ``U``."""
    eigs = np.asarray(eigs, dtype=np.float64)
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(eigs.size, eigs.size, generator=g, dtype=torch.float64)
    u, _ = torch.linalg.qr(a)
    m = u @ torch.diag(torch.as_tensor(eigs)) @ u.T
    return 0.5 * (m + m.T)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread here: these small problems gain nothing from two, and on a
    shared, loaded machine two threads can be many times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def spectrum_op():
    """Factory: ``spectrum_op(eigs, seed)`` → DenseOperator with exactly that spectrum."""

    def make(eigs, seed: int = 0) -> DenseOperator:
        return DenseOperator(matrix_with_spectrum(np.asarray(eigs), seed))

    return make


@pytest.fixture(scope="session")
def dense_cache() -> dict:
    return {}


@pytest.fixture()
def exact(dense_cache):
    """``exact(space)`` → (dense float64 Hessian, ascending eigenvalues), cached per θ."""

    def get(space: ParamSpace) -> tuple[torch.Tensor, np.ndarray]:
        digest = hashlib.sha1()
        for t in [space.theta0, *space.buffers.values(), space.bundle.data.x_train]:
            digest.update(t.detach().double().cpu().numpy().tobytes())
        key = (space.dim, digest.hexdigest())
        if key not in dense_cache:
            h = dense_hessian(space)
            dense_cache[key] = (h, torch.linalg.eigvalsh(h).cpu().numpy())
        return dense_cache[key]

    return get
