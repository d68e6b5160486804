"""Every Hessian-vector product strategy of the engine equals the dense Hessian."""

from __future__ import annotations

import pytest
import torch

from landscape.engine import CurvatureOperator, ParamSpace


@pytest.mark.parametrize("which", ["mlp_bundle", "cnn_bn_bundle"])
@pytest.mark.parametrize("strategy", ["cached", "reverse", "forward"])
def test_strategies_match_dense(which, strategy, request, exact):
    space = ParamSpace(request.getfixturevalue(which))
    h, _ = exact(space)
    op = CurvatureOperator(space, strategy=strategy)
    g = torch.Generator().manual_seed(0)
    vs = torch.randn(3, space.dim, generator=g, dtype=torch.float64)
    ref = vs @ h
    scale = float(ref.abs().max())
    torch.testing.assert_close(op.matmat(vs), ref, rtol=0, atol=1e-10 * scale)
    torch.testing.assert_close(op.matvec(vs[0]), ref[0], rtol=0, atol=1e-10 * scale)
    assert op.matvecs == 4
