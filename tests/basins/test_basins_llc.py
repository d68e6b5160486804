import json
import math

import numpy as np
import pytest
import torch

from landscape.basins.aoyagi import deep_linear_lambda
from landscape.basins.llc import LLCConfig, estimate_llc, nll_scale
from landscape.errors import ConfigError


def test_regular_model_gives_half_the_dimension(make_bowl):
    # linear regression is regular: lambda = d/2 = 2 (3 weights + bias); sigma = data noise.
    # Four chains have a standard error of about 5% here, and the step size and minibatch
    # noise bias the estimate up by a few percent, so allow 20%.
    space, _ = make_bowl(n=1000)
    res = estimate_llc(space, config=LLCConfig(sigma=0.3))
    assert space.dim == 4
    assert abs(res.llc.mean - 2.0) < 0.2 * 2.0
    assert res.stable and res.llc.n == 4 and res.llc.stderr > 0
    assert res.grad_norm < 1e-6  # the least-squares solution is the minimum
    assert res.loss_trace.shape == (4, LLCConfig().draws)
    assert res.beta == pytest.approx(1 / math.log(1000))
    assert res.nll_scale == pytest.approx(1 / (2 * 0.09))  # mse·k/(2σ²) is the NLL
    # the result is a pure function of the seed
    again = estimate_llc(space, config=LLCConfig(sigma=0.3))
    assert again.llc.mean == res.llc.mean
    d = res.to_dict()
    assert d["llc"]["n"] == 4 and d["stable"] is True


def test_nll_scale_depends_on_the_loss(mlp_bundle, make_bowl):
    from landscape.engine import ParamSpace

    assert nll_scale(ParamSpace(mlp_bundle), 0.5) == 1.0  # cross-entropy is the NLL
    space, _ = make_bowl()
    assert nll_scale(space, 0.5) == pytest.approx(2.0)  # k/(2σ²) with k = 1


def test_divergence_is_flagged(make_bowl):
    space, _ = make_bowl(n=200)
    res = estimate_llc(space, config=LLCConfig(step_size=0.5, draws=40, burn_in=10, chains=2))
    assert not res.stable
    assert res.diverged.all()
    # every chain is dropped: no estimate, and the notes say why
    assert res.dropped.all() and res.dropped_chains == 2
    assert math.isnan(res.llc.mean) and res.llc.n == 0
    assert not res.trustworthy and any("every chain was dropped" in t for t in res.notes)
    assert res.to_dict()["llc"]["mean"] == "nan"


def test_result_keys_and_diagnostics(make_bowl):
    space, _ = make_bowl(n=1000)
    res = estimate_llc(space, config=LLCConfig(sigma=0.3, draws=400, burn_in=100))
    d = res.to_dict()
    keys = {"llc", "stable", "beta", "n", "grad_norm", "per_chain", "diverged", "drift"}
    keys |= {"config", "loss_at_minimum", "nll_scale", "mala_acceptance", "r_hat", "ess"}
    keys |= {"dropped_chains", "localization_scale", "tuned", "trustworthy", "notes"}
    assert keys <= set(d)
    json.dumps(d)  # JSON-ready
    assert 0.9 < res.mala_acceptance <= 1.0  # tiny steps on a 4-parameter bowl
    assert 0.99 < res.r_hat < 1.1 and res.ess > 100
    assert res.localization_scale == pytest.approx(10.0 * math.log(1000) / 1000)
    assert d["dropped_chains"] == 0 and d["tuned"] is False and "tuning" not in d
    # the eigenvalues of the loss Hessian (H/σ² in NLL units are far above h_γ)
    assert res.curvature_below_localization != res.curvature_below_localization  # not given
    with_eigs = estimate_llc(
        space,
        config=LLCConfig(sigma=0.3, draws=40, burn_in=10),
        hessian_eigenvalues=np.array([4.0, 1.0, 0.25, 1.0]),
    )
    assert with_eigs.curvature_below_localization == 0.0
    # the MALA check reuses the chain's own noise: turning it off leaves the draws alone
    off = estimate_llc(space, config=LLCConfig(sigma=0.3, draws=400, burn_in=100, mala_every=0))
    np.testing.assert_array_equal(off.loss_trace, res.loss_trace)
    assert math.isnan(off.mala_acceptance)


def test_bad_config(make_bowl):
    space, _ = make_bowl(n=50)
    for bad in (
        LLCConfig(step_size=0.0),
        LLCConfig(chains=0),
        LLCConfig(sigma=-1.0),
        LLCConfig(draws=2),
        LLCConfig(beta=0.0),
        LLCConfig(mala_every=-1),
    ):
        with pytest.raises(ConfigError):
            estimate_llc(space, config=bad)


@pytest.mark.slow
def test_calibration_on_deep_linear_networks(make_deep_linear):
    """Default SGLD settings against Aoyagi's exact lambda (MSE as Gaussian NLL, sigma = 1)."""
    settings = [([3, 4, 3], 1), ([4, 6, 6, 4], 2), ([6, 8, 5, 7], 2)]
    exact, est = [], []
    for widths, rank in settings:
        space = make_deep_linear(widths, rank, n=2000, sigma=1.0)
        res = estimate_llc(space)  # the defaults, fixed
        lam = deep_linear_lambda(widths, rank).value
        print(f"deep linear {widths} r={rank}: llc {res.llc.mean:.3f} ± {res.llc.stderr:.3f}")
        print(f"  exact {lam}, trustworthy {res.trustworthy}, notes {res.notes[2:]}")
        assert res.stable
        assert abs(res.llc.mean - lam) <= 0.15 * lam, (widths, rank, res.llc, lam)
        exact.append(lam)
        est.append(res.llc.mean)
    assert list(np.argsort(est)) == list(np.argsort(exact))
    torch.testing.assert_close(torch.tensor(exact), torch.tensor([4.5, 8.0, 16.5]))


@pytest.mark.parametrize(("globs", "dim"), [(["1.weight"], 3), (["1.bias"], 1)])
def test_the_llc_honours_a_parameter_selection(make_bowl, globs, dim):
    # the others held at the minimum, the selected block is still a regular model:
    # lambda = d'/2 for its d' parameters
    from landscape.engine import ParamSpace

    full, _ = make_bowl(n=1000)
    space = ParamSpace(full.bundle, params=globs)
    assert space.dim == dim
    res = estimate_llc(space, config=LLCConfig(sigma=0.3))
    assert abs(res.llc.mean - dim / 2) < 0.2 * dim / 2 + 0.05, res.llc
