"""Shared fixtures: seeded small models and data, float64 where exactness matters."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from landscape.engine import ParamSpace
from landscape.errors import LandscapeError
from landscape.io.data import DataSource, load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import mlp, tiny_cnn

torch.set_num_threads(1)

MLP_KW = {"in_features": 64, "hidden": 8, "num_classes": 10}


@pytest.fixture()
def digits_small():
    """300 digits images (1×8×8), with a test split, in chunks of 64."""
    return load_data("digits", max_samples=300, batch_size=64, seed=0)


@pytest.fixture()
def mlp_bundle(digits_small) -> ModelBundle:
    """A float64 tanh MLP (2410 parameters) on 300 digits."""
    torch.manual_seed(0)
    return ModelBundle.from_module(
        mlp(64, 32, 10, activation="tanh"), digits_small, dtype=torch.float64
    )


@pytest.fixture()
def cnn_bn_bundle(digits_small) -> ModelBundle:
    """A float64 CNN with BatchNorm (about 1.2k parameters) on 300 digits, eval mode.

    BatchNorm running statistics are set to non-trivial values so eval mode matters.
    """
    torch.manual_seed(0)
    model = tiny_cnn(4)
    bn = model[1]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 1.5)
    return ModelBundle.from_module(model, digits_small, dtype=torch.float64)


@pytest.fixture()
def small_mlp() -> torch.nn.Module:
    """A seeded mlp(64, 8, 10) with non-trivial weights."""
    torch.manual_seed(0)
    return mlp(**MLP_KW)


@pytest.fixture()
def batch() -> torch.Tensor:
    """Five 1x8x8 inputs."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(5, 1, 8, 8, generator=g)


def assert_one_line(exc: BaseException, *needles: str) -> None:
    """A LandscapeError with a one-line message holding every needle."""
    assert isinstance(exc, LandscapeError), type(exc)
    msg = str(exc)
    assert "\n" not in msg and msg.strip() == msg, msg
    for n in needles:
        assert n in msg, (n, msg)


@pytest.fixture()
def one_line():
    """The :func:`assert_one_line` checker (conftest helpers are not importable)."""
    return assert_one_line


RING_EPS = 0.1


class RingValley(nn.Module):
    """MSE against zeros of √2·[r² − 1, √ε (x² − 1)(1 − y)]: L = (r² − 1)² + ε (x² − 1)²(1 − y)².

    Minima (L = 0) at (±1, 0) joined by the upper half of the unit circle, on which
    L = ε y⁴ (1 − y)² ≤ 0.0066 ε; the straight line between them crosses the hump
    L(0, 0) = 1 + ε. The ε term tilts the origin towards the upper arc.
    """

    def __init__(self, start: tuple[float, float] = (1.0, 0.0)) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(start, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.p[0], self.p[1]
        f = torch.stack([u**2 + v**2 - 1, math.sqrt(RING_EPS) * (u**2 - 1) * (1 - v)])
        return math.sqrt(2) * f.expand(x.shape[0], 2)


def ring_valley_loss(p: torch.Tensor) -> float:
    """The ring valley's loss at ``p = (x, y)``, in closed form."""
    x, y = float(p[0]), float(p[1])
    return (x * x + y * y - 1) ** 2 + RING_EPS * (x * x - 1) ** 2 * (1 - y) ** 2


@pytest.fixture()
def ring_space() -> Callable[..., ParamSpace]:
    """Factory of float64 spaces of :class:`RingValley` at a start point (one dummy sample)."""

    def make(start: tuple[float, float] = (1.0, 0.0)) -> ParamSpace:
        data = DataSource("ring", torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 2))
        return ParamSpace(
            ModelBundle.from_module(RingValley(start), data, "mse", dtype=torch.float64)
        )

    return make


@pytest.fixture()
def ring_loss() -> Callable[[torch.Tensor], float]:
    """The ring valley's closed-form loss."""
    return ring_valley_loss
