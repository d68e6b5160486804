import math

import numpy as np
import torch

from landscape.basins.volume import (
    basin_volume,
    diagonal_preconditioner,
    eigen_preconditioner,
    hutchinson_diagonal,
    log_unit_ball_volume,
    log_volume_from_radii,
)
from landscape.engine import CurvatureOperator, DenseOperator
from landscape.results import Eigenpairs


def _eig(h: torch.Tensor, k: int) -> Eigenpairs:
    vals, vecs = torch.linalg.eigh(h)
    vals, vecs = vals.flip(0)[:k], vecs.T.flip(0)[:k]
    return Eigenpairs(vals.numpy(), vecs.numpy(), np.zeros(k), np.ones(k, bool), k, k)


def _truth(h: torch.Tensor, delta: float) -> float:
    # {θ : ½ (θ−θ*)ᵀH(θ−θ*) ≤ Δ} is an ellipsoid with semi-axes sqrt(2Δ/h_i)
    d = h.shape[0]
    return log_unit_ball_volume(d) + 0.5 * float(
        torch.log(2 * delta / torch.linalg.eigvalsh(h)).sum()
    )


def test_unit_ball():
    assert math.isclose(math.exp(log_unit_ball_volume(1)), 2.0)
    assert math.isclose(math.exp(log_unit_ball_volume(2)), math.pi)
    assert math.isclose(math.exp(log_unit_ball_volume(3)), 4 / 3 * math.pi)


def test_quadratic_bowl_closed_form(make_bowl):
    space, h = make_bowl(n=200, p=3, scales=(2.0, 1.0, 0.5))
    delta = 0.05
    truth = _truth(h, delta)
    # the loss is exactly quadratic: the exact Hessian of the engine is H
    op = CurvatureOperator(space)
    dense = torch.stack([op.matvec(e) for e in torch.eye(space.dim, dtype=torch.float64)])
    torch.testing.assert_close(dense, h)
    # full eigen preconditioning turns the ellipsoid into a ball: exact, every ray the same
    full = basin_volume(
        space, delta=delta, num_rays=8, preconditioner=eigen_preconditioner(_eig(h, 4))
    )
    assert abs(full.log_volume - truth) < 1e-6
    assert full.ci[1] - full.ci[0] < 1e-9
    assert full.unbounded == 0 and full.preconditioner == "eigen"
    # plain rays: unbiased for the volume; the bootstrap interval covers the truth
    plain = basin_volume(space, delta=delta, num_rays=400, seed=1)
    assert plain.ci[0] <= truth <= plain.ci[1]
    assert abs(plain.log_volume - truth) < 0.35
    # partial eigen (top 2 of 4) and diagonal (exact diag of H) preconditioners
    part = basin_volume(
        space, delta=delta, num_rays=400, seed=2, preconditioner=eigen_preconditioner(_eig(h, 2))
    )
    assert part.ci[0] <= truth <= part.ci[1]
    diag = basin_volume(
        space,
        delta=delta,
        num_rays=400,
        seed=3,
        preconditioner=diagonal_preconditioner(torch.diag(h)),
    )
    assert diag.ci[0] <= truth <= diag.ci[1]
    # preconditioning makes the estimate far less variable
    assert (part.ci[1] - part.ci[0]) < (plain.ci[1] - plain.ci[0])
    # the radii are where the loss crosses L(θ) + Δ
    l0 = float(space.evaluate()[0])
    g = torch.Generator().manual_seed(1)
    u = torch.randn(400, space.dim, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    r0 = float(plain.radii[0])
    at = float(space.evaluate(space.theta0 + r0 * u[0])[0])
    assert abs(at - (l0 + delta)) < 1e-5


def test_flat_directions_are_reported_unbounded(make_bowl):
    space, h = make_bowl(n=100, p=2, scales=(1.0, 0.0))  # the second feature is always zero
    res = basin_volume(space, delta=0.1, num_rays=6, max_radius=100.0)
    assert res.unbounded == 0  # every random ray has some component in the stiff directions
    # along the flat weight itself the loss never rises
    flat = torch.zeros(space.dim, dtype=torch.float64)
    flat[1] = 1.0
    from landscape.basins.volume import ray_radii

    radii, unb = ray_radii(
        space, space.theta0, flat.unsqueeze(0), float(space.evaluate()[0]) + 0.1, max_radius=100.0
    )
    assert bool(unb[0]) and float(radii[0]) == 100.0


def test_hutchinson_diagonal_and_radii_formula():
    h = torch.diag(torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(hutchinson_diagonal(DenseOperator(h), 8), torch.diag(h))
    lv, ci = log_volume_from_radii(np.full(5, 2.0), 3)
    assert math.isclose(lv, log_unit_ball_volume(3) + 3 * math.log(2.0))
    assert ci[0] == ci[1] == lv
