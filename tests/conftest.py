"""Shared fixtures: seeded small models and data, float64 where exactness matters."""

from __future__ import annotations

import pytest
import torch

from landscape.errors import LandscapeError
from landscape.experiments.models import mlp, tiny_cnn
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle

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
