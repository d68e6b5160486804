"""One operator class per curvature over the chunk-summing base: algebra, scipy view, restriction.

References are dense float64 matrices from ``torch.func`` (Hessian, ``JᵀH_ℓJ``, explicit
per-sample gradients), on a small tanh MLP and on a BatchNorm CNN in eval mode.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import eigsh
from torch.func import grad, hessian, jacrev, jvp, vmap

from landscape.engine import (
    CachedReverse,
    ChunkSumOperator,
    CurvatureOperator,
    DenseOperator,
    EmpiricalFisherOperator,
    ForwardOverReverse,
    GGNOperator,
    HessianOperator,
    ParamSpace,
    RestrictedOperator,
    Reverse,
    ScaledOperator,
    SumOperator,
)
from landscape.errors import ConfigError
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import mlp, tiny_cnn


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _ggn_ref(space: ParamSpace) -> torch.Tensor:
    x = space.bundle.data.x_train.to(space.dtype)
    y = space.bundle.data.y_train
    jac = jacrev(lambda th: space.forward(th, x))(space.theta0).reshape(x.shape[0], -1, space.dim)
    logits = space.forward(space.theta0, x).detach().reshape(x.shape[0], -1)

    def ce(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z[None], t[None], reduction="sum")

    h_out = vmap(hessian(ce))(logits, y)
    return torch.einsum("ncp,ncd,ndq->pq", jac, h_out, jac) / x.shape[0]


def _fisher_ref(space: ParamSpace) -> torch.Tensor:
    x = space.bundle.data.x_train.to(space.dtype)
    y = space.bundle.data.y_train
    grads = []
    for i in range(x.shape[0]):
        leaf = space.theta0.clone().requires_grad_(True)
        loss = F.cross_entropy(space.forward(leaf, x[i : i + 1]), y[i : i + 1])
        grads.append(torch.autograd.grad(loss, leaf)[0])
    g = torch.stack(grads)
    return g.T @ g / x.shape[0]


@pytest.fixture(scope="module")
def small():
    """mlp(10, 6, 3) (87 parameters) on 30 samples in chunks of 16, with dense references."""
    data = load_data("synthetic", max_samples=30, batch_size=16, seed=0)
    torch.manual_seed(0)
    space = ParamSpace(
        ModelBundle.from_module(mlp(10, 6, 3, activation="tanh"), data, dtype=torch.float64)
    )
    h = hessian(lambda th: space.loss(th))(space.theta0)
    return space, 0.5 * (h + h.T), _ggn_ref(space)


def test_factory_returns_one_class_per_kind(small) -> None:
    space, _, _ = small
    for kind, cls in (
        ("hessian", HessianOperator),
        ("ggn", GGNOperator),
        ("fisher", EmpiricalFisherOperator),
    ):
        op = CurvatureOperator(space, kind=kind)
        assert type(op) is cls and isinstance(op, CurvatureOperator | ChunkSumOperator)
        assert op.kind == kind and op.strategy == "cached"  # CPU, 2 chunks
        assert (op.n, op.num_samples, op.dim) == (30, 30, space.dim)
    assert type(CurvatureOperator(space)) is HessianOperator
    for name, cls in (
        ("cached", CachedReverse),
        ("reverse", Reverse),
        ("forward", ForwardOverReverse),
    ):
        op = HessianOperator(space, strategy=name)
        assert isinstance(op.hvp, cls) and op.strategy == op.hvp.name == name
    assert GGNOperator(space, kind="ggn").kind == "ggn"
    with pytest.raises(ConfigError, match="not 'hessian'"):
        GGNOperator(space, kind="hessian")
    with pytest.raises(ConfigError, match="unknown curvature"):
        CurvatureOperator(space, kind="kfac")
    with pytest.raises(ConfigError, match="unknown HVP strategy"):
        HessianOperator(space, strategy="fast")


def test_auto_strategy_reverse_for_many_chunks() -> None:
    data = load_data("synthetic", max_samples=90, batch_size=10, seed=0)  # 9 chunks
    torch.manual_seed(0)
    space = ParamSpace(ModelBundle.from_module(mlp(10, 4, 3), data, dtype=torch.float64))
    op = CurvatureOperator(space)
    assert op.strategy == "reverse" and isinstance(op.hvp, Reverse)


def test_cached_strategy_keeps_graphs_after_the_first_pass(small) -> None:
    space, h, _ = small
    op = HessianOperator(space, strategy="cached")
    assert op.hvp.traced
    v = torch.randn(space.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    first = op.matvec(v)
    assert not op.hvp.traced
    assert torch.equal(op.matvec(v), first) and _rel(first, h @ v) <= 1e-10
    op.release()
    assert op.hvp.traced and op.matvecs == 2


def test_to_scipy_eigsh_top3_equals_dense(small) -> None:
    space, h, ggn = small
    top = np.linalg.eigvalsh(h.numpy())[-3:]
    for strategy in ("cached", "reverse", "forward"):
        op = HessianOperator(space, strategy=strategy)
        lin = op.to_scipy()
        assert lin.shape == (space.dim, space.dim) and lin.dtype == np.float64
        vals = np.sort(eigsh(lin, k=3, which="LA", tol=1e-12, v0=np.ones(space.dim))[0])
        np.testing.assert_allclose(vals, top, rtol=1e-8)
        assert op.matvecs > 0
    lin = GGNOperator(space).to_scipy()
    x = np.random.default_rng(0).standard_normal((space.dim, 4))
    np.testing.assert_allclose(lin @ x, ggn.numpy() @ x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(lin.T @ x[:, 0], ggn.numpy() @ x[:, 0], rtol=1e-9, atol=1e-12)


def test_sum_and_scalar_multiple_equal_the_dense_sum(small) -> None:
    space, h, ggn = small
    g = torch.Generator().manual_seed(4)
    v = torch.randn(space.dim, generator=g, dtype=torch.float64)
    vs = torch.randn(3, space.dim, generator=g, dtype=torch.float64)
    total = HessianOperator(space) + 2 * GGNOperator(space)
    assert isinstance(total, SumOperator) and total.dim == space.dim
    ref = h + 2 * ggn
    assert _rel(total @ v, ref @ v) <= 1e-10
    assert _rel(total @ vs, vs @ ref) <= 1e-10
    assert total.matvecs == 4
    diff = GGNOperator(space) * 0.5 - HessianOperator(space)
    assert _rel(diff.matvec(v), (0.5 * ggn - h) @ v) <= 1e-10
    assert isinstance(-HessianOperator(space), ScaledOperator)
    with pytest.raises(ConfigError, match="sizes"):
        HessianOperator(space) + DenseOperator(torch.eye(3, dtype=torch.float64))
    with pytest.raises(TypeError):
        HessianOperator(space) * "2"  # type: ignore[operator]
    with pytest.raises(ConfigError, match="vector or"):
        HessianOperator(space) @ torch.zeros(1, 2, space.dim, dtype=torch.float64)


def test_restrict_on_the_subclasses_is_the_principal_submatrix(small) -> None:
    space, h, ggn = small
    idx = space.indices(["3.*"])
    eye = torch.eye(idx.numel(), dtype=torch.float64)
    for op, ref in ((HessianOperator(space), h), (GGNOperator(space), ggn)):
        sub = op.restrict(["3.*"])
        assert isinstance(sub, RestrictedOperator) and sub.dim == idx.numel()
        assert _rel(sub.matmat(eye), ref[idx][:, idx]) <= 1e-10
    cut = torch.tensor([5, 0, 60, 86])
    sub = (HessianOperator(space) + GGNOperator(space)).restrict(cut)
    assert _rel(sub @ torch.eye(4, dtype=torch.float64), (h + ggn)[cut][:, cut]) <= 1e-10
    assert (
        _rel(
            HessianOperator(space).restrict("1.bias").matmat(torch.eye(6, dtype=torch.float64)),
            h[space.indices(["1.bias"])][:, space.indices(["1.bias"])],
        )
        <= 1e-10
    )
    with pytest.raises(ConfigError, match="give indices"):
        DenseOperator(h).restrict(["3.*"])
    with pytest.raises(ConfigError, match="repeat"):
        HessianOperator(space).restrict([1, 1])


@pytest.fixture(scope="module")
def bn_space() -> ParamSpace:
    """tiny_cnn(4) (BatchNorm with non-trivial running statistics) on 40 digits, chunks of 16."""
    torch.manual_seed(0)
    model = tiny_cnn(4)
    model[1].running_mean.uniform_(-0.2, 0.2)
    model[1].running_var.uniform_(0.5, 1.5)
    data = load_data("digits", max_samples=40, batch_size=16, seed=0)
    return ParamSpace(ModelBundle.from_module(model, data, dtype=torch.float64))


def test_each_subclass_on_a_batchnorm_cnn(bn_space) -> None:
    """Hessian (every strategy), GGN and Fisher against float64 references in eval mode."""
    space = bn_space
    g = torch.Generator().manual_seed(2)
    vs = torch.randn(3, space.dim, dtype=torch.float64, generator=g)
    h_ref = torch.stack([jvp(grad(space.loss), (space.theta0,), (v,))[1] for v in vs])
    for strategy in ("cached", "reverse", "forward"):
        op = HessianOperator(space, strategy=strategy)
        torch.testing.assert_close(op.matmat(vs), h_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(op @ vs[0], h_ref[0], rtol=1e-10, atol=1e-12)
    ggn = _ggn_ref(space)
    op = GGNOperator(space)
    torch.testing.assert_close(op @ vs, vs @ ggn, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.matvec(vs[1]), ggn @ vs[1], rtol=1e-10, atol=1e-12)
    fisher = _fisher_ref(space)
    op = EmpiricalFisherOperator(space)
    torch.testing.assert_close(op @ vs, vs @ fisher, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.matvec(vs[2]), fisher @ vs[2], rtol=1e-10, atol=1e-12)
    assert op.matvecs == 4
