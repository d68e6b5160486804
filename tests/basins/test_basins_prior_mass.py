import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import gammainc, gammaln
from scipy.stats import chi2, ncx2
from torch import nn

from landscape.basins import PriorMassResult, basin_prior_mass, prior_scale
from landscape.basins.prior_mass import (
    log_direction_weights,
    log_radial_integral,
    negligible_radius,
)
from landscape.basins.volume import Preconditioner, eigen_preconditioner, log_unit_ball_volume
from landscape.engine import ParamSpace
from landscape.errors import ConfigError
from landscape.io import ModelBundle, load_data
from landscape.io.data import DataSource
from landscape.models import linear_model
from landscape.results import Eigenpairs


# -- radial integral ------------------------------------------------------------------------
def _quad_log(d: int, b: float, c: float, r: float) -> float:
    """log(A_{d-1} ∫_0^r φ t^{d-1} dt) by scipy quad on the peak-shifted integrand."""
    n = d - 1
    tp = (
        (-b + math.sqrt(b * b + 4 * n)) / 2
        if b < 0
        else (2 * n / (b + math.sqrt(b * b + 4 * n)) if n else 0.0)
    )
    tp = min(tp, r)

    def f_log(t: float) -> float:
        return (n * math.log(t) if n else 0.0) - b * t - t * t / 2

    peak = f_log(tp) if tp > 0 else 0.0

    def h(t: float) -> float:
        return math.exp(f_log(t) - peak) if t > 0 or n == 0 else 0.0

    width = 1 / math.sqrt(1 + (n / tp**2 if tp > 0 else 0.0))
    lo = max(0.0, tp - 40 * width)
    kw = {"epsabs": 0.0, "epsrel": 1e-13, "limit": 500}
    total = integrate.quad(h, lo, tp, **kw)[0] if tp > lo else 0.0
    top = r if math.isfinite(r) else tp + 60 * width
    total += integrate.quad(h, tp, top, **kw)[0] if top > tp else 0.0
    const = math.log(2) - 0.5 * d * math.log(2) - gammaln(0.5 * d)
    return const - 0.5 * c + peak + math.log(total)


@pytest.mark.parametrize("d", [1, 2, 5, 40, 300])
def test_radial_integral_matches_quadrature(d):
    for b in (-8.0, -1.0, 0.0, 2.5, 15.0):
        c = b * b + 3.0
        for r in (0.3, 3.0, 25.0, math.inf):
            got = float(log_radial_integral(d, b, c, r))
            want = _quad_log(d, b, c, r)
            assert abs(got - want) <= 1e-9 * max(1.0, abs(want)), (d, b, r, got, want)
    # vectorized over rays gives the same numbers
    bs = np.array([-8.0, 0.0, 15.0])
    rs = np.array([3.0, math.inf, 0.3])
    vec = log_radial_integral(d, bs, 10.0, rs)
    one = [float(log_radial_integral(d, b, 10.0, r)) for b, r in zip(bs, rs, strict=True)]
    np.testing.assert_allclose(vec, one, rtol=0, atol=1e-12)


def test_radial_integral_b_zero_closed_form_large_d():
    # b = 0: A ∫ φ t^{d-1} = e^{-c/2} P(d/2, r²/2) (regularized lower incomplete gamma)
    for d in (3, 1_000, 100_000):
        for c in (0.0, 7.5):
            for r in (math.sqrt(d) - 1.5, math.sqrt(d), math.sqrt(d) + 1.5):
                want = math.log(gammainc(d / 2, r * r / 2)) - c / 2
                got = float(log_radial_integral(d, 0.0, c, r))
                assert abs(got - want) <= 1e-9 * max(1.0, abs(want)), (d, c, r)
        # complete integral of the centred prior is the whole mass (up to the rounding of
        # log Γ(d/2) ~ 5e5 at d = 1e5)
        assert abs(float(log_radial_integral(d, 0.0, 0.0, math.inf))) < 1e-9
    assert float(log_radial_integral(4, 0.0, 0.0, 0.0)) == -math.inf


def test_radial_integral_large_d_against_mpmath():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    d = 100_000
    n = d - 1
    for b, r in ((-20.0, 30.0), (5.0, 2.0), (300.0, 320.0)):
        c = b * b + 2.0 * d
        tp = min(mp.mpf(2 * n) / (b + mp.sqrt(b * b + 4 * n)), mp.mpf(r))
        peak = n * mp.log(tp) - b * tp - tp * tp / 2

        def h(t, peak=peak, b=b):
            return mp.e ** (n * mp.log(t) - b * t - t * t / 2 - peak)

        w = 1 / mp.sqrt(1 + n / tp**2)
        slope = abs(n / tp - b - tp)
        w = min(w, 1 / slope) if slope > 0 else w
        pts = sorted({max(mp.mpf(0), tp - k * w) for k in (200, 20, 2, 0)}) + [mp.mpf(r)]
        val = mp.quad(h, pts)
        want = float(
            mp.log(2) - d / 2 * mp.log(2) - mp.loggamma(d / 2) - c / 2 + peak + mp.log(val)
        )
        got = float(log_radial_integral(d, b, c, r))
        assert abs(got - want) <= 1e-9 * abs(want), (b, r, got, want)


def test_negligible_radius_holds_all_the_mass():
    for d in (1, 10, 5_000):
        for b in (-30.0, 0.0, 4.0):
            big = float(negligible_radius(d, b))
            c = b * b + 1.0
            full = float(log_radial_integral(d, b, c, math.inf))
            assert abs(float(log_radial_integral(d, b, c, big)) - full) < 1e-12 * max(1, abs(full))
            assert float(log_radial_integral(d, b, c, 0.9 * big)) <= full + 1e-12 * max(
                1, abs(full)
            )


def test_direction_weights_match_dense_angular_gaussian():
    g = torch.Generator().manual_seed(0)
    d = 5
    v = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64)).Q.T
    s = torch.tensor([0.3, 2.0], dtype=torch.float64)
    u = torch.randn(7, d, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    for pre in (
        Preconditioner("eigen", s, v),
        Preconditioner("diagonal", torch.tensor([0.5, 1, 2, 3, 0.1], dtype=torch.float64)),
    ):
        a = pre.apply(torch.eye(d, dtype=torch.float64)).T  # columns A e_j
        sig = a @ a.T
        quad = torch.einsum("ki,ij,kj->k", u, torch.linalg.inv(sig), u)
        want = 0.5 * torch.logdet(sig) + 0.5 * d * torch.log(quad)
        np.testing.assert_allclose(log_direction_weights(pre, u), want.numpy(), atol=1e-12)
    assert np.all(log_direction_weights(Preconditioner("none"), u) == 0)


# -- models with closed-form basins ------------------------------------------------------------
def _linear_kl_space(w_star: torch.Tensor, lambdas: torch.Tensor, n: int = 300, seed: int = 0):
    """f(x) = W x (no bias, MSE) with held-out X such that XᵀX/n = diag(lambdas) exactly."""
    m, p = w_star.shape
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, p, generator=g, dtype=torch.float64)).Q
    x_test = math.sqrt(n) * q * lambdas.sqrt()
    x = torch.randn(50, p, generator=g, dtype=torch.float64)
    model = linear_model(p, m, bias=False).double()
    with torch.no_grad():
        model[1].weight.copy_(w_star)
    data = DataSource("lin", x, x @ w_star.T, x_test, x_test @ w_star.T, batch_size=n)
    space = ParamSpace(ModelBundle.from_module(model, data, "mse", dtype=torch.float64))
    return space


def test_ball_centred_prior_exact():
    # D(θ) = ½‖θ−θ*‖², θ* = 0: every ray gives the chi-square CDF exactly
    space = _linear_kl_space(torch.zeros(3, 4, dtype=torch.float64), torch.ones(4))
    eps, sigma = 0.5, 0.5
    res = basin_prior_mass(space, cutoff=eps, prior=sigma, num_rays=8)
    d, rho = space.dim, math.sqrt(2 * eps)
    assert isinstance(res, PriorMassResult) and res.dim == d == 12
    assert abs(res.log_mass - math.log(chi2.cdf(rho**2 / sigma**2, d))) < 1e-7
    assert res.ci[1] - res.ci[0] < 1e-9
    np.testing.assert_allclose(res.radii, rho / sigma, rtol=1e-8)
    assert res.flat_rays == 0 and not res.dominated and abs(res.ess - 8) < 1e-6
    # Lebesgue volume of the ball of radius ρ in raw units
    assert res.log_volume is not None
    assert abs(res.log_volume - (log_unit_ball_volume(d) + d * math.log(rho))) < 1e-6
    assert abs(res.log10_mass - res.log_mass / math.log(10)) < 1e-12
    out = res.to_dict()
    assert out["definition"] == "kl" and out["cutoff"] == eps and out["num_inputs"] == 300
    assert "σ = 0.5" in out["sigma_description"]
    assert any("s = 1" in note for note in out["notes"])


def test_ball_off_centre_noncentral_chi_square():
    g = torch.Generator().manual_seed(3)
    w_star = 0.4 * torch.randn(2, 3, generator=g, dtype=torch.float64)
    space = _linear_kl_space(w_star, torch.ones(3))
    eps, sigma = 0.3, 0.6
    d, rho = space.dim, math.sqrt(2 * eps)
    nc = float(w_star.pow(2).sum()) / sigma**2
    truth = math.log(ncx2.cdf(rho**2 / sigma**2, d, nc))
    res = basin_prior_mass(space, cutoff=eps, prior=sigma, num_rays=600, seed=1)
    np.testing.assert_allclose(res.radii, rho / sigma, rtol=1e-8)  # a ball: same radius
    assert res.ci[0] <= truth <= res.ci[1]
    assert abs(res.log_mass - truth) < 0.1


def _mc_fraction(
    quad: torch.Tensor, center: torch.Tensor, sigma: float, cut: float, n: int = 1_000_000
) -> tuple[float, float]:
    g = torch.Generator().manual_seed(123)
    th = sigma * torch.randn(n, center.shape[0], generator=g, dtype=torch.float64)
    dl = th - center
    inside = 0.5 * ((dl @ quad) * dl).sum(1) <= cut
    p = float(inside.double().mean())
    return math.log(p), math.sqrt((1 - p) / (p * n))  # log p and its stderr


def _eig(h: torch.Tensor) -> Eigenpairs:
    vals, vecs = torch.linalg.eigh(h)
    k = h.shape[0]
    return Eigenpairs(
        vals.flip(0).numpy(), vecs.T.flip(0).numpy(), np.zeros(k), np.ones(k, bool), k, k
    )


def test_anisotropic_ellipsoid_against_monte_carlo():
    lambdas = torch.tensor([6.0, 1.0, 0.15], dtype=torch.float64)
    w_star = torch.tensor([[0.3, -0.5, 0.4]], dtype=torch.float64)
    space = _linear_kl_space(w_star, lambdas)
    eps, sigma = 0.4, 1.0
    ref, se = _mc_fraction(torch.diag(lambdas), w_star[0], sigma, eps)
    plain = basin_prior_mass(space, cutoff=eps, prior=sigma, num_rays=1500, seed=2)
    assert plain.ci[0] - 4 * se <= ref <= plain.ci[1] + 4 * se
    assert abs(plain.log_mass - ref) < 0.1
    # an eigen preconditioner (whitened curvature σ² diag λ) stretches the long axis;
    # importance weights keep the estimate unbiased
    pre = eigen_preconditioner(_eig(sigma**2 * torch.diag(lambdas)))
    cond = basin_prior_mass(
        space, cutoff=eps, prior=sigma, num_rays=1500, seed=3, preconditioner=pre
    )
    assert cond.preconditioner == "eigen" and cond.ess > 2 * plain.ess
    assert cond.ci[0] - 4 * se <= ref <= cond.ci[1] + 4 * se
    assert abs(cond.log_mass - ref) < 0.05
    # without the correction the same rays would be biased
    naive = float(np.log(np.mean(np.exp(cond.log_integrals))))
    assert abs(naive - ref) > 0.15


def test_loss_basin_least_squares_bowl(make_bowl):
    space, h = make_bowl(n=200, p=3, scales=(2.0, 1.0, 0.5))
    # θ* is ~3.4 from the origin: a prior wide enough to reach it; h is the Hessian of mse
    delta, sigma = 4.0, 2.0
    ref, se = _mc_fraction(h, space.theta0.double(), sigma, delta)
    assert se < 0.01
    res = basin_prior_mass(
        space, definition="loss", cutoff=delta, prior=sigma, num_rays=1500, seed=4
    )
    assert res.definition == "loss" and res.num_inputs == 0
    assert abs(res.log_mass - ref) < 0.06 + 4 * se
    pre = eigen_preconditioner(_eig(h))
    cond = basin_prior_mass(
        space,
        definition="loss",
        cutoff=delta,
        prior=sigma,
        num_rays=1500,
        seed=5,
        preconditioner=pre,
    )
    assert abs(cond.log_mass - ref) < 0.06 + 4 * se
    # full eigen preconditioning makes the ellipsoid a ball in ray coordinates: the
    # loss-defined Lebesgue volume of the same rays is exact
    truth = log_unit_ball_volume(4) + 0.5 * float(
        torch.log(2 * delta / torch.linalg.eigvalsh(h)).sum()
    )
    assert cond.log_volume is not None and abs(cond.log_volume - truth) < 1e-6


# -- softmax with an output bias: flat directions ----------------------------------------------------
def _softmax_space(bias: bool = True) -> ParamSpace:
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(10, 3, bias=bias)
    with torch.no_grad():
        for p in model.parameters():  # PyTorch's default init, seeded locally
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / math.sqrt(10))
    return ParamSpace(ModelBundle.from_module(model, load_data("synthetic")))


def test_softmax_output_bias_is_flat_and_prior_mass_finite():
    space = _softmax_space()
    res = basin_prior_mass(space, num_rays=32, seed=0)
    assert math.isfinite(res.log_mass) and res.log_mass < 0
    assert res.log_volume is None
    assert any("'bias'" in f for f in res.flat_directions)
    assert any("Lebesgue volume infinite" in note for note in res.notes)
    sigma, text = prior_scale(space, "init")
    assert res.sigma_description == text and "fan_in" in text
    torch.testing.assert_close(sigma, torch.full((33,), 1 / math.sqrt(30), dtype=torch.float64))
    # the logit shift itself: D stays 0 however far one goes
    e = torch.zeros(space.dim)
    e[30:] = 1 / math.sqrt(3)
    x = space.bundle.data.x_test
    p0 = torch.softmax(space.forward(space.theta0, x), 1)
    p1 = torch.softmax(space.forward(space.theta0 + 500 * e, x), 1)
    torch.testing.assert_close(p0, p1)


def test_rays_along_the_flat_subspace_are_counted_and_integrated_to_infinity():
    space = _softmax_space()
    sigma, _ = prior_scale(space)
    # whitened direction of the logit shift; stretch rays onto it
    v = torch.zeros(space.dim, dtype=torch.float64)
    v[30:] = 1.0 / sigma[30:]
    v = v / v.norm()
    pre = Preconditioner("eigen", torch.tensor([1e7], dtype=torch.float64), v.unsqueeze(0))
    res = basin_prior_mass(space, num_rays=16, seed=1, preconditioner=pre, bootstrap=200)
    assert res.flat_rays >= 12
    flat = ~np.isfinite(res.radii)
    assert int(flat.sum()) == res.flat_rays
    assert math.isfinite(res.log_mass) and res.log_volume is None
    assert any("rays are flat" in note for note in res.notes)
    # a flat ray holds its complete radial integral
    theta_w = space.theta0.double() / sigma
    g = torch.Generator().manual_seed(1)
    z = torch.randn(16, space.dim, generator=g, dtype=torch.float64)
    u = pre.apply(z)
    u = u / u.norm(dim=1, keepdim=True)
    b = (u @ theta_w).numpy()
    c = float(theta_w.pow(2).sum())
    full = log_radial_integral(space.dim, b, c, np.inf)
    np.testing.assert_allclose(res.log_integrals[flat], full[flat], rtol=1e-12)
    d = res.to_dict()
    assert d["log_volume"] is None and d["flat_rays"] == res.flat_rays


def test_prior_scale_rms_and_vectors():
    space = _softmax_space()
    s, text = prior_scale(space, "rms")
    w = space.theta0[:30].double()
    assert abs(float(s[0]) - float(w.pow(2).mean().sqrt())) < 1e-12 and "RMS" in text
    vec = torch.linspace(0.1, 1.0, space.dim, dtype=torch.float64)
    res = basin_prior_mass(space, prior=vec, num_rays=4, bootstrap=0)
    assert res.sigma_description.startswith("σ per parameter as given")


def test_bad_input_raises_config_error(make_bowl):
    space, _ = make_bowl(n=50, p=2, scales=(1.0, 1.0))
    with pytest.raises(ConfigError):
        basin_prior_mass(space, cutoff=-0.1)
    with pytest.raises(ConfigError):
        basin_prior_mass(space, cutoff=0.0)
    with pytest.raises(ConfigError):
        basin_prior_mass(space, num_rays=1)
    with pytest.raises(ConfigError):
        basin_prior_mass(space, definition="volume")
    with pytest.raises(ConfigError):
        basin_prior_mass(space, prior="xavier")
    with pytest.raises(ConfigError):
        basin_prior_mass(space, prior=-1.0)
    with pytest.raises(ConfigError):
        basin_prior_mass(space, prior=torch.ones(2))
    with pytest.raises(ConfigError):
        basin_prior_mass(space, max_inputs=0)
