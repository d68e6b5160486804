"""Fixtures for io tests: a small float64 MLP, a batch of digits, and error helpers."""

from __future__ import annotations

import pytest
import torch

from landscape.errors import LandscapeError
from landscape.experiments.models import mlp

MLP = "landscape.experiments.models:mlp"
MLP_KW = {"in_features": 64, "hidden": 8, "num_classes": 10}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these models are tiny, and on a shared 2-core machine OpenMP
    threads that spin while waiting for each other make them 10-100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
