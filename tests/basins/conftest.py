"""Fixtures for the basin measures: quadratic bowls, deep linear teachers, small MLPs."""

from __future__ import annotations

import math

import pytest
import torch

from landscape.engine import ParamSpace
from landscape.io.data import DataSource, load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import deep_linear, linear_model, mlp


def least_squares_space(
    n: int = 200, p: int = 3, scales: tuple[float, ...] = (2.0, 1.0, 0.5), seed: int = 0
) -> tuple[ParamSpace, torch.Tensor]:
    """A linear model with MSE at its least-squares minimum; returns the space and H."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64) * torch.tensor(
        scales, dtype=torch.float64
    )
    y = x @ torch.randn(p, 1, generator=g, dtype=torch.float64) + 0.3 * torch.randn(
        n, 1, generator=g, dtype=torch.float64
    )
    xt = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(xt, y).solution
    model = linear_model(p, 1).double()
    with torch.no_grad():
        model[1].weight.copy_(sol[:p].T)
        model[1].bias.copy_(sol[p])
    data = DataSource("bowl", x, y, batch_size=n)
    space = ParamSpace(ModelBundle.from_module(model, data, "mse", dtype=torch.float64))
    return space, 2 * xt.T @ xt / n  # the Hessian of mse (torch.nn.MSELoss)


def deep_linear_space(
    widths: list[int],
    rank: int,
    *,
    n: int = 2000,
    sigma: float = 1.0,
    seed: int = 0,
    steps: int = 1500,
) -> ParamSpace:
    """A deep linear network trained (full-batch Adam) on data from a rank-``rank`` teacher."""
    g = torch.Generator().manual_seed(seed)
    h0, hl = widths[0], widths[-1]
    a = torch.randn(hl, rank, generator=g)
    b = torch.randn(rank, h0, generator=g)
    w0 = a @ b / math.sqrt(rank) if rank > 0 else torch.zeros(hl, h0)
    x = torch.randn(n, h0, generator=g)
    y = x @ w0.T + sigma * torch.randn(n, hl, generator=g)
    model = deep_linear(widths)
    with torch.no_grad():
        for layer in model:
            layer.weight.copy_(
                (torch.rand(layer.weight.shape, generator=g) * 2 - 1) / math.sqrt(layer.in_features)
            )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((model(x) - y) ** 2).sum(1).mean()
        loss.backward()
        opt.step()
    data = DataSource("dln", x, y, batch_size=n)
    return ParamSpace(ModelBundle.from_module(model, data, "mse", dtype=torch.float64))


@pytest.fixture()
def digits_tiny() -> DataSource:
    """200 digits images, flattened by the models, one chunk."""
    return load_data("digits", max_samples=200, batch_size=200, seed=0)


@pytest.fixture()
def relu_space(digits_tiny: DataSource) -> ParamSpace:
    """A float64 ReLU MLP 64-12-8-10 (two hidden layers) at a random point."""
    g = torch.Generator().manual_seed(0)
    model = mlp(64, [12, 8], 10)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return ParamSpace(ModelBundle.from_module(model, digits_tiny, dtype=torch.float64))


@pytest.fixture()
def make_bowl():
    """Factory of least-squares spaces (see :func:`least_squares_space`)."""
    return least_squares_space


@pytest.fixture()
def make_deep_linear():
    """Factory of trained deep linear networks (see :func:`deep_linear_space`)."""
    return deep_linear_space
