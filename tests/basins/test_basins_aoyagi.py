import itertools

import pytest

from landscape.basins.aoyagi import deep_linear_lambda, reduced_rank_lambda, regular_lambda
from landscape.errors import ConfigError


def test_two_layers_match_aoyagi_watanabe_2005_closed_form():
    checked = 0
    for m, h, n in itertools.product(range(1, 9), repeat=3):
        for r in range(0, min(m, h, n) + 1):
            got = deep_linear_lambda([m, h, n], r)
            assert got.value == reduced_rank_lambda(m, h, n, r), (m, h, n, r)
            assert got.ell >= 1
            checked += 1
    assert checked > 1500


def test_known_values():
    # the one-element bottleneck set (ell = 0) must not be accepted: 16.5, not 11
    res = deep_linear_lambda([6, 8, 5, 7], 2)
    assert res.value == 16.5
    assert res.ell == 3 and res.bottleneck == (0, 1, 2, 3)
    # M = N = H = 3, r = 0: the odd case of the closed form, (36 - 9 + 1)/8
    assert deep_linear_lambda([3, 3, 3], 0).value == 3.5
    # a wide hidden layer: lambda = MN/2 whatever the rank
    assert deep_linear_lambda([2, 50, 3], 1).value == 3.0


@pytest.mark.parametrize(
    "widths",
    [[3, 4, 3], [5, 4, 3, 4], [4, 6, 6, 4], [2, 7, 3, 9, 2], [6, 8, 5, 7], [3, 3, 3, 3, 3]],
)
def test_deep_linear_bounds(widths):
    reg = regular_lambda(widths)
    prev = -1.0
    for r in range(0, min(widths) + 1):
        lam = deep_linear_lambda(widths, r).value
        assert 0 <= lam <= reg
        assert lam >= prev  # a higher true rank is never more degenerate
        prev = lam


def test_bad_input():
    with pytest.raises(ConfigError):
        deep_linear_lambda([3, 2, 3], 3)
    with pytest.raises(ConfigError):
        deep_linear_lambda([3], 0)
    with pytest.raises(ConfigError):
        deep_linear_lambda([3, 0, 2], 0)
