"""ParamSpace: exact chunked sums, eval-mode buffers, frozen parameters, no mutation."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.errors import ConfigError, DataError
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import mlp, tiny_cnn

N = 40
CHUNKS = (1, 7, 16, N)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


@pytest.fixture(scope="module")
def data40():
    return load_data("digits", max_samples=N, batch_size=N, seed=0)


@pytest.fixture(scope="module")
def spaces(data40):
    """The same float64 tanh MLP on the same 40 samples, streamed in different chunks."""
    torch.manual_seed(0)
    model = mlp(64, 12, 10, activation="tanh")
    return {
        bs: ParamSpace(
            ModelBundle.from_module(model, replace(data40, batch_size=bs), dtype=torch.float64)
        )
        for bs in CHUNKS
    }


def test_chunked_loss_and_grad_are_exact(spaces) -> None:
    full = spaces[N]
    g = torch.Generator().manual_seed(1)
    theta = full.theta0 + 0.05 * torch.randn(full.dim, generator=g, dtype=torch.float64)
    ref_loss = full.loss(theta)
    ref_val, ref_grad = full.value_and_grad(theta)
    # the reference itself is the plain full-batch mean and its autograd gradient
    x, y = full.bundle.data.x_train.double(), full.bundle.data.y_train
    leaf = theta.clone().requires_grad_(True)
    direct = F.cross_entropy(full.forward(leaf, x), y)
    (direct_grad,) = torch.autograd.grad(direct, leaf)
    direct = direct.detach()
    assert abs(float(ref_loss) - float(direct)) <= 1e-12 * abs(float(direct))
    assert _rel(ref_grad, direct_grad) <= 1e-12
    for bs in CHUNKS[:-1]:
        s = spaces[bs]
        assert abs(float(s.loss(theta)) - float(ref_loss)) <= 1e-12 * abs(float(ref_loss))
        val, grad = s.value_and_grad(theta)
        assert abs(val - ref_val) <= 1e-12 * abs(ref_val)
        assert _rel(grad, ref_grad) <= 1e-12
        loss, acc = s.evaluate(theta)
        assert abs(loss - ref_val) <= 1e-12 * abs(ref_val) and 0.0 <= acc <= 1.0


def test_chunked_curvature_products_are_exact(spaces) -> None:
    g = torch.Generator().manual_seed(2)
    vs = torch.randn(2, spaces[N].dim, generator=g, dtype=torch.float64)
    for kind, strategy in [
        ("hessian", "cached"),
        ("hessian", "reverse"),
        ("hessian", "forward"),
        ("ggn", "auto"),
        ("fisher", "auto"),
    ]:
        ref = CurvatureOperator(spaces[N], kind=kind, strategy=strategy).matmat(vs)
        for bs in (7, 16):  # chunks of 1 cost a transform call each; loss/grad cover them
            op = CurvatureOperator(spaces[bs], kind=kind, strategy=strategy)
            assert _rel(op.matmat(vs), ref) <= 1e-12, (kind, strategy, bs)
            if kind != "hessian" or strategy == "forward":  # matvec is its own code path
                assert _rel(op.matvec(vs[1]), ref[1]) <= 1e-12, (kind, strategy, bs)


def test_batchnorm_uses_running_statistics(cnn_bn_bundle) -> None:
    """Eval mode with explicit buffers: the mean of per-sample losses of the eval model."""
    cnn_bn_bundle = replace(cnn_bn_bundle, data=cnn_bn_bundle.data.subset(48))
    space = ParamSpace(cnn_bn_bundle)
    bn = cnn_bn_bundle.module[1]
    assert not bn.training and float(bn.running_mean.abs().sum()) > 0
    buffers = {k: v.clone() for k, v in cnn_bn_bundle.module.named_buffers()}
    ref_model = copy.deepcopy(cnn_bn_bundle.module).eval()
    x, y = cnn_bn_bundle.data.x_train.double(), cnn_bn_bundle.data.y_train
    with torch.no_grad():
        expected = F.cross_entropy(ref_model(x), y)
        per_sample = torch.stack(
            [F.cross_entropy(ref_model(x[i : i + 1]), y[i : i + 1]) for i in range(x.shape[0])]
        ).mean()
    assert abs(float(expected - per_sample)) <= 1e-12 * float(expected)
    v = torch.ones(space.dim, dtype=torch.float64)
    ref_grad = space.value_and_grad()[1]
    ref_hv = CurvatureOperator(space, strategy="reverse").matvec(v)
    for bs in (1, 13):
        s = ParamSpace(replace(cnn_bn_bundle, data=replace(cnn_bn_bundle.data, batch_size=bs)))
        assert abs(float(s.loss()) - float(expected)) <= 1e-12 * float(expected)
        if bs > 1:
            assert _rel(s.value_and_grad()[1], ref_grad) <= 1e-12
            assert _rel(CurvatureOperator(s, strategy="reverse").matvec(v), ref_hv) <= 1e-12
    assert abs(float(space.loss()) - float(expected)) <= 1e-12 * float(expected)
    for k, v in cnn_bn_bundle.module.named_buffers():
        assert torch.equal(v, buffers[k]), k  # running stats never updated
    assert all(torch.equal(space.buffers[k], v) for k, v in buffers.items())


def test_frozen_parameters_are_constants(digits_small) -> None:
    torch.manual_seed(0)
    model = mlp(64, 16, 10, activation="tanh").double()
    model[1].weight.requires_grad_(False)
    space = ParamSpace(ModelBundle.from_module(model, digits_small))
    assert "1.weight" not in space.names
    assert space.dim == sum(p.numel() for p in model.parameters()) - 64 * 16
    assert space.names == ["1.bias", "3.weight", "3.bias"]
    x, y = digits_small.x_train.double(), digits_small.y_train
    trainable = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, trainable)
    loss = loss.detach()
    val, grad = space.value_and_grad()
    assert abs(val - float(loss)) <= 1e-12 * float(loss)
    assert _rel(grad, torch.cat([g.reshape(-1) for g in grads])) <= 1e-12
    # moving θ never moves the frozen weight
    theta = space.theta0 + 1.0
    with torch.no_grad():
        shifted = copy.deepcopy(model)
        for p in shifted.parameters():
            if p.requires_grad:
                p.add_(1.0)
        assert abs(float(space.loss(theta)) - float(F.cross_entropy(shifted(x), y))) < 1e-10


def _snapshot(model: torch.nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "ids": {k: id(v) for k, v in model.state_dict(keep_vars=True).items()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "grad": {
            k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()
        },
        "training": [m.training for m in model.modules()],
        "hooks": [
            (
                list(m._forward_hooks.items()),
                list(m._forward_pre_hooks.items()),
                list(m._backward_hooks.items()),
            )
            for m in model.modules()
        ],
        "dtype": [p.dtype for p in model.parameters()],
    }


def _assert_same(model: torch.nn.Module, snap: dict, when: str) -> None:
    now = _snapshot(model)
    for k, v in snap["state"].items():
        assert torch.equal(now["state"][k], v), (when, k)
    assert now["ids"] == snap["ids"], when
    assert now["requires_grad"] == snap["requires_grad"], when
    for k, g in snap["grad"].items():
        if g is None:
            assert now["grad"][k] is None, (when, k)
        else:
            assert torch.equal(now["grad"][k], g), (when, k)
    assert now["training"] == snap["training"], when
    assert now["hooks"] == snap["hooks"], when
    assert now["dtype"] == snap["dtype"], when


def test_user_model_is_never_mutated(digits_small) -> None:
    torch.manual_seed(0)
    model = tiny_cnn(3)
    model.train()
    model[4].bias.requires_grad_(False)
    model[0].weight.grad = torch.full_like(model[0].weight, 0.25)
    model[8].bias.grad = torch.ones_like(model[8].bias)
    seen: list[int] = []
    model[2].register_forward_hook(lambda m, i, o: seen.append(1))
    model.register_forward_pre_hook(lambda m, i: None)
    data = replace(digits_small.subset(30), batch_size=16)
    snap = _snapshot(model)
    bundle = ModelBundle.from_module(model, data, dtype=torch.float64)
    _assert_same(model, snap, "from_module")
    space = ParamSpace(bundle)
    _assert_same(model, snap, "ParamSpace")
    theta = space.theta0 + 0.01
    calls = {
        "loss": lambda: space.loss(theta),
        "loss-backward": lambda: space.loss(theta.clone().requires_grad_(True)).backward(),
        "evaluate": lambda: (space.evaluate(theta), space.evaluate(theta, "test")),
        "value_and_grad": lambda: space.value_and_grad(theta),
        "forward": lambda: space.forward(theta, data.x_train[:3].double()),
    }
    v = torch.ones(space.dim, dtype=torch.float64)
    vs = torch.ones(2, space.dim, dtype=torch.float64)
    for kind, strategy in [
        ("hessian", "cached"),
        ("hessian", "reverse"),
        ("hessian", "forward"),
        ("ggn", "auto"),
        ("fisher", "auto"),
    ]:
        op = CurvatureOperator(space, theta, kind=kind, strategy=strategy)
        calls[f"{kind}-{strategy}-matvec"] = lambda op=op: op.matvec(v)
        calls[f"{kind}-{strategy}-matmat"] = lambda op=op: op.matmat(vs)
    for name, call in calls.items():
        call()
        _assert_same(model, snap, name)
    assert model[0].weight.grad is not None and float(model[0].weight.grad[0, 0, 0, 0]) == 0.25


def test_bad_theta_and_splits(mlp_bundle, one_line) -> None:
    space = ParamSpace(mlp_bundle)
    with pytest.raises(ConfigError) as ei:
        space.loss(torch.zeros(3, dtype=torch.float64))
    one_line(ei.value, str(space.dim))
    with pytest.raises(ConfigError) as ei:
        space.loss(split="validation")
    one_line(ei.value, "unknown split")
    no_test = replace(mlp_bundle, data=replace(mlp_bundle.data, x_test=None, y_test=None))
    s2 = ParamSpace(no_test)
    with pytest.raises(DataError) as ei:
        s2.loss(split="test")
    one_line(ei.value, "test split is empty")
    loss, acc = s2.evaluate(split="test")
    assert loss != loss and acc != acc  # NaN for an empty split


def test_no_trainable_parameters(digits_small, one_line) -> None:
    model = mlp(64, 4, 10)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError) as ei:
        ParamSpace(ModelBundle.from_module(model, digits_small))
    one_line(ei.value, "no trainable", "requires_grad")


def test_layout_roles_and_round_trip(cnn_bn_bundle) -> None:
    space = ParamSpace(cnn_bn_bundle)
    roles = {i.name: i.role for i in space.infos}
    assert roles["0.weight"] == "weight" and roles["0.bias"] == "bias"
    assert roles["1.weight"] == "norm" and roles["1.bias"] == "norm"
    parts = space.unflatten(space.theta0)
    assert torch.equal(space.flatten(parts), space.theta0)
    assert sum(i.numel for i in space.infos) == space.dim
