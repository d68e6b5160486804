"""The sharp-vs-flat preset: does each metric rank large-batch SGD as the sharper minimum?

Both models are trained to the same training loss (0.05). Observed: λmax ranks them as
expected for every seed; ε-sharpness does not, because small-batch SGD stops on a slope
(‖∇L‖ ≈ 0.1–0.2 vs ≈ 0.02) and the first-order term ε‖∇L‖ dominates the ε-ball maximum.
"""

from __future__ import annotations

import pytest

from landscape.errors import ConfigError
from landscape.experiments.sharp_vs_flat import load_config, run_sharp_vs_flat

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def results():
    cfg = load_config("sharp_vs_flat")
    cfg["metrics"]["names"] = ["loss", "lambda_max", "eps_sharpness"]
    return run_sharp_vs_flat(cfg, seeds=SEEDS)


@pytest.mark.slow
def test_both_runs_reach_the_same_training_loss(results) -> None:
    assert [r.seed for r in results] == list(SEEDS)
    for res in results:
        for run in res.runs.values():
            assert run.train_loss <= 0.05 + 1e-9, (res.seed, run.name, run.train_loss)
            assert run.metrics.canonicalized
        assert res.runs["sharp"].epochs_run > res.runs["flat"].epochs_run


@pytest.mark.slow
def test_lambda_max_ranks_large_batch_sharper(results) -> None:
    for res in results:
        assert res.ranked_as_expected("lambda_max"), res.to_dict()


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="at equal training loss small-batch SGD stops where ‖∇L‖ is 5-8x larger, so the"
    " first-order term makes its ε-sharpness larger; reported, not tuned away",
)
def test_eps_sharpness_ranks_large_batch_sharper(results) -> None:
    assert all(res.ranked_as_expected("eps_sharpness") for res in results)


def test_config_errors() -> None:
    cfg = load_config("sharp_vs_flat")
    bad = dict(cfg, runs=cfg["runs"][:1])
    with pytest.raises(ConfigError, match="at least two"):
        load_config(bad)
    with pytest.raises(ConfigError, match="expected_sharper"):
        load_config(dict(cfg, expected_sharper="nope"))
    with pytest.raises(ConfigError, match=r"\[metrics\]"):
        load_config({k: v for k, v in cfg.items() if k != "metrics"})
