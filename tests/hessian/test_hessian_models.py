"""Lanczos eigenpairs of real network Hessians against the dense float64 eigendecomposition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.hessian import bottom_eigenpairs, top_eigenpairs


@pytest.mark.parametrize("which", ["mlp_bundle", "cnn_bn_bundle"])
def test_extreme_eigenpairs_match_dense(which, request, exact):
    space = ParamSpace(request.getfixturevalue(which))
    h, ev = exact(space)
    scale = float(np.abs(ev).max())
    op = CurvatureOperator(space, strategy="cached")
    top = top_eigenpairs(op, k=5, return_vectors=True)
    bot = bottom_eigenpairs(op, k=3, return_vectors=True)
    assert ev[0] < 0  # these untrained networks have negative curvature
    for r, ref in ((top, ev[::-1][:5]), (bot, ev[:3])):
        assert r.all_converged, r
        np.testing.assert_allclose(r.values, ref, rtol=1e-6, atol=1e-9 * scale)
        y = torch.as_tensor(r.vectors)
        res = torch.linalg.vector_norm(y @ h - torch.as_tensor(r.values)[:, None] * y, dim=1)
        assert float(res.max()) <= 1e-6 * max(1.0, scale)
        np.testing.assert_allclose(res.numpy(), r.residuals, rtol=1e-2, atol=1e-10)
    assert top.matvecs == top.iterations


def test_unconverged_flags_on_a_network(mlp_bundle, exact):
    space = ParamSpace(mlp_bundle)
    _, ev = exact(space)
    r = bottom_eigenpairs(CurvatureOperator(space), k=3, max_iter=8)
    assert not r.all_converged
    assert np.all(r.values >= ev[:3] - 1e-12)  # Ritz values interlace: never below λ_i
