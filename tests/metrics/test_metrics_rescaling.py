"""Dinh et al. 2017: a function-preserving rescaling changes raw λmax, not invariant metrics."""

from __future__ import annotations

import copy

import torch
from torch import nn

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.io.model_bundle import ModelBundle
from landscape.metrics import (
    adaptive_sharpness,
    average_sharpness,
    canonicalize,
    compute_metrics,
    fisher_rao_norm,
    lambda_max,
)


def test_rescaled_twin_computes_the_same_function(relu_pair, digits_200) -> None:
    a, b = relu_pair
    x = digits_200.x_train.double()
    assert torch.allclose(a.forward(a.theta0, x), b.forward(b.theta0, x), atol=1e-12)
    assert not torch.allclose(a.theta0, b.theta0)


def test_canonical_points_coincide(relu_pair) -> None:
    a, b = relu_pair
    ta, ia = canonicalize(a)
    tb, ib = canonicalize(b)
    assert ia.applied and ib.applied
    assert ia.balance_error < 1e-10 and ib.function_error < 1e-12
    assert torch.allclose(ta, tb, rtol=0, atol=1e-9 * float(ta.abs().max()))
    # the canonical point has the smallest norm on the orbit
    assert ia.norm_after <= ia.norm_before + 1e-12 and ib.norm_after < ib.norm_before


def test_invariant_metrics_agree_raw_lambda_max_does_not(relu_pair) -> None:
    a, b = relu_pair
    names = ["lambda_max", "trace", "adaptive_sharpness"]
    opts = {"top_k": 2, "trace_matvecs": 30, "restarts": 1, "steps": 8}
    raw = [compute_metrics(s, names=names, canonicalize=False, **opts) for s in (a, b)]
    can = [compute_metrics(s, names=names, canonicalize=True, **opts) for s in (a, b)]
    # raw λmax changes a lot under the α = 4 rescaling
    ratio = raw[1].value("lambda_max") / raw[0].value("lambda_max")
    assert ratio > 4 or ratio < 0.25, ratio
    assert not raw[0].invariant["lambda_max"] and not raw[0].invariant["trace"]
    # canonicalized λmax and trace and (raw) adaptive sharpness agree within 2 %
    for name in ("lambda_max", "trace"):
        va, vb = can[0].value(name), can[1].value(name)
        assert abs(va - vb) <= 0.02 * abs(va), (name, va, vb)
        assert can[0].invariant[name] and can[0].canonicalized
    va, vb = raw[0].value("adaptive_sharpness"), raw[1].value("adaptive_sharpness")
    assert va > 0 and abs(va - vb) <= 0.02 * va, (va, vb)
    assert raw[0].invariant["adaptive_sharpness"]


def test_elementwise_noise_and_fisher_rao_are_invariant(relu_pair) -> None:
    a, b = relu_pair
    ea = average_sharpness(a, sigma=0.05, num_samples=8, scale="element", seed=1)
    eb = average_sharpness(b, sigma=0.05, num_samples=8, scale="element", seed=1)
    assert abs(ea.mean - eb.mean) <= 1e-9 * abs(ea.mean)
    fa, fb = fisher_rao_norm(a), fisher_rao_norm(b)
    assert abs(fa - fb) <= 1e-10 * fa
    # isotropic adaptive sharpness with η > 0 is no longer exactly invariant
    sa = adaptive_sharpness(a, radius=0.5, eta=0.1, restarts=1, steps=3)
    sb = adaptive_sharpness(b, radius=0.5, eta=0.1, restarts=1, steps=3)
    assert abs(sa.value - sb.value) > 1e-3 * sa.value


def test_conv_channels_are_rescaled_consistently(digits_200) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.LeakyReLU(0.1),
        nn.Flatten(),
        nn.Linear(4 * 16, 10),
    ).double()
    twin = copy.deepcopy(model)
    with torch.no_grad():  # per-channel scales, compensated in the next layer
        s = torch.tensor([4.0, 0.5, 2.0], dtype=torch.float64)
        twin[0].weight.mul_(s.view(-1, 1, 1, 1))
        twin[0].bias.mul_(s)
        twin[3].weight.div_(s.view(1, -1, 1, 1))
        t = torch.tensor([3.0, 0.25, 1.0, 5.0], dtype=torch.float64)
        twin[3].weight.mul_(t.view(-1, 1, 1, 1))
        twin[3].bias.mul_(t)
        twin[6].weight.div_(t.repeat_interleave(16).view(1, -1))
    a = ParamSpace(ModelBundle.from_module(model, digits_200, dtype=torch.float64))
    b = ParamSpace(ModelBundle.from_module(twin, digits_200, dtype=torch.float64))
    x = digits_200.x_train.double()
    assert torch.allclose(a.forward(a.theta0, x), b.forward(b.theta0, x), atol=1e-10)
    ta, _ = canonicalize(a)
    tb, info = canonicalize(b)
    assert info.hidden_units == 7
    assert torch.allclose(ta, tb, atol=1e-8 * float(ta.abs().max()))
    la = lambda_max(CurvatureOperator(a, ta))
    lb = lambda_max(CurvatureOperator(b, tb))
    assert abs(la - lb) <= 1e-6 * la
