"""Eval-mode BatchNorm as an affine map: same values and derivatives, used by the operator."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import grad, jvp

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.engine.affine_norm import affine_eval_batchnorm


def _bn(cls: type[nn.Module], affine: bool) -> nn.Module:
    torch.manual_seed(0)
    bn = cls(3, affine=affine).double().eval()
    bn.running_mean.uniform_(-1.0, 1.0)
    bn.running_var.uniform_(0.3, 2.0)
    if affine:
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -0.5, 0.5)
    return bn


@pytest.mark.parametrize(
    "cls, shape",
    [
        (nn.BatchNorm1d, (4, 3)),
        (nn.BatchNorm1d, (4, 3, 5)),
        (nn.BatchNorm2d, (4, 3, 5, 2)),
        (nn.BatchNorm3d, (2, 3, 2, 3, 2)),
    ],
)
@pytest.mark.parametrize("affine", [True, False])
def test_values_and_second_derivatives_match_the_native_kernel(cls, shape, affine) -> None:
    bn = _bn(cls, affine)
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    v = torch.randn_like(x)

    def f(z: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(bn(z)) ** 2).sum()

    def hvp(z: torch.Tensor) -> torch.Tensor:
        return jvp(grad(f), (z,), (v,))[1]

    ref_y, ref_hv = bn(x), hvp(x)
    with affine_eval_batchnorm():
        y = bn(x)
        hv = hvp(x)
        y_graph = bn(x.clone().requires_grad_(True))
    assert "NativeBatchNorm" not in type(y_graph.grad_fn).__name__
    torch.testing.assert_close(y, ref_y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hv, ref_hv, rtol=1e-10, atol=1e-12)


def test_training_mode_calls_pass_through_unchanged() -> None:
    bn = _bn(nn.BatchNorm2d, True).train()
    twin = _bn(nn.BatchNorm2d, True).train()
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    with affine_eval_batchnorm():
        y = bn(x)
    torch.testing.assert_close(y, twin(x), rtol=0, atol=0)
    torch.testing.assert_close(bn.running_mean, twin.running_mean, rtol=0, atol=0)


@pytest.mark.parametrize("strategy", ["cached", "reverse", "forward"])
def test_operator_hvp_equals_native_batchnorm_hvp(cnn_bn_bundle, strategy) -> None:
    space = ParamSpace(cnn_bn_bundle)
    g = torch.Generator().manual_seed(2)
    vs = torch.randn(3, space.dim, dtype=torch.float64, generator=g)
    ref = torch.stack([jvp(grad(space.loss), (space.theta0,), (v,))[1] for v in vs])
    op = CurvatureOperator(space, strategy=strategy)
    torch.testing.assert_close(op.matmat(vs), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.matvec(vs[0]), ref[0], rtol=1e-10, atol=1e-12)
