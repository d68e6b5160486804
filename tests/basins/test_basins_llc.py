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
    assert res.nll_scale == pytest.approx(1 / 0.09)
    # the result is a pure function of the seed
    again = estimate_llc(space, config=LLCConfig(sigma=0.3))
    assert again.llc.mean == res.llc.mean
    d = res.to_dict()
    assert d["llc"]["n"] == 4 and d["stable"] is True


def test_nll_scale_depends_on_the_loss(mlp_bundle, make_bowl):
    from landscape.engine import ParamSpace

    assert nll_scale(ParamSpace(mlp_bundle), 0.5) == 1.0  # cross-entropy is the NLL
    space, _ = make_bowl()
    assert nll_scale(space, 0.5) == pytest.approx(4.0)


def test_divergence_is_flagged(make_bowl):
    space, _ = make_bowl(n=200)
    res = estimate_llc(space, config=LLCConfig(step_size=0.5, draws=40, burn_in=10, chains=2))
    assert not res.stable
    assert res.diverged.all()


def test_bad_config(make_bowl):
    space, _ = make_bowl(n=50)
    for bad in (
        LLCConfig(step_size=0.0),
        LLCConfig(chains=0),
        LLCConfig(sigma=-1.0),
        LLCConfig(draws=2),
        LLCConfig(beta=0.0),
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
        assert res.stable
        assert abs(res.llc.mean - lam) <= 0.15 * lam, (widths, rank, res.llc, lam)
        exact.append(lam)
        est.append(res.llc.mean)
    assert list(np.argsort(est)) == list(np.argsort(exact))
    torch.testing.assert_close(torch.tensor(exact), torch.tensor([4.5, 8.0, 16.5]))
