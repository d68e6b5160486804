"""Fixtures with exact answers: quadratics at their minimum, small ReLU nets, dense Hessians."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from landscape.engine import ParamSpace
from landscape.io.data import DataSource, load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import linear_model, mlp


def quadratic_space(
    scales: list[float], n: int = 400, seed: int = 0
) -> tuple[ParamSpace, np.ndarray]:
    """A float64 linear model + Gaussian NLL at its least-squares minimum, and its Hessian.

    ``L(θ) = (1/2N) Σ (wᵀx + b − y)² + const`` is exactly quadratic, so at the minimum
    ``L(θ*+δ) − L(θ*) = δᵀHδ/2`` with ``H = X̃ᵀX̃/N`` (``X̃ = [X, 1]``).
    """
    g = torch.Generator().manual_seed(seed)
    d = len(scales)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.tensor(
        scales, dtype=torch.float64
    )
    y = x @ torch.randn(d, generator=g, dtype=torch.float64) + 0.3 * torch.randn(
        n, generator=g, dtype=torch.float64
    )
    data = DataSource("quadratic", x, y, batch_size=128)
    xt = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    sol = torch.linalg.lstsq(xt, y.unsqueeze(1)).solution.reshape(-1)
    model = linear_model(d, 1).double()
    with torch.no_grad():
        model[1].weight.copy_(sol[:d].view(1, d))
        model[1].bias.copy_(sol[d:])
    space = ParamSpace(ModelBundle.from_module(model, data, "gaussian_nll"))
    h = (xt.T @ xt / n).numpy()
    return space, h


def dense_hessian(space: ParamSpace, theta: torch.Tensor | None = None) -> torch.Tensor:
    """The float64 Hessian of the mean training loss by ``torch.func.hessian``."""
    th = space.theta0 if theta is None else theta
    return torch.func.hessian(lambda t: space.loss(t))(th.detach())


def rescaled(model: nn.Sequential, first: int, second: int, alpha: float) -> nn.Sequential:
    """A copy with layer ``first`` (weight and bias) times α and layer ``second`` times 1/α."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        m[first].weight.mul_(alpha)
        if m[first].bias is not None:
            m[first].bias.mul_(alpha)
        m[second].weight.div_(alpha)
    return m


@pytest.fixture()
def quad() -> tuple[ParamSpace, np.ndarray]:
    """A 6-parameter quadratic with a well separated top eigenvalue."""
    return quadratic_space([3.0, 1.0, 1.0, 0.7, 0.5])


@pytest.fixture(scope="module")
def digits_200():
    """200 digits images with a test split, one chunk."""
    return load_data("digits", max_samples=200, batch_size=200, seed=0)


@pytest.fixture(scope="module")
def relu_pair(digits_200):
    """A float64 ReLU MLP (64-16-10) and its twin with the output layer's weight times 4 and
    the hidden layer's weight and bias times 1/4 (the same function)."""
    torch.manual_seed(0)
    model = mlp(64, 16, 10).double()
    twin = rescaled(model, 1, 3, 0.25)
    a = ParamSpace(ModelBundle.from_module(model, digits_200, dtype=torch.float64))
    b = ParamSpace(ModelBundle.from_module(twin, digits_200, dtype=torch.float64))
    return a, b


@pytest.fixture()
def make_quadratic():
    """Factory fixture: :func:`quadratic_space`."""
    return quadratic_space


@pytest.fixture()
def hessian_of():
    """Factory fixture: :func:`dense_hessian`."""
    return dense_hessian


@pytest.fixture()
def rescale():
    """Factory fixture: :func:`rescaled`."""
    return rescaled
