import numpy as np
import pytest
import torch
from torch import nn

from landscape.basins.connect import CurveConfig
from landscape.basins.counting import components, count_basins, loss_barrier
from landscape.engine import ParamSpace
from landscape.errors import ConfigError
from landscape.io.data import DataSource
from landscape.io.model_bundle import ModelBundle


class Square(nn.Module):
    """f(x) = w²·x: with target 1 at x = 1 the loss ½(w² − 1)² has minima at w = ±1."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w**2 * x


@pytest.fixture()
def toy() -> ParamSpace:
    x = torch.ones(1, 1, dtype=torch.float64)
    return ParamSpace(ModelBundle.from_module(Square(), DataSource("toy", x, x.clone()), "mse"))


def test_known_barrier_between_two_minima(toy):
    a, b = torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    res = loss_barrier(toy, a, b, points=21)
    # the path crosses w = 0 at t = ½ where the loss is (0 − 1)² = 1; endpoints are 0
    assert res.barrier == pytest.approx(1.0, abs=1e-12)
    assert res.argmax == pytest.approx(0.5)
    w = -1 + 2 * res.t
    np.testing.assert_allclose(res.loss, (w**2 - 1) ** 2, atol=1e-12)
    # within one minimum's basin the barrier is tiny
    near = loss_barrier(toy, b, torch.tensor([1.05], dtype=torch.float64)).barrier
    assert near < 1e-2


def test_counting_components(toy):
    minima = [torch.tensor([v], dtype=torch.float64) for v in (-1.0, 1.0, 1.02, -0.99)]
    res = count_basins(toy, minima, threshold=0.1, align=False)
    assert res.num_basins == 2
    assert res.labels[1] == res.labels[2] != res.labels[0] == res.labels[3]
    assert res.barriers[0, 1] == pytest.approx(1.0, abs=2e-3)
    np.testing.assert_allclose(res.barriers, res.barriers.T)
    # a threshold above the barrier merges everything
    assert count_basins(toy, minima, threshold=2.0, align=False).num_basins == 1
    assert components(np.zeros((3, 3)) + 5, 1.0)[0] == 3
    with pytest.raises(ConfigError):
        count_basins(toy, [], align=False)


def test_barrier_is_max_minus_mean_of_the_endpoints(toy):
    a, b = torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.2], dtype=torch.float64)
    res = loss_barrier(toy, a, b, points=23)
    # the path crosses w = 0 (loss 1) at t = 1/2.2; the ends have 0 and (1.44 − 1)² = 0.1936
    assert res.loss.max() == pytest.approx(1.0, abs=1e-12)
    assert res.barrier == pytest.approx(1.0 - 0.1936 / 2, abs=1e-12)
    assert res.argmax == pytest.approx(10 / 22)


def test_a_curve_joins_minima_the_straight_path_separates(ring_space):
    space = ring_space()
    minima = [torch.tensor(p, dtype=torch.float64) for p in ((-1.0, 0.0), (1.0, 0.0))]
    straight = count_basins(space, minima, threshold=0.2, align=False)
    assert straight.num_basins == 2 and straight.curve is None
    assert straight.to_dict()["curved_pairs"] == 0
    cfg = CurveConfig(kind="bezier", steps=600, lr=0.02)
    curved = count_basins(space, minima, threshold=0.2, align=False, curve=cfg)
    assert curved.num_basins == 1
    assert curved.barriers[0, 1] < 0.1 < straight.barriers[0, 1]
    d = curved.to_dict()
    assert d["curve"] == "bezier" and d["curved_pairs"] == 1
