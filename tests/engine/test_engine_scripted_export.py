"""TorchScript and torch.export models: same loss, gradient and HVPs as the eager model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.errors import ConfigError
from landscape.io.checkpoint import load_model
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import tiny_cnn


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def data():
    return load_data("digits", max_samples=40, batch_size=16, seed=0)


@pytest.fixture(scope="module")
def eager():
    """A float64 CNN with BatchNorm (non-trivial running statistics), eval mode."""
    torch.manual_seed(0)
    model = tiny_cnn(3).double().eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def eager_space(eager, data):
    return ParamSpace(ModelBundle.from_module(eager, data))


def _compare(space: ParamSpace, ref: ParamSpace, strategies: tuple[str, ...]) -> None:
    assert space.dim == ref.dim
    g = torch.Generator().manual_seed(0)
    theta = ref.theta0 + 0.01 * torch.randn(ref.dim, generator=g, dtype=torch.float64)
    assert abs(float(space.loss(theta)) - float(ref.loss(theta))) <= 1e-12 * float(ref.loss(theta))
    val, grad = space.value_and_grad(theta)
    rval, rgrad = ref.value_and_grad(theta)
    assert abs(val - rval) <= 1e-12 * abs(rval) and _rel(grad, rgrad) <= 1e-12
    assert space.evaluate(theta, "test") == pytest.approx(ref.evaluate(theta, "test"), rel=1e-12)
    vs = torch.randn(2, ref.dim, generator=g, dtype=torch.float64)
    for strategy in strategies:
        hv = CurvatureOperator(space, theta, strategy=strategy).matmat(vs)
        assert _rel(hv, CurvatureOperator(ref, theta, strategy="reverse").matmat(vs)) <= 1e-10


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_matches_eager(tmp_path: Path, eager, eager_space, data, how: str) -> None:
    x = data.x_train[:4].double()
    user = torch.jit.script(eager) if how == "script" else torch.jit.trace(eager, x)
    p = tmp_path / "m.pt"
    user.save(str(p))
    loaded = load_model(p).module
    assert isinstance(loaded, torch.jit.ScriptModule)
    clone = copy.deepcopy(loaded)
    with torch.no_grad():
        assert torch.equal(clone(x), loaded(x))
    before = {k: v.clone() for k, v in user.state_dict().items()}
    flags = [p.requires_grad for p in user.parameters()]
    for bundle_src in (loaded, user):  # the file's module, and the user's in-memory one
        space = ParamSpace(ModelBundle.from_module(bundle_src, data))
        assert space.scripted
        assert [(i.name, i.role, i.module_type) for i in space.infos] == [
            (i.name, i.role, i.module_type) for i in eager_space.infos
        ]
        _compare(space, eager_space, ("cached", "reverse", "auto"))
        # a cached operator stays right after other evaluations at other points
        op = CurvatureOperator(space, strategy="cached")
        v = torch.ones(space.dim, dtype=torch.float64)
        first = op.matvec(v)
        space.loss(space.theta0 + 1.0)
        assert torch.equal(op.matvec(v), first)
    for k, v in user.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert [p.requires_grad for p in user.parameters()] == flags
    assert all(p.grad is None for p in user.parameters())
    with pytest.raises(ConfigError):
        CurvatureOperator(space, strategy="forward")


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_export_matches_eager(
    tmp_path: Path, eager, eager_space, data, dynamic: bool
) -> None:
    x = data.x_train[:3].double()
    if dynamic:
        ep = torch.export.export(eager, (x,), dynamic_shapes=({0: torch.export.Dim("n")},))
    else:
        ep = torch.export.export(eager, (x,))  # batch fixed at 3: chunks of 16 run in pieces
    p = tmp_path / "m.pt2"
    torch.export.save(ep, str(p))
    loaded = load_model(p)
    space = ParamSpace(ModelBundle.from_module(loaded.module, data))
    assert space.names == ["program." + n for n in eager_space.names]
    _compare(space, eager_space, ("cached", "forward"))
    ggn = CurvatureOperator(space, kind="ggn").matvec(torch.ones(space.dim, dtype=torch.float64))
    ref = CurvatureOperator(eager_space, kind="ggn").matvec(
        torch.ones(space.dim, dtype=torch.float64)
    )
    assert _rel(ggn, ref) <= 1e-10
