"""Curvature operators against dense torch.func references (float64, small models)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.func import hessian, jacrev, vmap

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.io.data import DataSource, load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import linear_model, mlp


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def space() -> ParamSpace:
    """mlp(10, 6, 3) (87 parameters) on 30 synthetic 3-class samples, in chunks of 16."""
    data = load_data("synthetic", max_samples=30, batch_size=16, seed=0)
    torch.manual_seed(0)
    return ParamSpace(
        ModelBundle.from_module(mlp(10, 6, 3, activation="tanh"), data, dtype=torch.float64)
    )


def _dense(op: CurvatureOperator) -> torch.Tensor:
    return op.matmat(torch.eye(op.dim, dtype=torch.float64))


def test_hessian_matches_torch_func_hessian(space: ParamSpace) -> None:
    ref = hessian(lambda th: space.loss(th))(space.theta0)
    assert _rel(ref, ref.T) <= 1e-12
    # random probes detect any difference from the dense matrix (all columns would be slow)
    vs = torch.randn(6, space.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for strategy in ("cached", "reverse", "forward"):
        op = CurvatureOperator(space, kind="hessian", strategy=strategy)
        assert _rel(op.matmat(vs), vs @ ref) <= 1e-10, strategy
        assert _rel(op.matvec(vs[0]), ref @ vs[0]) <= 1e-10, strategy


def test_ggn_is_jt_h_j_and_psd(space: ParamSpace) -> None:
    x = space.bundle.data.x_train.double()
    y = space.bundle.data.y_train
    n = x.shape[0]
    theta = space.theta0
    jac = jacrev(lambda th: space.forward(th, x))(theta)  # (N, C, P)
    logits = space.forward(theta, x).detach()

    def ce(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z[None], t[None], reduction="sum")

    h_out = vmap(hessian(ce))(logits, y)  # (N, C, C)
    # closed form of the softmax cross-entropy Hessian: diag(p) - p pᵀ
    p = logits.softmax(-1)
    torch.testing.assert_close(h_out, torch.diag_embed(p) - p[:, :, None] * p[:, None, :])
    ref = torch.einsum("ncp,ncd,ndq->pq", jac, h_out, jac) / n
    ggn = _dense(CurvatureOperator(space, kind="ggn"))
    assert _rel(ggn, ref) <= 1e-10
    assert _rel(ggn, ggn.T) <= 1e-12
    evals = torch.linalg.eigvalsh(ggn)
    assert float(evals.min()) >= -1e-10 * float(evals.max())
    v = torch.randn(space.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert _rel(CurvatureOperator(space, kind="ggn").matvec(v), ref @ v) <= 1e-10


def test_empirical_fisher_from_explicit_per_sample_gradients(space: ParamSpace) -> None:
    x = space.bundle.data.x_train.double()
    y = space.bundle.data.y_train
    grads = []
    for i in range(x.shape[0]):
        leaf = space.theta0.clone().requires_grad_(True)
        loss = F.cross_entropy(space.forward(leaf, x[i : i + 1]), y[i : i + 1])
        (g,) = torch.autograd.grad(loss, leaf)
        grads.append(g)
    gmat = torch.stack(grads)
    ref = gmat.T @ gmat / x.shape[0]
    fisher = _dense(CurvatureOperator(space, kind="fisher"))
    assert _rel(fisher, ref) <= 1e-10
    v = torch.randn(space.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert _rel(CurvatureOperator(space, kind="fisher").matvec(v), ref @ v) <= 1e-10


def test_linear_mse_hessian_equals_ggn_closed_form() -> None:
    """For a linear model with ½‖Wx + b − y‖², H = GGN = E[x̃x̃ᵀ] ⊗ I (x̃ = [x, 1])."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(25, 4, generator=g, dtype=torch.float64)
    y = torch.randn(25, 2, generator=g, dtype=torch.float64)
    data = DataSource("lin", x, y, batch_size=10)
    bundle = ModelBundle.from_module(linear_model(4, 2).double(), data, "mse")
    space = ParamSpace(bundle)
    assert space.names == ["1.weight", "1.bias"]
    xt = torch.cat([x, torch.ones(25, 1, dtype=torch.float64)], 1)
    m = xt.T @ xt / 25  # (5, 5)
    # θ = [vec(W) row-major (2×4), b (2)]: d²/dW_ij dW_kl = δ_ik m_jl, etc.
    ref = torch.zeros(10, 10, dtype=torch.float64)
    for i in range(2):
        rows = [i * 4 + j for j in range(4)] + [8 + i]
        ref[torch.tensor(rows)[:, None], torch.tensor(rows)[None, :]] = m
    for kind in ("hessian", "ggn"):
        assert (
            _rel(
                _dense(
                    CurvatureOperator(
                        space, kind=kind, strategy="reverse" if kind == "hessian" else "auto"
                    )
                ),
                ref,
            )
            <= 1e-12
        )
    # changing the chunking changes nothing
    s2 = ParamSpace(replace(bundle, data=replace(data, batch_size=3)))
    assert _rel(_dense(CurvatureOperator(s2, kind="hessian", strategy="cached")), ref) <= 1e-12
