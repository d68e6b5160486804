"""Weight spectra against known answers: Pareto tails, Marchenko–Pastur bulks, spikes, traps."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from landscape.errors import ConfigError, NotApplicable
from landscape.io.rundir import _jsonable
from landscape.metrics.weight_spectra import (
    mp_edges,
    mp_fit,
    mp_quantile,
    powerlaw_fit,
    weight_matrices,
    weight_spectra,
)


def _haar(n: int, m: int, g: torch.Generator) -> torch.Tensor:
    """An ``n × m`` matrix with Haar-distributed orthonormal columns."""
    q, r = torch.linalg.qr(torch.randn(n, m, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _with_esd(lam: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """``W = U diag(√(Nλ)) Vᵀ`` (Haar ``U``, ``V``): the eigenvalues of ``WᵀW/N`` are ``λ``."""
    m = lam.numel()
    return _haar(n, m, g) @ torch.diag(torch.sqrt(lam * n)) @ _haar(m, m, g).T


def _pareto(m: int, alpha: float, g: torch.Generator, xmin: float = 1.0) -> torch.Tensor:
    """Samples with density ∝ x^(−α) on [xmin, ∞), by inversion."""
    u = torch.rand(m, generator=g, dtype=torch.float64)
    return xmin * (1.0 - u) ** (-1.0 / (alpha - 1.0))


def _linear(w: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(w)
    return lin


# -- power law ---------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [2.0, 3.0, 5.0])
def test_mle_recovers_the_pareto_exponent(alpha: float) -> None:
    g = torch.Generator().manual_seed(1)
    x = _pareto(20000, alpha, g, xmin=0.3)
    fit = powerlaw_fit(x)
    # stderr (α−1)/√n ≤ 0.03 here, so ±0.1 is more than 3 standard errors
    assert abs(fit.alpha - alpha) < 0.1, fit
    assert fit.alpha_stderr == pytest.approx((fit.alpha - 1) / math.sqrt(fit.n_tail))
    assert fit.xmin >= 0.3 and fit.ks < 0.02 and fit.note is None


def test_xmin_is_found_above_a_non_power_law_bulk() -> None:
    g = torch.Generator().manual_seed(2)
    bulk = 0.05 + 0.9 * torch.rand(8000, generator=g, dtype=torch.float64)  # on [0.05, 0.95]
    tail = _pareto(8000, 2.5, g, xmin=1.0)
    fit = powerlaw_fit(torch.cat([bulk, tail]))
    assert abs(fit.alpha - 2.5) < 0.1, fit
    # any x_min inside the Pareto part is a valid tail start; none inside the bulk is
    assert 1.0 <= fit.xmin < 2.5 and fit.n_tail <= 8000, fit


def test_pareto_esd_of_a_matrix_gives_its_exponent() -> None:
    """Two 1000×1000 layers (batched into one SVD call) with Pareto ESDs, α = 2 and 2.5."""
    g = torch.Generator().manual_seed(3)
    model = nn.Sequential(
        _linear(_with_esd(_pareto(1000, 2.0, g), 1000, g)),
        _linear(_with_esd(_pareto(1000, 2.5, g, xmin=0.01), 1000, g)),
    )
    ws = weight_spectra(model, traps=False)
    for lay, alpha in zip(ws.layers, (2.0, 2.5), strict=True):
        assert abs(lay.alpha - alpha) < 0.1, lay.power_law
        assert lay.weighted_alpha == pytest.approx(lay.alpha * math.log10(lay.lambda_max))


def test_rectangular_pareto_esd_in_either_orientation() -> None:
    g = torch.Generator().manual_seed(4)
    w = _with_esd(_pareto(600, 2.0, g), 1200, g)  # 1200 × 600, Q = 2
    for m in (_linear(w), _linear(w.T.contiguous())):
        lay = weight_spectra(m, traps=False).layers[0]
        assert lay.matrix_shape == (1200, 600) and lay.eigenvalues.shape == (600,)
        assert abs(lay.alpha - 2.0) < 0.1, lay.power_law


def test_too_few_eigenvalues_is_reported_not_fit() -> None:
    fit = powerlaw_fit(np.array([1.0, 2.0, 3.0]), min_tail=10)
    assert not fit.fit and math.isnan(fit.alpha) and "fewer than the 10" in (fit.note or "")
    lay = weight_spectra(nn.Linear(6, 4, bias=False)).layers[0]
    assert not lay.power_law.fit and math.isnan(lay.weighted_alpha)
    assert math.isfinite(lay.stable_rank)  # the norms are still defined
    vec = weight_spectra(nn.Linear(5, 1)).layers[0]  # a 1×5 matrix
    assert vec.note is not None and "below 2" in vec.note and not vec.mp.fit
    d = json.loads(json.dumps(_jsonable(weight_spectra(nn.Linear(5, 1)).to_dict())))
    assert d["layers"][0]["alpha"] == "nan" and d["layers"][0]["mp_spikes"] is None
    with pytest.raises(ConfigError):
        powerlaw_fit(np.ones(5), min_tail=1)


# -- Marchenko–Pastur --------------------------------------------------------------------
def test_mp_median_matches_samples() -> None:
    rng = np.random.default_rng(0)
    n, m = 4000, 1000
    g = rng.standard_normal((n, m))
    ev = np.linalg.eigvalsh(g.T @ g / n)
    assert mp_quantile(0.5, n / m) == pytest.approx(np.median(ev), rel=0.005)
    assert mp_quantile(0.0, 4.0) == pytest.approx(mp_edges(1.0, 4.0)[0], abs=1e-9)
    assert mp_quantile(1.0, 4.0) == pytest.approx(mp_edges(1.0, 4.0)[1], abs=1e-9)


@pytest.mark.parametrize(("n", "m", "sigma"), [(400, 200, 0.5), (300, 300, 2.0), (1000, 100, 1.0)])
def test_gaussian_bulk_edges_and_no_spikes(n: int, m: int, sigma: float) -> None:
    g = torch.Generator().manual_seed(n + m)
    w = sigma * torch.randn(n, m, generator=g, dtype=torch.float64)
    lay = weight_spectra(_linear(w), seed=1).layers[0]
    lo, hi = mp_edges(sigma**2, n / m)
    assert lay.mp.sigma2 == pytest.approx(sigma**2, rel=0.03)
    assert lay.mp.lambda_plus == pytest.approx(hi, rel=0.03)
    assert lay.mp.lambda_minus == pytest.approx(lo, rel=0.1, abs=1e-12)
    assert lay.mp.q == n / m and lay.mp.spikes == 0 and lay.traps == 0
    assert lay.lambda_max == pytest.approx(hi, rel=0.06)  # the largest eigenvalue sits at λ+


def test_rank_one_spike_is_one_spike() -> None:
    g = torch.Generator().manual_seed(5)
    n, m = 400, 200
    w = torch.randn(n, m, generator=g, dtype=torch.float64)
    u = torch.randn(n, 1, generator=g, dtype=torch.float64)
    v = torch.randn(m, 1, generator=g, dtype=torch.float64)
    spiked = w + 3.0 * math.sqrt(n) * (u / u.norm()) @ (v / v.norm()).T
    lay = weight_spectra(_linear(spiked)).layers[0]
    assert lay.mp.spikes == 1
    assert lay.mp.sigma2 == pytest.approx(1.0, rel=0.03)
    # BBP (Benaych-Georges & Nadakuditi 2012): signal θ = 3 lifts λmax to (1+θ²)(1/Q+θ²)/θ²,
    # with O(1/√N) fluctuations (a few % here)
    assert lay.lambda_max == pytest.approx((1 + 9) * (0.5 + 9) / 9, rel=0.08)
    assert lay.traps == 0  # permuting the entries destroys a low-rank structure


def test_a_planted_large_entry_is_a_correlation_trap() -> None:
    g = torch.Generator().manual_seed(6)
    n, m = 400, 200
    w = torch.randn(n, m, generator=g, dtype=torch.float64)
    w[3, 5] = 10.0 * math.sqrt(n)
    lay = weight_spectra(_linear(w), seed=3).layers[0]
    assert lay.traps == 1 and lay.mp.spikes == 1
    assert lay.randomized_lambda_max == pytest.approx(100.0, rel=0.05)


def test_mp_fit_is_undefined_without_a_bulk() -> None:
    assert not mp_fit(np.array([0.0, 0.0, 0.0]), 10, 3).fit
    assert not mp_fit(np.array([1.0]), 10, 1).fit


# -- norms, shapes, the module ------------------------------------------------------------
def test_norms_and_stable_rank_against_numpy() -> None:
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 5))
    ws = weight_spectra(model)
    conv = ws.layer("0.weight")
    w = model[0].weight.detach().double().numpy().reshape(16, 27)
    s = np.linalg.svd(w, compute_uv=False)
    assert conv.shape == (16, 3, 3, 3) and conv.matrix_shape == (27, 16)
    assert conv.stable_rank == pytest.approx(np.linalg.norm(w) ** 2 / s[0] ** 2, rel=1e-10)
    assert conv.log_spectral_norm == pytest.approx(np.log10(np.linalg.norm(w, 2)), rel=1e-10)
    assert conv.log_frobenius_norm == pytest.approx(np.log10(np.linalg.norm(w)), rel=1e-10)
    np.testing.assert_allclose(conv.eigenvalues, np.sort(s**2 / 27), rtol=1e-10)
    assert conv.lambda_max == pytest.approx(s[0] ** 2 / 27, rel=1e-10)
    assert [lay.name for lay in ws.layers] == ["0.weight", "3.weight"]


def test_embeddings_and_attention_weights_are_matrices() -> None:
    model = nn.ModuleDict(
        {"emb": nn.Embedding(50, 16), "attn": nn.MultiheadAttention(16, 2), "ln": nn.LayerNorm(16)}
    )
    names = [n for n, _ in weight_matrices(model)]
    assert names == ["emb.weight", "attn.in_proj_weight", "attn.out_proj.weight"]
    assert [n for n, _ in weight_matrices(model, ["attn.*"])] == names[1:]
    with pytest.raises(NotApplicable, match="no weight matrix"):
        weight_spectra(model, params=["nothing.*"])
    with pytest.raises(NotApplicable):
        weight_spectra(nn.LayerNorm(4))


def test_module_is_not_mutated_and_results_are_seeded() -> None:
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(30, 40), nn.Tanh(), nn.Linear(40, 30), nn.Linear(30, 40))
    model.train()
    before = copy.deepcopy(model.state_dict())
    a = weight_spectra(model, seed=2)
    b = weight_spectra(model, seed=2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
        assert v.dtype == torch.float32
    assert model.training and all(p.grad is None for p in model.parameters())
    assert [lay.traps for lay in a.layers] == [lay.traps for lay in b.layers]
    assert [lay.alpha for lay in a.layers] == [lay.alpha for lay in b.layers]
    arrays = a.to_arrays()
    assert arrays["weights_esd"].size == 30 + 30 + 30
    assert np.bincount(arrays["weights_esd_layer"]).tolist() == [30, 30, 30]
    d = a.to_dict()
    assert d["num_layers"] == 3 and len(d["layers"]) == 3
    assert d["averages"]["stable_rank"] == pytest.approx(
        np.mean([lay.stable_rank for lay in a.layers])
    )


def test_round_trip_through_json_and_arrays() -> None:
    from landscape.metrics.weight_spectra import WeightSpectra

    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(40, 30), nn.Linear(30, 4), nn.Linear(4, 1))
    ws = weight_spectra(model)
    d = json.loads(json.dumps(_jsonable(ws.to_dict())))  # nan → "nan", as in summary.json
    arrays = ws.to_arrays()
    back = WeightSpectra.from_dict(d, arrays["weights_esd"], arrays["weights_esd_layer"])
    assert json.dumps(_jsonable(back.to_dict())) == json.dumps(_jsonable(ws.to_dict()))
    for a, b in zip(ws.layers, back.layers, strict=True):
        np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    assert back.layers[2].note is not None and back.layers[1].power_law.note is not None


def test_numerically_zero_eigenvalues_stay_out_of_the_fit() -> None:
    g = torch.Generator().manual_seed(10)
    lam = torch.cat([_pareto(600, 2.0, g), torch.zeros(200, dtype=torch.float64)])
    w = _with_esd(lam, 1000, g)  # rank 600: 200 eigenvalues are rounding noise near 0
    lay = weight_spectra(_linear(w), traps=False).layers[0]
    assert lay.rank == 600 and lay.eigenvalues.size == 800
    assert lay.power_law.n_tail <= 600 and abs(lay.alpha - 2.0) < 0.1, lay.power_law
    assert weight_spectra(_linear(torch.randn(50, 20, generator=g))).layers[0].rank == 20
