import numpy as np
import pytest
import torch

from landscape.basins.counting import count_basins, loss_barrier
from landscape.basins.symmetry import (
    _weights,
    apply_permutation,
    apply_rescaling,
    canonicalize,
    check_same_function,
    mlp_layout,
    rebalance,
    weight_matching,
)
from landscape.engine import ParamSpace
from landscape.errors import ConfigError


def _scrambled(space: ParamSpace, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(12, generator=g).numpy(), torch.randperm(8, generator=g).numpy()]
    scales = [
        torch.exp(torch.randn(12, generator=g, dtype=torch.float64)),
        torch.exp(torch.randn(8, generator=g, dtype=torch.float64)),
    ]
    return apply_rescaling(space, apply_permutation(space, space.theta0, perms), scales), perms


def test_permuted_and_rescaled_copy_is_aligned_back_exactly(relu_space):
    th = relu_space.theta0
    other, perms = _scrambled(relu_space)
    assert check_same_function(relu_space, th, other) < 1e-12
    assert float((other - th).abs().max()) > 0.1
    a, b = canonicalize(relu_space, th), canonicalize(relu_space, other)
    al = weight_matching(relu_space, a, b)
    torch.testing.assert_close(al.theta, a, rtol=0, atol=1e-10)
    # the matching undoes the permutation: aligned unit i is scrambled unit inv[i]
    for applied, found in zip(perms, al.perms, strict=True):
        assert np.array_equal(applied[found], np.arange(len(applied)))
    assert loss_barrier(relu_space, a, al.theta).barrier < 1e-12
    # without alignment the straight path between the copies does rise
    assert loss_barrier(relu_space, th, other).barrier > 1e-3


def test_rebalance_balances_every_unit(relu_space):
    out = rebalance(relu_space, relu_space.theta0)
    layers = mlp_layout(relu_space)
    for lay, nxt in zip(layers[:-1], layers[1:], strict=True):
        n_in = (_weights(out, lay) ** 2).sum(1) + out[lay.bias] ** 2
        n_out = (_weights(out, nxt) ** 2).sum(0)
        torch.testing.assert_close(n_in, n_out, rtol=1e-8, atol=1e-12)
    assert float(out.norm()) <= float(relu_space.theta0.norm()) + 1e-12
    assert check_same_function(relu_space, relu_space.theta0, out) < 1e-12


def test_unsupported_models(mlp_bundle, cnn_bn_bundle):
    with pytest.raises(ConfigError):  # tanh is not positively homogeneous
        canonicalize(ParamSpace(mlp_bundle), ParamSpace(mlp_bundle).theta0)
    with pytest.raises(ConfigError):  # convolutions are not an MLP
        mlp_layout(ParamSpace(cnn_bn_bundle))
    # permutation alone is fine for tanh MLPs
    sp = ParamSpace(mlp_bundle)
    perm = np.random.default_rng(0).permutation(32)
    al = weight_matching(sp, sp.theta0, apply_permutation(sp, sp.theta0, [perm]))
    torch.testing.assert_close(al.theta, sp.theta0, rtol=0, atol=0)
    assert count_basins(sp, [sp.theta0, al.theta], rescale=False).num_basins == 1
