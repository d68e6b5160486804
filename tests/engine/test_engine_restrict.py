"""Restriction to a parameter subset: ParamSpace(params=...) and RestrictedOperator.

Both must give the principal submatrix of the dense float64 ``torch.func.hessian``.
"""

from __future__ import annotations

import pytest
import torch

from landscape.engine import CurvatureOperator, DenseOperator, ParamSpace, RestrictedOperator
from landscape.errors import ConfigError
from landscape.hessian import dense_hessian
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import mlp


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return mlp(64, 6, 10, activation="tanh")  # 1.weight, 1.bias, 3.weight, 3.bias: 460


@pytest.fixture(scope="module")
def data():
    return load_data("digits", max_samples=40, batch_size=16, seed=0)


@pytest.fixture(scope="module")
def full(model, data):
    space = ParamSpace(ModelBundle.from_module(model, data, dtype=torch.float64))
    h = torch.func.hessian(lambda t: space.loss(t))(space.theta0)
    return space, 0.5 * (h + h.T)


def _columns(op) -> torch.Tensor:
    return op.matmat(torch.eye(op.dim, dtype=torch.float64))


@pytest.mark.parametrize("globs", [["3.*"], ["*.bias"], ["1.weight", "3.bias"], ["1"]])
def test_selected_space_is_the_principal_submatrix(model, data, full, globs):
    space, h = full
    sel = ParamSpace(ModelBundle.from_module(model, data, dtype=torch.float64), params=globs)
    idx = space.indices(globs)
    assert sel.dim == idx.numel() < space.dim
    assert sel.params == tuple(globs)
    assert torch.equal(sel.theta0, space.theta0[idx])
    assert float(sel.loss()) == pytest.approx(float(space.loss()), rel=1e-14)
    sub = h[idx][:, idx]
    for strategy in ("cached", "forward"):
        got = _columns(CurvatureOperator(sel, strategy=strategy))
        assert torch.allclose(got, sub, rtol=0, atol=1e-12), strategy
    # the dense reference of a float32 space keeps the selection in its float64 copy
    sel32 = ParamSpace(ModelBundle.from_module(model, data), params=globs)
    assert torch.allclose(dense_hessian(sel32), sub, rtol=0, atol=1e-5)


def test_selection_leaves_the_model_alone(model, data):
    flags = [p.requires_grad for p in model.parameters()]
    b = ModelBundle.from_module(model, data, dtype=torch.float64)
    ParamSpace(b, params=["3.*"])
    assert [p.requires_grad for p in b.module.parameters()] == flags
    assert [p.requires_grad for p in model.parameters()] == flags
    assert ParamSpace(b).dim == 460  # the same bundle, unrestricted


def test_restricted_operator_on_an_index_set(full):
    space, h = full
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(space.dim, generator=g)[:37]  # unsorted, cutting through tensors
    r = RestrictedOperator(CurvatureOperator(space), idx)
    assert (r.dim, r.device, r.dtype) == (37, space.device, torch.float64)
    sub = h[idx][:, idx]
    assert torch.allclose(_columns(r), sub, rtol=0, atol=1e-12)
    v = torch.randn(37, generator=g, dtype=torch.float64)
    assert torch.allclose(r.matvec(v), sub @ v, rtol=0, atol=1e-12)
    assert r.matvecs == 38 and r.op.matvecs == 38


def test_restriction_of_a_restriction_and_of_a_dense_matrix():
    a = torch.arange(16.0, dtype=torch.float64).reshape(4, 4)
    a = a + a.T
    r = RestrictedOperator(RestrictedOperator(DenseOperator(a), [3, 1, 0]), [2, 0])
    assert torch.equal(_columns(r), a[[0, 3]][:, [0, 3]])


@pytest.mark.parametrize(
    ("indices", "message"),
    [([], "non-empty"), ([0, 0], "repeat"), ([4], r"\[0, 4\)"), ([[0]], "1-D")],
)
def test_restricted_operator_rejects_bad_indices(indices, message):
    with pytest.raises(ConfigError, match=message):
        RestrictedOperator(DenseOperator(torch.eye(4)), indices)


def test_a_glob_that_matches_nothing_is_a_one_line_error(model, data):
    b = ModelBundle.from_module(model, data)
    with pytest.raises(ConfigError) as exc:
        ParamSpace(b, params=["3.*", "enc.layers.*"])
    msg = str(exc.value)
    assert "\n" not in msg and "'enc.layers.*'" in msg
    assert "1.weight, 1.bias, 3.weight, 3.bias" in msg
    with pytest.raises(ConfigError, match="at least one glob"):
        ParamSpace(b, params=[])


def test_frozen_parameters_are_not_selectable(model, data):
    frozen = mlp(64, 6, 10)
    frozen[1].weight.requires_grad_(False)
    b = ModelBundle.from_module(frozen, data)
    with pytest.raises(ConfigError, match="matches no trainable"):
        ParamSpace(b, params=["1.weight"])
    assert ParamSpace(b, params=["1.*"]).names == ["1.bias"]
