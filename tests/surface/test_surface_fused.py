"""The fused eager forward (BatchNorm folded, channels_last, first conv as a GEMM).

Every check compares with the plain per-point functional loop (``compile=False``), which
reproduces ``ParamSpace.evaluate`` bit for bit, or with a Li et al. style loop that writes
θ into a copy of the model.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from landscape.engine import ParamSpace
from landscape.io.model_bundle import ModelBundle
from landscape.models import digits_cnn, mlp
from landscape.surface import (
    GridSpec,
    PointEvaluator,
    evaluate_points,
    evaluate_surface,
    random_directions,
)
from landscape.surface.fused import build_fused


def _bn_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics (and affine parameters) so eval mode matters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            if m.weight is not None:
                m.weight.data.copy_(1 + 0.2 * torch.randn(n, generator=g))
                m.bias.data.copy_(0.1 * torch.randn(n, generator=g))
    return model


def _cnn_all_layers() -> nn.Module:
    """Conv+BN (folded), a bias-free strided conv, standalone BN, pooling, Linear+BN1d."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.ReLU()),
        nn.BatchNorm2d(6),  # after a ReLU: applied, not folded
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 12),
        nn.BatchNorm1d(12),
        nn.Tanh(),
        nn.Dropout(0.5),
        nn.LayerNorm(12),
        nn.Linear(12, 10),
    )


def _space(model: nn.Module, data, dtype=torch.float64) -> ParamSpace:
    return ParamSpace(ModelBundle.from_module(_bn_stats(model), data, dtype=dtype))


def _mlp_bn() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10)
    )


def _odd_pool() -> nn.Module:
    """Max pools over odd sizes (6→3→1) and one not directly after a layer."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


MODELS = {
    "cnn_all_layers": _cnn_all_layers,
    "odd_pool": _odd_pool,
    "digits_cnn": lambda: digits_cnn(4),
    "mlp_relu": lambda: mlp(64, [16, 12], 10, activation="relu"),
    "mlp_bn": _mlp_bn,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fused_equals_plain_loop_in_float64(digits_tiny, name):
    torch.manual_seed(0)
    space = _space(MODELS[name](), digits_tiny)
    assert build_fused(space) is not None
    dirs = random_directions(space, 2, seed=1, ignore="none")  # BN and biases move too
    pts = GridSpec.parse("3x3", "-1.5:1.5").points()
    fused = PointEvaluator(space, dirs, splits=("train", "test"), method="fused")
    assert fused.method == "fused"
    got = fused.evaluate(pts)
    ref = evaluate_points(space, dirs, pts, compile=False)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-11, atol=0)


@pytest.mark.parametrize("name", ["cnn_all_layers", "digits_cnn", "mlp_bn"])
def test_fused_float32_agrees_with_li_style_loop(digits_tiny, name):
    torch.manual_seed(0)
    space = _space(MODELS[name](), digits_tiny, dtype=torch.float32)
    dirs = random_directions(space, 2, normalization="filter", ignore="biasbn", seed=2)
    spec = GridSpec.parse("5x5", "-1:1")
    surf = evaluate_surface(space, dirs, spec, test=False, chunk_size=120)
    assert surf.info["method"] == "fused" and surf.info["compiled"] is False
    net = copy.deepcopy(space.bundle.module).eval()
    params = list(net.parameters())
    ref = []
    with torch.no_grad():
        for a, b in spec.points():
            theta = dirs.origin + float(a) * dirs.vectors[0] + float(b) * dirs.vectors[1]
            torch.nn.utils.vector_to_parameters(theta, params)
            x, y = digits_tiny.x_train, digits_tiny.y_train
            ref.append(float(nn.functional.cross_entropy(net(x), y)))
    np.testing.assert_allclose(surf.train_loss.reshape(-1), ref, rtol=1e-5)


def test_first_conv_gemm_equals_convolution(digits_tiny):
    torch.manual_seed(0)
    space = _space(_cnn_all_layers(), digits_tiny)
    plan = build_fused(space)
    assert plan is not None and plan.unfoldable and plan.channels_last
    x = digits_tiny.x_train[:7].double().contiguous(memory_format=torch.channels_last)
    state = dict(space.unflatten(space.theta0 * 1.1))
    state.update(space.buffers)
    with torch.no_grad():
        direct = plan.forward(state, x)
        gemm = plan.forward(state, x, plan.unfold(x))
        ref = space.forward(space.theta0 * 1.1, x.contiguous())
    assert plan.unfold_bytes(x) == plan.unfold(x).numel() * 8
    torch.testing.assert_close(gemm, direct, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gemm, ref, rtol=1e-12, atol=1e-12)


def test_default_picks_fused_and_compile_false_keeps_the_exact_loop(digits_tiny):
    torch.manual_seed(0)
    space = _space(digits_cnn(4), digits_tiny)
    dirs = random_directions(space, 2, seed=0)
    spec = GridSpec.parse("3x3")
    auto = evaluate_surface(space, dirs, spec)
    exact = evaluate_surface(space, dirs, spec, compile=False)
    assert auto.info["method"] == "fused" and exact.info["method"] == "loop"
    assert exact.train_loss[1, 1] == space.evaluate()[0]
    np.testing.assert_allclose(auto.train_loss, exact.train_loss, rtol=1e-11)
    np.testing.assert_array_equal(auto.test_accuracy, exact.test_accuracy)


class _Skip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 10)
        self.b = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.a(x) + torch.relu(self.b(x))


class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s


def test_models_outside_the_fused_forward_fall_back(digits_tiny):
    torch.manual_seed(0)
    shared = nn.Linear(64, 64)
    unsupported = [
        _Skip(),  # custom forward with a skip connection
        nn.Sequential(nn.Flatten(), shared, nn.ReLU(), shared, nn.Linear(64, 10)),
        nn.Sequential(nn.Flatten(), nn.Linear(64, 10), _Scale()),  # unknown stateful module
        nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 8),
            nn.BatchNorm1d(8, track_running_stats=False),
            nn.Linear(8, 10),
        ),  # batch statistics even in eval mode
    ]
    for model in unsupported:
        space = ParamSpace(ModelBundle.from_module(model, digits_tiny, dtype=torch.float64))
        assert build_fused(space) is None
        dirs = random_directions(space, 1, seed=0)
        with pytest.warns(RuntimeWarning, match="fused forward does not apply"):
            ev = PointEvaluator(space, dirs, method="fused")
        assert ev.method == "loop"
        surf = evaluate_surface(space, dirs, GridSpec.parse("3"), test=False)
        assert surf.info["method"] == "loop"
        ref = float(space.loss(dirs.point([1.0])))
        assert surf.train_loss[2] == pytest.approx(ref, rel=1e-12)


def test_fused_forward_does_not_touch_data_or_model(digits_tiny):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(64, 10))  # ReLU on a data view
    space = ParamSpace(ModelBundle.from_module(model, digits_tiny, dtype=torch.float64))
    x_before = digits_tiny.x_train.clone()
    w_before = model[2].weight.detach().clone()
    dirs = random_directions(space, 2, seed=0)
    ev = PointEvaluator(space, dirs, method="fused")
    assert ev.method == "fused"
    got = ev.evaluate(GridSpec.parse("3x3").points())
    ref = evaluate_points(space, dirs, GridSpec.parse("3x3").points(), test=False, compile=False)
    np.testing.assert_allclose(got["train_loss"], ref["train_loss"], rtol=1e-12)
    assert torch.equal(digits_tiny.x_train, x_before)
    assert torch.equal(model[2].weight, w_before)
