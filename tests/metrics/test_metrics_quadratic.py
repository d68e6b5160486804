"""Exact answers on quadratics: ε-sharpness, adaptive sharpness, average sharpness, PAC-Bayes σ."""

from __future__ import annotations

import math

import numpy as np
import torch

from landscape.metrics import (
    adaptive_sharpness,
    average_sharpness,
    eps_sharpness,
    pac_bayes_bound,
    pac_bayes_sigma,
)
from landscape.metrics._util import noise_scale


def test_eps_sharpness_is_half_eps_squared_lambda_max(quad) -> None:
    space, h = quad
    lam = np.linalg.eigvalsh(h)[-1]
    for eps in (0.05, 0.3):
        r = eps_sharpness(space, radius=eps, restarts=2, steps=15, seed=1)
        exact = eps**2 * lam / 2
        assert abs(r.value - exact) <= 1e-7 * exact, (r.value, exact)
        assert r.radius == eps and not r.adaptive
        assert abs(r.delta_norm - eps) < 1e-9  # a convex quadratic peaks on the sphere


def test_eps_sharpness_small_spectral_gap(make_quadratic) -> None:
    # λ1/λ2 ≈ 1.4: the ascent still reaches the optimum to 1e-4 with the default budget.
    space, h = make_quadratic([1.2, 1.1, 0.5, 0.4], seed=3)
    lam = np.linalg.eigvalsh(h)
    assert lam[-1] / lam[-2] < 1.5
    r = eps_sharpness(space, radius=0.1, seed=0)
    exact = 0.1**2 * lam[-1] / 2
    assert r.value <= exact * (1 + 1e-9)  # a found value is attained, never above the max
    assert r.value >= exact * (1 - 1e-4), (r.value, exact)


def test_adaptive_sharpness_is_half_rho_squared_lambda_max_of_dhd(quad) -> None:
    space, h = quad
    d = np.abs(space.theta0.numpy())
    lam = np.linalg.eigvalsh(d[:, None] * h * d[None, :])[-1]
    rho = 0.2
    r = adaptive_sharpness(space, radius=rho, restarts=2, steps=20, seed=0)
    exact = rho**2 * lam / 2
    assert abs(r.value - exact) <= 1e-6 * exact, (r.value, exact)
    assert r.adaptive and r.radius == rho


def test_average_sharpness_is_half_sigma_squared_trace(quad) -> None:
    space, h = quad
    sigma = 0.05
    est = average_sharpness(space, sigma=sigma, num_samples=400, seed=0)
    exact = sigma**2 * np.trace(h) / 2
    assert abs(est.mean - exact) <= 4 * est.stderr, (est, exact)
    assert est.stderr < 0.1 * exact
    assert est.n == 400


def test_average_sharpness_scaled_noise_closed_forms(quad) -> None:
    space, h = quad
    sigma = 0.1
    for scale in ("element", "filter"):
        c = noise_scale(space, space.theta0, scale).numpy()
        exact = sigma**2 * float(np.sum(c**2 * np.diag(h))) / 2
        est = average_sharpness(space, sigma=sigma, num_samples=300, scale=scale, seed=2)
        assert abs(est.mean - exact) <= 4 * est.stderr, (scale, est, exact)
        assert est.method.endswith(scale)


def test_filter_scale_gives_filter_norm_per_row(quad) -> None:
    space, _ = quad
    th = space.theta0
    c = noise_scale(space, th, "filter")
    w = th[:5]
    assert torch.allclose(c[:5], w.norm() / math.sqrt(5) * torch.ones(5, dtype=th.dtype))
    assert torch.allclose(c[5], th[5].abs())


def test_pac_bayes_sigma_matches_closed_form(make_quadratic) -> None:
    # 20 nearly whitened features: σ* = sqrt(2·threshold / tr H)
    space, h = make_quadratic([1.0] * 19, n=500, seed=4)
    thr = 0.01
    r = pac_bayes_sigma(space, threshold=thr, num_samples=40, rel_tol=1e-3, seed=0)
    exact = math.sqrt(2 * thr / np.trace(h))
    assert r.bracketed
    assert abs(r.sigma - exact) <= 4 * r.sigma_stderr, (r.sigma, r.sigma_stderr, exact)
    assert abs(r.sigma - exact) < 0.05 * exact
    assert abs(r.deviation - thr) < 3e-3 * thr  # bisection converged on the MC curve
    m = space.num_samples()
    norm = float(space.theta0.norm())
    assert r.num_train == m
    assert math.isclose(r.bound, norm**2 / (4 * r.sigma**2) + math.log(m / r.sigma) + 10)
    assert math.isclose(r.bound, pac_bayes_bound(norm, r.sigma, m))
    assert math.isclose(r.flatness, 1 / r.sigma**2)


def test_pac_bayes_sigma_is_deterministic_given_seed(quad) -> None:
    space, _ = quad
    a = pac_bayes_sigma(space, num_samples=5, seed=3, rel_tol=1e-2)
    b = pac_bayes_sigma(space, num_samples=5, seed=3, rel_tol=1e-2)
    assert a == b
