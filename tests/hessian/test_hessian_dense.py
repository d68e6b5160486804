"""The dense reference Hessian against finite differences and matrix-free products."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.errors import ConfigError
from landscape.hessian import dense_hessian, exact_spectrum
from landscape.io import ModelBundle, load_data
from landscape.models import linear_model, tiny_cnn


def test_dense_matches_finite_differences_of_gradients(mlp_bundle, exact):
    space = ParamSpace(mlp_bundle)
    h, ev = exact(space)
    assert h.dtype == torch.float64 and h.shape == (space.dim, space.dim)
    torch.testing.assert_close(h, h.T, rtol=0, atol=0)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(space.dim, generator=g, dtype=torch.float64)
    eps = 1e-5
    _, gp = space.value_and_grad(space.theta0 + eps * v)
    _, gm = space.value_and_grad(space.theta0 - eps * v)
    fd = (gp - gm) / (2 * eps)
    hv = h @ v
    assert float((fd - hv).abs().max()) <= 1e-7 * float(hv.abs().max())
    assert np.all(np.diff(ev) >= 0) and ev.shape == (space.dim,)


def test_dense_of_a_quadratic_loss_is_closed_form():
    """Linear model + MSE: the Hessian is (1/N) Σ [x;1][x;1]ᵀ ⊗ I exactly."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randn(40, 1, generator=g, dtype=torch.float64)
    from landscape.io.data import DataSource

    data = DataSource("quad", x, y, batch_size=16)
    xa = torch.cat([x, torch.ones(40, 1, dtype=torch.float64)], dim=1)
    # mse is torch.nn.MSELoss, (1/N) Σ (f − y)²: its Hessian is 2 X̃ᵀX̃ / N
    b = ModelBundle.from_module(linear_model(5, 1), data, "mse", dtype=torch.float64)
    torch.testing.assert_close(
        dense_hessian(ParamSpace(b)), 2 * xa.T @ xa / 40, rtol=1e-12, atol=1e-12
    )
    # the Gaussian NLL with σ = 1 is half of it, whatever the constant
    b = ModelBundle.from_module(linear_model(5, 1), data, "gaussian_nll", dtype=torch.float64)
    torch.testing.assert_close(dense_hessian(ParamSpace(b)), xa.T @ xa / 40, rtol=1e-12, atol=1e-12)


def _small_bn_cnn() -> nn.Module:
    torch.manual_seed(3)
    m = tiny_cnn(2)
    m[1].running_mean.uniform_(-0.2, 0.2)
    m[1].running_var.uniform_(0.5, 1.5)
    return m


def test_float32_bundle_is_cast_to_float64(digits_small):
    model = _small_bn_cnn()
    b64 = ModelBundle.from_module(model, digits_small, dtype=torch.float64)
    b32 = ModelBundle.from_module(model, digits_small, dtype=torch.float32)
    space32 = ParamSpace(b32)
    h64 = dense_hessian(ParamSpace(b64))
    h = dense_hessian(space32)
    assert h.dtype == torch.float64
    # same function: only the inputs' float32 rounding differs (they are float32 data)
    torch.testing.assert_close(h, h64, rtol=0, atol=1e-12 * float(h64.abs().max()))
    # the float32 space itself is untouched
    assert space32.dtype == torch.float32 and next(b32.module.parameters()).dtype == torch.float32


def test_dense_matches_operator_at_another_point(digits_small):
    b = ModelBundle.from_module(_small_bn_cnn(), digits_small, dtype=torch.float64)
    space = ParamSpace(b)
    g = torch.Generator().manual_seed(2)
    theta = space.theta0 + 0.05 * torch.randn(space.dim, generator=g, dtype=torch.float64)
    h = dense_hessian(space, theta)
    op = CurvatureOperator(space, theta, strategy="reverse")
    vs = torch.randn(2, space.dim, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op.matmat(vs), vs @ h, rtol=0, atol=1e-10 * float(h.abs().max()))
    assert not torch.allclose(h, dense_hessian(space))  # θ matters


def test_too_many_parameters_is_a_config_error():
    b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic", max_samples=20))
    with pytest.raises(ConfigError, match="max_params"):
        dense_hessian(ParamSpace(b), max_params=10)
    with pytest.raises(ConfigError):
        exact_spectrum(ParamSpace(b), max_params=10)
