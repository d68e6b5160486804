"""Fixtures for surface tests: small float64 models whose values can be checked exactly."""

from __future__ import annotations

import pytest
import torch

from landscape.engine import ParamSpace
from landscape.io.data import DataSource, load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import linear_model, mlp


@pytest.fixture()
def digits_tiny() -> DataSource:
    """120 digits images with a test split, in chunks of 50 (so the last chunk is short)."""
    return load_data("digits", max_samples=120, batch_size=50, seed=0)


@pytest.fixture()
def mlp_space(digits_tiny) -> ParamSpace:
    """A float64 tanh MLP (64-12-10) on 120 digits."""
    torch.manual_seed(0)
    return ParamSpace(
        ModelBundle.from_module(
            mlp(64, 12, 10, activation="tanh"), digits_tiny, dtype=torch.float64
        )
    )


@pytest.fixture()
def quad_space() -> ParamSpace:
    """A linear model with MSE in float64: its loss is exactly quadratic in θ."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(80, 6, generator=g, dtype=torch.float64)
    y = torch.randn(80, 2, generator=g, dtype=torch.float64)
    data = DataSource("quad", x, y, x[:20] * 0.5, y[:20], batch_size=32)
    torch.manual_seed(1)
    return ParamSpace(ModelBundle.from_module(linear_model(6, 2), data, "mse", dtype=torch.float64))


@pytest.fixture()
def cnn_space(cnn_bn_bundle) -> ParamSpace:
    """The shared float64 tiny CNN with BatchNorm (non-trivial running statistics)."""
    return ParamSpace(cnn_bn_bundle)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine two threads contend badly."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
