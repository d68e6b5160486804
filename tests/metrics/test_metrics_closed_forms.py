"""Closed forms and dense references: Fisher-Rao norm, relative flatness, spectral metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.engine import CurvatureOperator, DenseOperator, ParamSpace
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.metrics import (
    effective_rank,
    feature_layer,
    fisher_rao_norm,
    frobenius,
    lambda_max,
    relative_flatness,
    trace,
)
from landscape.models import linear_model


@pytest.fixture(scope="module")
def synthetic():
    return load_data("synthetic", max_samples=150, batch_size=64, seed=0)


def _space(model: nn.Module, data) -> ParamSpace:
    return ParamSpace(ModelBundle.from_module(model.double(), data, dtype=torch.float64))


def _outputs_and_dlogits(space: ParamSpace):
    x = space.bundle.data.x_train.double()
    y = space.bundle.data.y_train
    f = space.forward(space.theta0, x).detach()
    p = F.softmax(f, dim=1)
    return f, p, p - F.one_hot(y, f.shape[1]).double()


def test_fisher_rao_closed_form_linear_model(synthetic) -> None:
    torch.manual_seed(0)
    space = _space(linear_model(10, 3), synthetic)
    f, p, dl = _outputs_and_dlogits(space)
    # an affine model is homogeneous of degree 1 in (W, b): ‖θ‖²_fr = E[⟨∂ℓ/∂f, f⟩²]
    closed = float(((dl * f).sum(1) ** 2).mean())
    assert math.isclose(fisher_rao_norm(space) ** 2, closed, rel_tol=1e-10)
    # … which is θᵀ F θ with the empirical Fisher operator
    fisher = CurvatureOperator(space, kind="fisher")
    th = space.theta0
    assert math.isclose(float(th @ fisher.matvec(th)), closed, rel_tol=1e-10)
    # model Fisher: labels drawn from p; for cross-entropy this is the GGN
    model_closed = 0.0
    for c in range(3):
        e = F.one_hot(torch.full((f.shape[0],), c), 3).double()
        model_closed += float((p[:, c] * ((p - e) * f).sum(1) ** 2).mean())
    fr_model = fisher_rao_norm(space, fisher="model") ** 2
    assert math.isclose(fr_model, model_closed, rel_tol=1e-10)
    ggn = CurvatureOperator(space, kind="ggn")
    assert math.isclose(float(th @ ggn.matvec(th)), model_closed, rel_tol=1e-10)


def test_fisher_rao_closed_form_bias_free_relu(synthetic) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(10, 8, bias=False),
        nn.ReLU(),
        nn.Linear(8, 6, bias=False),
        nn.ReLU(),
        nn.Linear(6, 3, bias=False),
    )
    space = _space(model, synthetic)
    f, _, dl = _outputs_and_dlogits(space)
    closed = 3**2 * float(((dl * f).sum(1) ** 2).mean())  # (L+1)² with L = 2 hidden layers
    assert math.isclose(fisher_rao_norm(space) ** 2, closed, rel_tol=1e-10)


def test_relative_flatness_matches_dense_computation(synthetic, hessian_of) -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(10, 5), nn.Tanh(), nn.Linear(5, 3))
    space = _space(model, synthetic)
    info = feature_layer(space)
    assert info.name == "2.weight"
    h = hessian_of(space)
    block = h[info.slice, info.slice].reshape(3, 5, 3, 5)
    w = space.theta0[info.slice].view(3, 5)
    dense = sum(
        float(w[s] @ w[t]) * float(torch.einsum("jj->", block[s, :, t, :]))
        for s in range(3)
        for t in range(3)
    )
    dense_op = DenseOperator(h)
    exact = relative_flatness(space, op=dense_op)
    assert exact.method == "exact" and math.isclose(exact.mean, dense, rel_tol=1e-10)
    via_hvp = relative_flatness(space)  # layer-restricted HVPs of the real operator
    assert math.isclose(via_hvp.mean, dense, rel_tol=1e-8)
    # d < m branch and Hutch++ branch
    wide = relative_flatness(space, op=dense_op, layer="0")
    blk0 = h[space.infos[0].slice, space.infos[0].slice].reshape(5, 10, 5, 10)
    w0 = space.theta0[space.infos[0].slice].view(5, 10)
    dense0 = float((w0 @ w0.T * torch.einsum("sjtj->st", blk0)).sum())
    assert math.isclose(wide.mean, dense0, rel_tol=1e-10)
    est = relative_flatness(space, op=dense_op, exact=False, num_matvecs=18, seed=0)
    assert est.method != "exact"
    assert abs(est.mean - dense) <= max(4 * est.stderr, 1e-8 * abs(dense))


def test_relative_flatness_layer_rescaling_invariance(synthetic, rescale) -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    a = _space(model, synthetic)
    b = _space(rescale(model, 0, 2, 3.0), synthetic)
    ra, rb = relative_flatness(a), relative_flatness(b)
    assert math.isclose(ra.mean, rb.mean, rel_tol=1e-9)


def test_spectral_metrics_on_a_known_spectrum() -> None:
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=torch.float64))
    lam = torch.cat([torch.tensor([9.0, 5.0, 4.0]), torch.linspace(-0.5, 1.0, 37)]).double()
    op = DenseOperator(q @ torch.diag(lam) @ q.T)
    assert math.isclose(lambda_max(op), 9.0, rel_tol=1e-8)
    tr = trace(op, num_matvecs=30, seed=0)
    assert abs(tr.mean - float(lam.sum())) <= max(4 * tr.stderr, 1e-8)
    fro = frobenius(op, num_probes=200, seed=0)
    assert abs(fro.mean - float(lam.norm())) <= 4 * fro.stderr
    pos = lam[lam > 0].numpy()
    p = pos / pos.sum()
    assert math.isclose(effective_rank(lam), math.exp(-float(np.sum(p * np.log(p)))))
    assert math.isclose(effective_rank(torch.ones(7)), 7.0)
    assert math.isnan(effective_rank([-1.0, 0.0]))
