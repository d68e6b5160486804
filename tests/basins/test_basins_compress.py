import math

import pytest
import torch

from landscape.basins.compress import compressibility, prune, quantize
from landscape.engine import ParamSpace
from landscape.errors import ConfigError
from landscape.io.data import DataSource
from landscape.io.model_bundle import ModelBundle
from landscape.models import linear_model


def _teacher_space(weights: torch.Tensor) -> ParamSpace:
    # a linear model that reproduces a linear teacher exactly (zero loss at θ)
    g = torch.Generator().manual_seed(0)
    p = weights.numel()
    x = torch.randn(300, p, generator=g, dtype=torch.float64)
    y = x @ weights.unsqueeze(1)
    model = linear_model(p, 1, bias=False).double()
    with torch.no_grad():
        model[1].weight.copy_(weights.unsqueeze(0))
    return ParamSpace(ModelBundle.from_module(model, DataSource("t", x, y), "mse"))


def test_exact_zeros_are_prunable_and_grid_weights_need_few_bits():
    w = torch.zeros(40, dtype=torch.float64)
    w[:10] = torch.tensor([1.0, -1.0] * 5)  # 30 of 40 weights are zero; values on a 3-level grid
    space = _teacher_space(w)
    res = compressibility(space, delta=1e-6)
    assert res.loss == 0.0
    assert res.prunable_fraction == 0.75
    assert res.quant_bits == 2  # levels {-m, 0, m} represent the weights exactly
    # description: mask of 40 with 10 kept, 10 values with two equiprobable codes, one scale
    h2 = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert res.description_bits == pytest.approx(40 * h2 + 10 * 1.0 + 32, rel=1e-6)
    assert res.num_prunable == 40 and res.dim == 40


def test_dense_random_weights_are_not_free_to_prune():
    g = torch.Generator().manual_seed(1)
    space = _teacher_space(torch.randn(40, generator=g, dtype=torch.float64) + 3.0)
    res = compressibility(space, delta=1e-3)
    assert res.prunable_fraction < 0.05
    assert res.quant_bits >= 8


def test_helpers_and_errors(relu_space):
    th = torch.tensor([3.0, -1.0, 2.0, 0.5])
    order = torch.argsort(th.abs())
    assert prune(th, order, 0.5).tolist() == [3.0, 0.0, 2.0, 0.0]
    q, codes = quantize(relu_space, relu_space.theta0, 3)
    for info, c in zip(relu_space.infos, codes, strict=True):
        assert int(c.abs().max()) <= 3
        m = float(relu_space.theta0[info.slice].abs().max())
        assert (
            float((q[info.slice] - relu_space.theta0[info.slice]).abs().max()) <= m / 3 / 2 + 1e-12
        )
    with pytest.raises(ConfigError):
        compressibility(relu_space, delta=0.0)
