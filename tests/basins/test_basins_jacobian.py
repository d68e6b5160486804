import numpy as np
import pytest
import torch

from landscape.basins.jacobian_rank import effective_rank, jacobian_rank, output_jacobian
from landscape.basins.symmetry import apply_rescaling, rescale_layer_pair
from landscape.engine import ParamSpace
from landscape.errors import ConfigError
from landscape.io.data import DataSource
from landscape.io.model_bundle import ModelBundle
from landscape.models import linear_model


def _linear_space(n: int, p: int, k: int, outputs: int, dtype=torch.float64) -> ParamSpace:
    # inputs confined to a k-dimensional subspace: J has rank outputs · rank([X, 1])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, k, generator=g, dtype=torch.float64) @ torch.randn(
        k, p, generator=g, dtype=torch.float64
    )
    y = torch.randn(n, outputs, generator=g, dtype=torch.float64)
    model = linear_model(p, outputs)
    return ParamSpace(ModelBundle.from_module(model, DataSource("lin", x, y), "mse", dtype=dtype))


def test_linear_model_rank_is_known():
    space = _linear_space(n=40, p=6, k=3, outputs=2)
    res = jacobian_rank(space, max_samples=None)
    assert res.shape == (80, 14)
    assert res.rank == 2 * (3 + 1)
    # the float64 model uses the SVD; a float32 copy uses the Gram route and agrees
    res32 = jacobian_rank(_linear_space(40, 6, 3, 2, dtype=torch.float32), max_samples=None)
    assert res32.rank == res.rank
    assert res.method == "eps" and res.tol > 0
    assert jacobian_rank(space, max_samples=None, rtol=1e-8).rank == 8
    # J is exactly [x ⊗ I, I] per sample
    jac, n = output_jacobian(space, max_samples=5)
    assert n == 5 and jac.shape == (10, 14)


def test_rank_is_invariant_to_rescaling(relu_space):
    th = relu_space.theta0
    base = jacobian_rank(relu_space, th, max_samples=40)
    g = torch.Generator().manual_seed(3)
    scales = [
        torch.exp(2 * torch.randn(12, generator=g, dtype=torch.float64)),
        torch.exp(2 * torch.randn(8, generator=g, dtype=torch.float64)),
    ]
    for other in (
        rescale_layer_pair(relu_space, th, 0, 4.0),
        apply_rescaling(relu_space, th, scales),
    ):
        x = relu_space.bundle.data.x_train[:20].double()
        torch.testing.assert_close(relu_space.forward(other, x), relu_space.forward(th, x))
        res = jacobian_rank(relu_space, other, max_samples=40)
        assert res.rank == base.rank
        assert res.effective_rank == pytest.approx(base.effective_rank, rel=1e-9)
        assert (
            jacobian_rank(relu_space, other, max_samples=40, rtol=1e-3).rank
            == jacobian_rank(relu_space, th, max_samples=40, rtol=1e-3).rank
        )
    # without column normalization the rescaled copy's spectrum changes
    raw_a = jacobian_rank(relu_space, th, max_samples=40, normalize_columns=False)
    raw_b = jacobian_rank(
        relu_space,
        rescale_layer_pair(relu_space, th, 0, 4.0),
        max_samples=40,
        normalize_columns=False,
    )
    assert raw_a.singular_values[0] != pytest.approx(raw_b.singular_values[0], rel=1e-3)


def test_effective_rank_and_errors(relu_space):
    assert effective_rank(np.array([2.0, 2.0, 2.0, 2.0])) == pytest.approx(4.0)
    assert effective_rank(np.array([1.0, 0.0])) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        jacobian_rank(relu_space, rtol=2.0)
    with pytest.raises(ConfigError):
        jacobian_rank(relu_space, method="qr")
