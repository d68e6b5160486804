"""The shared statistics module: partial and stratified rank correlations."""

from __future__ import annotations

import numpy as np

from landscape.stats import partial_spearman, stratified_spearman


def test_partial_spearman_removes_a_common_cause() -> None:
    rng = np.random.default_rng(1)
    n = 90
    z = rng.normal(size=n)
    strata = np.repeat([0, 1, 2], n // 3)
    x = z + 0.2 * rng.normal(size=n)
    y = z + 0.2 * rng.normal(size=n)
    rho, p, _ = stratified_spearman(x, y, strata, permutations=999)
    assert rho > 0.8 and p < 0.01
    prho, pp, m = partial_spearman(x, y, [z], strata, permutations=999)
    assert m == n and abs(prho) < 0.35 and pp > 0.01


def test_partial_spearman_keeps_a_direct_effect() -> None:
    rng = np.random.default_rng(2)
    n = 90
    z = rng.normal(size=n)
    x = rng.normal(size=n)
    y = x + z + 0.3 * rng.normal(size=n)
    prho, pp, _ = partial_spearman(x, y, [z], [0] * n, permutations=999)
    assert prho > 0.8 and pp <= 0.002


def test_permutation_p_has_the_floor_of_its_count_and_is_uniform_under_the_null() -> None:
    rng = np.random.default_rng(3)
    x = np.arange(30.0)
    rho, p, _ = stratified_spearman(x, x, [0] * 30, permutations=499)
    assert rho == 1.0 or abs(rho - 1) < 1e-12
    assert p == 1 / 500
    ps = [
        stratified_spearman(
            rng.normal(size=20), rng.normal(size=20), [0] * 20, permutations=199, seed=s
        )[1]
        for s in range(200)
    ]
    assert 0.02 < np.mean(np.asarray(ps) < 0.05) < 0.09
