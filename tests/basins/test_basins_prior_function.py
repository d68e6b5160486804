"""P(f): sampling against brute-force enumeration, EP against the GP, LZ on known strings."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from torch import nn

from landscape.basins.nngp import ep_log_orthant, nngp_kernel, relu_mlp_layers
from landscape.basins.prior_function import (
    InitSampler,
    PriorProbability,
    lempel_ziv_complexity,
    lz76_phrases,
    prior_probability,
    sample_functions,
)
from landscape.engine import ParamSpace
from landscape.errors import ConfigError
from landscape.io.data import DataSource
from landscape.io.model_bundle import ModelBundle

BITS3 = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)))


class FiniteNet(nn.Module):
    """3 → 2 → 1 ReLU net whose init draws weights from {−1, +1} and biases from {−1, 0, 1}."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.zeros(2, 3))
        self.b1 = nn.Parameter(torch.zeros(2))
        self.w2 = nn.Parameter(torch.zeros(1, 2))
        self.b2 = nn.Parameter(torch.zeros(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.w1.copy_(torch.randint(0, 2, (2, 3)) * 2.0 - 1)
            self.b1.copy_(torch.randint(-1, 2, (2,)).float())
            self.w2.copy_(torch.randint(0, 2, (1, 2)) * 2.0 - 1)
            self.b2.copy_(torch.randint(-1, 2, (1,)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.w1.T + self.b1) @ self.w2.T + self.b2


def _forward_np(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: float) -> tuple[int, ...]:
    x = BITS3.numpy()
    out = np.maximum(x @ w1.T + b1, 0) @ w2 + b2
    return tuple(int(v > 0) for v in out)


def _exact_prior() -> tuple[dict[tuple[int, ...], float], dict[tuple[int, ...], np.ndarray]]:
    """Enumerate all 2⁶·3²·2²·3 = 6912 equally likely configurations."""
    counts: Counter[tuple[int, ...]] = Counter()
    example: dict[tuple[int, ...], np.ndarray] = {}
    for w1 in itertools.product([-1.0, 1.0], repeat=6):
        for b1 in itertools.product([-1.0, 0.0, 1.0], repeat=2):
            for w2 in itertools.product([-1.0, 1.0], repeat=2):
                for b2 in (-1.0, 0.0, 1.0):
                    f = _forward_np(np.reshape(w1, (2, 3)), np.array(b1), np.array(w2), b2)
                    counts[f] += 1
                    example.setdefault(f, np.concatenate([w1, b1, w2, [b2]]))
    total = sum(counts.values())
    assert total == 6912
    return {f: c / total for f, c in counts.items()}, example


def _space(model: nn.Module) -> ParamSpace:
    data = DataSource("bits3", BITS3, torch.zeros(8, 1), batch_size=8)
    return ParamSpace(ModelBundle.from_module(model, data, "mse"))


def test_sampled_function_frequencies_match_enumeration() -> None:
    exact, _ = _exact_prior()
    n = 12_000
    labels = sample_functions(FiniteNet(), BITS3, n, seed=1, batch=4000)
    seen = Counter(tuple(int(v) for v in row) for row in labels.tolist())
    assert set(seen) <= set(exact)  # never a function the init cannot produce
    for f, p in exact.items():
        se = math.sqrt(p * (1 - p) / n)
        assert abs(seen.get(f, 0) / n - p) < 4 * se + 1e-12, (f, p, seen.get(f, 0) / n)


def test_prior_probability_agrees_with_enumeration_and_stderr_is_honest() -> None:
    exact, example = _exact_prior()
    # a common function and a rare one (P between 1e-3 and 0.02)
    common = max(exact, key=lambda f: exact[f])
    rare = min((f for f in exact if 2e-3 < exact[f] < 0.02), key=lambda f: exact[f])
    space = _space(FiniteNet())
    for f, n in ((common, 2000), (rare, 8000)):
        theta = torch.tensor(example[f], dtype=torch.float32)
        r = prior_probability(space, theta, inputs=BITS3, num_samples=n, seed=3, batch=5000)
        assert r.method == "sampling" and not r.upper_bound and r.num_inputs == 8
        truth = math.log10(exact[f])
        assert abs(r.log10_p.mean - truth) < 3 * r.log10_p.stderr, (f, r, truth)
        assert r.log10_ci[0] < truth < r.log10_ci[1]
    # coverage of ±1.96 stderr over seeds (nominal 95%)
    theta = torch.tensor(example[common], dtype=torch.float32)
    truth = math.log10(exact[common])
    inside = 0
    for s in range(10):
        r = prior_probability(space, theta, inputs=BITS3, num_samples=600, seed=100 + s)
        inside += abs(r.log10_p.mean - truth) < 1.96 * r.log10_p.stderr
    assert inside >= 7, inside  # nominal 9.5 of 10; P(< 7) ≈ 0.001 if honest


def test_no_hits_gives_clopper_pearson_upper_bound() -> None:
    exact, _ = _exact_prior()
    space = _space(FiniteNet())
    # real-valued weights reach functions the {−1, 0, 1} init never computes: P(f) = 0
    gen = torch.Generator().manual_seed(0)
    while True:
        theta = torch.randn(space.dim, generator=gen) * torch.rand(space.dim, generator=gen) * 3
        with torch.no_grad():
            f = tuple(int(v > 0) for v in space.forward(theta, BITS3)[:, 0])
        if f not in exact:
            break
    r = prior_probability(space, theta, inputs=BITS3, num_samples=500, seed=0)
    assert r.hits == 0 and r.upper_bound
    assert r.log10_p.mean == pytest.approx(math.log10(1 - 0.025 ** (1 / 500)), rel=1e-6)
    assert math.isnan(r.log10_p.stderr)
    assert any("Clopper-Pearson" in note for note in r.notes)
    d = r.to_dict()
    assert d["upper_bound"] is True and d["log10_p"]["stderr"] == "nan" and d["hits"] == 0


def test_parameters_without_reset_are_kept_and_noted() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = FiniteNet()
            self.scale = nn.Parameter(torch.full((1,), 2.5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) * self.scale

    sampler = InitSampler(Scaled())
    assert sampler.fixed == ("scale",)
    theta = sampler.draw(50, seed=0)
    assert torch.all(theta[:, 0] == 2.5)  # own parameters come before the children's
    assert any("scale" in note for note in sampler.notes)


def test_sampling_leaves_model_and_global_rng_alone() -> None:
    model = FiniteNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    a = sample_functions(model, BITS3, 200, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(a, sample_functions(model, BITS3, 200, seed=5))


def test_linear_fast_path_matches_reset_parameters() -> None:
    class SubLinear(nn.Linear):  # not exactly nn.Linear: takes the reset_parameters() path
        pass

    def net(lin: type[nn.Linear]) -> nn.Module:
        return nn.Sequential(lin(3, 4), nn.ReLU(), lin(4, 1))

    assert not InitSampler(net(nn.Linear))._slow
    assert InitSampler(net(SubLinear))._slow
    n = 12_000
    fa = Counter(map(tuple, sample_functions(net(nn.Linear), BITS3, n, seed=0).tolist()))
    fb = Counter(map(tuple, sample_functions(net(SubLinear), BITS3, n, seed=1).tolist()))
    for f in set(fa) | set(fb):
        pa, pb = fa.get(f, 0) / n, fb.get(f, 0) / n
        se = math.sqrt((pa + pb) / n + 1e-12)
        assert abs(pa - pb) < 4 * se + 1e-3, (f, pa, pb)


def test_nngp_kernel_matches_wide_network_covariance() -> None:
    torch.manual_seed(0)
    width = 256
    net = nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                        nn.Linear(width, 1))  # fmt: skip
    x = torch.randn(4, 3)
    sampler = InitSampler(net)
    outs = []
    with torch.no_grad():
        for c in range(8):
            outs.append(sampler.outputs(sampler.draw(250, seed=c), x)[..., 0])
    y = torch.cat(outs).double().numpy()
    emp = y.T @ y / y.shape[0]
    kernel = nngp_kernel(net, x)
    assert np.allclose(emp, kernel, rtol=0.15, atol=0.05 * kernel.max())


def test_ep_matches_direct_gp_sampling_and_genz() -> None:
    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    x = torch.tensor(rng.standard_normal((6, 3)), dtype=torch.float32)
    for n in (2, 4, 6):
        kernel = nngp_kernel(net, x[:n])
        draws = rng.multivariate_normal(np.zeros(n), kernel, size=400_000, method="eigh")
        for _ in range(3):
            y = rng.choice([-1.0, 1.0], size=n)
            k = int(np.all(np.sign(draws) == y, axis=1).sum())
            p_mc = k / draws.shape[0]
            se = math.sqrt((1 - p_mc) / max(k, 1)) / math.log(10)
            ep = ep_log_orthant(kernel, y)
            assert ep.converged
            genz = multivariate_normal(np.zeros(n), np.diag(y) @ kernel @ np.diag(y)).cdf(
                np.zeros(n)
            )
            assert abs(ep.log10_p - math.log10(p_mc)) < 3 * se + 0.05, (n, y, ep, p_mc)
            assert abs(ep.log10_p - math.log10(genz)) < 0.05, (n, y, ep, genz)


def test_ep_is_exact_for_one_input_and_bivariate() -> None:
    assert math.exp(ep_log_orthant(np.array([[2.0]]), np.array([1])).log_p) == pytest.approx(0.5)
    rho = 0.3
    exact = 0.25 + math.asin(rho) / (2 * math.pi)
    ep = ep_log_orthant(np.array([[1.0, rho], [rho, 1.0]]), np.array([1, 1]))
    assert math.exp(ep.log_p) == pytest.approx(exact, rel=5e-3)


def test_auto_reports_nngp_for_binary_mlp_and_notes_multiclass() -> None:
    torch.manual_seed(0)
    binary = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))
    r = prior_probability(_space(binary), inputs=BITS3[:4], num_samples=4000, seed=0)
    assert r.nngp_log10_p is not None and r.hits > 0
    # the finite net's frequency and the NNGP value should be in the same ballpark
    assert abs(r.nngp_log10_p - r.log10_p.mean) < 1.0
    rn = prior_probability(_space(binary), inputs=BITS3[:4], method="nngp")
    assert rn.method == "nngp" and rn.num_samples == 0 and rn.log10_p.mean == r.nngp_log10_p
    multi = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 3))
    data = DataSource("bits3", BITS3, torch.zeros(8, dtype=torch.long), batch_size=8)
    sp = ParamSpace(ModelBundle.from_module(multi, data, "cross_entropy"))
    rm = prior_probability(sp, num_samples=500, seed=0)
    assert rm.nngp_log10_p is None
    assert "nngp not available for multi-class; sampling only" in rm.notes
    assert "first 8 of 8 training inputs" in rm.notes[0]
    with pytest.raises(ConfigError):
        prior_probability(sp, method="nngp")
    d = rm.to_dict()
    assert set(d) >= {"log10_p", "num_samples", "hits", "num_inputs", "method", "upper_bound",
                      "nngp_log10_p", "notes"}  # fmt: skip
    assert set(d["log10_p"]) == {"mean", "stderr"}
    assert isinstance(rm, PriorProbability)


def test_relu_mlp_detection() -> None:
    assert relu_mlp_layers(nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.ReLU(),
                                         nn.Linear(3, 1))) is not None  # fmt: skip
    assert relu_mlp_layers(nn.Sequential(nn.Linear(2, 3), nn.ReLU())) is None
    assert relu_mlp_layers(FiniteNet()) is None
    with pytest.raises(ConfigError):
        nngp_kernel(FiniteNet(), BITS3)


def test_lempel_ziv_on_known_strings() -> None:
    n = 128
    zeros = lempel_ziv_complexity("0" * n)
    assert zeros == lempel_ziv_complexity("1" * n) == 7.0
    alternating = lempel_ziv_complexity("01" * 64)
    assert alternating == pytest.approx(7.0 * 3)
    rng = np.random.default_rng(0)
    random_bits = rng.integers(0, 2, n)
    rand = lempel_ziv_complexity(random_bits)
    assert zeros < alternating < rand and rand > 80
    assert lz76_phrases("0001101001000101") == 6  # Kaspar & Schuster's example
    assert lempel_ziv_complexity(torch.tensor([0, 1, 1, 0])) == lempel_ziv_complexity("0110")


def test_bad_input_raises_config_error() -> None:
    space = _space(FiniteNet())
    with pytest.raises(ConfigError):
        prior_probability(space, num_samples=0)
    with pytest.raises(ConfigError):
        prior_probability(space, method="exact")
    with pytest.raises(ConfigError):
        prior_probability(space, max_inputs=0)
    with pytest.raises(ConfigError):
        sample_functions(FiniteNet(), BITS3, 0, seed=0)
    with pytest.raises(ConfigError):
        sample_functions(FiniteNet(), BITS3, 10, seed=0, batch=0)
    with pytest.raises(ConfigError):
        lempel_ziv_complexity("0120")
    with pytest.raises(ConfigError):
        lempel_ziv_complexity("")
