import numpy as np
import pytest

from landscape.errors import ConfigError
from landscape.experiments.compression import CompressionConfig, load_config, noisy_labels
from landscape.stats import (
    bootstrap_mean_ci,
    cohens_d,
    holm,
    stratified_spearman,
)


def test_holm_matches_hand_computation():
    p = [0.01, 0.04, 0.03, 0.5, float("nan")]
    adj = holm(p)
    # sorted: 0.01*4, 0.03*3, 0.04*2 (monotone), 0.5*1
    np.testing.assert_allclose(adj[:4], [0.04, 0.09, 0.09, 0.5])
    assert np.isnan(adj[4])


def test_stratified_spearman():
    rng = np.random.default_rng(0)
    x = np.repeat([0.0, 0.5, 1.0], 6)
    strata = np.tile([0, 1], 9)
    y = 3 * x + 10 * strata + 0.1 * rng.standard_normal(18)
    rho, p, n = stratified_spearman(x, y, strata, permutations=999)
    assert rho > 0.8 and p <= 0.002 and n == 18
    # shuffled labels: no association
    rho0, p0, _ = stratified_spearman(x, rng.permutation(y), strata, permutations=999)
    assert abs(rho0) < 0.6 and p0 > 0.01
    assert np.isnan(stratified_spearman([1, 1, 1], [1, 2, 3], [0, 0, 0])[0])


def test_bootstrap_and_effect_size():
    m, lo, hi = bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0, float("nan")], seed=0)
    assert m == 2.5 and 1.0 <= lo < m < hi <= 4.0
    assert cohens_d([0.0, 2.0], [2.0, 4.0]) == pytest.approx(2 / np.sqrt(2))


def test_label_noise_and_config():
    import torch

    y = torch.arange(200) % 10
    z = noisy_labels(y, 0.5, 10, seed=3)
    changed = int((z != y).sum())
    assert 70 <= changed <= 100  # half are redrawn, a tenth of those land on the same label
    assert torch.equal(noisy_labels(y, 0.5, 10, seed=3), z)
    assert torch.equal(noisy_labels(y, 0.0, 10, seed=3), y)
    default = load_config("default")
    assert default.label_noise == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert len(default.widths) >= 2 and default.label_draws >= 2
    assert default.arms == ("to_loss", "matched_steps") and default.canonicalize
    assert default.basins.llc.auto  # the default preset tunes the SGLD per network
    assert set(default.datasets) == {"digits", "mnist1d"}
    assert load_config("gpu").seeds >= 50
    with pytest.raises(ConfigError):
        CompressionConfig.from_dict({"seedz": 3})
    with pytest.raises(ConfigError):
        CompressionConfig.from_dict({"label_noise": [1.5]})
    with pytest.raises(ConfigError):
        load_config("fast")
    with pytest.raises(ConfigError, match="seeds_per_label_draw"):
        CompressionConfig.from_dict({"seeds": 5, "seeds_per_label_draw": 2})
    with pytest.raises(ConfigError, match="arms"):
        CompressionConfig.from_dict({"arms": ["to_loss", "longer"]})
    with pytest.raises(ConfigError, match="basins.measures"):
        CompressionConfig.from_dict({"basins": {"measures": ["llc"]}})


def test_config_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(
        '[compression]\ndatasets = ["digits"]\nwidths = [8, 16, 32]\nseeds = 4\n'
        "[compression.basins.llc]\nchains = 2\n"
    )
    cfg = load_config(config_file=path)
    assert cfg.widths == (8, 16, 32) and cfg.seeds == 4 and cfg.basins.llc.chains == 2
    assert cfg.basins.llc.step_size == 1e-4  # untouched defaults
    again = CompressionConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with pytest.raises(ConfigError):
        load_config(config_file=tmp_path / "missing.toml")
