"""The comparison library on fixture run directories with analytic contents."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

from landscape.compare import (
    build_table,
    check_comparable,
    compare_runs,
    curve,
    density,
    grid2d,
    kendall_tau_b,
    load_run,
    load_runs,
    rank_correlation,
    spearman_rho,
    write_comparison,
)
from landscape.errors import ConfigError, RunDirError

# -- loading and validation ----------------------------------------------------------


def test_load_run_reads_summary_and_arrays(fake_runs):
    run = load_run(fake_runs[0])
    assert run.name == "sgd_b16"
    assert run.has_surface and run.has_density and run.has_test
    assert run.surface_dims == ("alpha", "beta")
    assert run.architecture == ("landscape.models:digits_cnn", 1000)


def test_missing_summary_names_the_fix(tmp_path, fake_runs):
    (fake_runs[0] / "summary.json").unlink()
    with pytest.raises(RunDirError, match=r"no summary\.json.*landscape scan"):
        load_run(fake_runs[0])


def test_broken_summary_is_refused(fake_runs):
    (fake_runs[1] / "summary.json").write_text('{"loss": 0.1, "hess')
    with pytest.raises(RunDirError, match=r"broken.*rerun `landscape scan"):
        load_run(fake_runs[1])


@pytest.mark.parametrize("version", [0, None])
def test_older_format_is_refused(fake_runs, version):
    cfg_path = fake_runs[0] / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if version is None:
        del cfg["format_version"]
    else:
        cfg["format_version"] = version
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(RunDirError, match=r"older landscape.*rerun `landscape scan"):
        load_run(fake_runs[0])


def test_newer_format_asks_for_upgrade(fake_runs):
    cfg_path = fake_runs[0] / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["format_version"] = 99
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(RunDirError, match="upgrade"):
        load_run(fake_runs[0])


def test_scan_without_hessian_is_refused(fake_runs):
    p = fake_runs[2] / "summary.json"
    s = json.loads(p.read_text())
    del s["hessian"]
    s["stages_done"] = ["evaluate"]
    p.write_text(json.dumps(s))
    with pytest.raises(RunDirError, match=r"without its hessian section.*--resume"):
        load_run(fake_runs[2])
    msg = ""
    try:
        load_run(fake_runs[2])
    except RunDirError as exc:
        msg = str(exc)
    assert "\n" not in msg


def test_missing_dir_and_duplicates(tmp_path, fake_runs):
    with pytest.raises(RunDirError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(RunDirError, match="given twice"):
        load_runs([fake_runs[0], fake_runs[0]])


def test_clashing_names_get_parent_prefix(tmp_path, make_run_fn):
    a = make_run_fn(tmp_path / "a" / "run", lam=1.0, gap=0.1)
    b = make_run_fn(tmp_path / "b" / "run", lam=2.0, gap=0.2)
    assert [r.name for r in load_runs([a, b])] == ["a/run", "b/run"]


# -- comparability -------------------------------------------------------------------


def test_comparable_runs_pass(fake_runs):
    runs = load_runs(fake_runs)
    c = check_comparable(runs)
    assert c.comparable and c.same_architecture and c.surfaces and not c.forced


def test_one_run_is_refused(fake_runs):
    with pytest.raises(ConfigError, match="at least two runs"):
        check_comparable(load_runs(fake_runs[:1]))


@pytest.mark.parametrize(
    ("kw", "label"),
    [
        ({"config_overrides": {"max_samples": 500}}, "--max-samples"),
        ({"config_overrides": {"data": "mnist1d"}}, "data"),
        ({"config_overrides": {"loss": "mse"}}, "loss"),
        ({"scan_overrides": {"trace_matvecs": 99}}, "trace-matvecs"),
        ({"scan_overrides": {"slq_runs": 5}}, "SLQ probe count"),
        ({"scan_overrides": {"seed": 3}}, "seed"),
        ({"scan_overrides": {"surface_range": 2.0}}, "surface range"),
    ],
)
def test_incomparable_setting_is_named(tmp_path, make_run_fn, kw, label):
    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1)
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2, **kw)
    runs = load_runs([a, b])
    with pytest.raises(ConfigError, match=r"not comparable: .*" + label + r".*--force") as ei:
        check_comparable(runs)
    assert "\n" not in str(ei.value)
    forced = check_comparable(runs, force=True)
    assert forced.forced and not forced.comparable
    assert any(label in d.describe() for d in forced.differences)


def test_surface_normalization_difference(tmp_path, make_run_fn):
    import xarray as xr

    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1)
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2)
    s = json.loads((b / "summary.json").read_text())
    s["surface"]["normalization"] = "layer"
    (b / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ConfigError, match="surface normalization"):
        check_comparable(load_runs([a, b]))
    # without surfaces the normalization does not matter
    assert check_comparable(load_runs([a, b]), surfaces=False).comparable
    with xr.open_dataset(a / "results.nc", engine="h5netcdf") as ds:
        assert ds.attrs["surface_normalization"] == "filter"


def test_grid_difference_is_refused(tmp_path, make_run_fn):
    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1, grid=(11, 11))
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2, grid=(9, 9))
    with pytest.raises(ConfigError, match=r"surface grid"):
        check_comparable(load_runs([a, b]))
    c = make_run_fn(tmp_path / "c", lam=2.0, gap=0.2, grid=(11,))
    with pytest.raises(ConfigError, match=r"different axes.*--no-surfaces"):
        check_comparable(load_runs([a, c]))


def test_mixed_architectures_scalars_only(tmp_path, make_run_fn):
    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1)
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2, num_params=5000, factory="m:mlp")
    runs = load_runs([a, b])
    with pytest.raises(ConfigError, match=r"different architectures.*surfaces need one") as ei:
        check_comparable(runs)
    assert "--no-surfaces" in str(ei.value)
    # force does not make surfaces of different parameter spaces comparable
    with pytest.raises(ConfigError, match="different architectures"):
        check_comparable(runs, force=True)
    c = check_comparable(runs, surfaces=False)
    assert not c.same_architecture and not c.surfaces and c.comparable
    assert any("scalar metrics" in n for n in c.notes)
    cmp = compare_runs([a, b], surfaces=False)
    assert cmp.table.row("lambda_max").ranks == (1, 2)


def test_run_without_surface_is_noted(tmp_path, make_run_fn):
    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1)
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2, surface=False)
    c = check_comparable(load_runs([a, b]))
    assert not c.surfaces
    assert any("no surface stored for b" in n for n in c.notes)


# -- the table -----------------------------------------------------------------------


def test_table_values_ranks_and_errors(fake_runs):
    t = build_table(load_runs(fake_runs), n_boot=500)
    lam = t.row("lambda_max")
    np.testing.assert_allclose(lam.means, [2.0, 5.0, 9.0, 14.0])
    assert lam.ranks == (1, 2, 3, 4) and lam.role == "sharpness"
    assert lam.values[0].method == "lanczos residual"
    tr = t.row("trace")
    np.testing.assert_allclose(tr.means, [6.0, 15.0, 27.0, 42.0])
    np.testing.assert_allclose(tr.stderrs, 0.05 * tr.means)
    np.testing.assert_allclose(t.row("generalization_gap").means, [0.1, 0.2, 0.35, 0.5])
    assert t.row("generalization_gap").ranks == (1, 2, 3, 4)
    acc = t.row("accuracy").values[0]
    assert acc.stderr == pytest.approx(math.sqrt(0.98 * 0.02 / 240))
    assert t.row("loss").ranks == (None,) * 4
    assert t.row("lambda_min").means[0] == pytest.approx(-0.02)
    assert t.keys[:5] == ("loss", "accuracy", "test_loss", "test_accuracy", "generalization_gap")


def test_correlations_with_gap_are_honest_for_four_runs(fake_runs):
    t = build_table(load_runs(fake_runs), n_boot=500, seed=1)
    c = t.correlation("lambda_max")
    assert c is not None and c.n == 4
    assert c.kendall_tau == pytest.approx(1.0) and c.spearman_rho == pytest.approx(1.0)
    # exact permutation test: only the identity ordering reaches |τ| = 1 on each side
    assert c.kendall_p == pytest.approx(2 / 24) and c.min_p == pytest.approx(2 / 24)
    assert not c.significant
    assert "no correlation can be significant" in c.note
    # a bootstrap over 4 perfectly ordered runs is degenerate ([1, 1]); it is flagged
    assert not c.ci_reliable and "too few runs for a bootstrap interval" in c.note
    lo, hi = c.kendall_ci
    assert -1.0 <= lo <= hi <= 1.0 and hi == pytest.approx(1.0)
    assert c.expected_sign == 1
    # trace carries a stderr: the bootstrap jitters it, the point estimate is unchanged
    assert t.correlation("trace").kendall_tau == pytest.approx(1.0)


def test_flatness_metric_ranks_descending(tmp_path, make_run_fn):
    paths = [
        make_run_fn(
            tmp_path / f"r{i}",
            lam=lam,
            gap=gap,
            metrics={
                "pac_bayes_sigma": {"mean": 1.0 / lam, "stderr": 0.0, "n": 5, "method": "bisect"},
                "eps_sharpness": {"mean": lam / 10, "stderr": 0.001, "n": 1},
                "fisher_rao": 2 * lam,
                "loss": 0.05,
                "generalization_gap": gap,
                "canonicalized": False,
                "invariant": {"eps_sharpness": False},
                "warnings": ["a caveat"],
                "details": {"hessian_matvecs": 40},
                "settings": {"radius": 0.05, "sigma": 0.01, "names": ["eps_sharpness"]},
                "timing": {"eps_sharpness": 0.1},
            },
        )
        for i, (lam, gap) in enumerate([(3.0, 0.3), (1.0, 0.1), (2.0, 0.2)])
    ]
    t = build_table(load_runs(paths), n_boot=200)
    pb = t.row("metrics.pac_bayes_sigma")
    assert pb.role == "flatness" and pb.ranks == (3, 1, 2)
    assert t.row("metrics.eps_sharpness").ranks == (3, 1, 2)
    assert t.row("metrics.fisher_rao").means.tolist() == [6.0, 2.0, 4.0]
    assert "metrics.canonicalized" not in t.keys and "metrics.invariant" not in t.keys
    # the metrics section's copies of the evaluation numbers and its bookkeeping stay out
    assert not [k for k in t.keys if k.startswith(("metrics.loss", "metrics.generalization"))]
    assert not [k for k in t.keys if k.split(".")[-1] in ("warnings", "details", "timing")]
    assert check_comparable(load_runs(paths)).comparable
    assert t.correlation("metrics.pac_bayes_sigma").kendall_tau == pytest.approx(-1.0)
    assert t.correlation("metrics.pac_bayes_sigma").expected_sign == -1


def test_no_test_data_means_no_correlations(tmp_path, make_run_fn):
    paths = [make_run_fn(tmp_path / f"r{i}", lam=1.0 + i, gap=0.0, test=False) for i in range(3)]
    t = build_table(load_runs(paths), n_boot=100)
    assert t.correlations == ()
    assert "generalization_gap" not in t.keys
    assert t.row("lambda_max").ranks == (1, 2, 3)


def test_ties_share_the_smaller_rank(tmp_path, make_run_fn):
    paths = [make_run_fn(tmp_path / f"r{i}", lam=v, gap=0.1 * i) for i, v in enumerate([2, 1, 2])]
    assert build_table(load_runs(paths), n_boot=50).row("lambda_max").ranks == (2, 1, 2)


# -- statistics ----------------------------------------------------------------------


def test_kendall_and_spearman_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 5, 9).astype(float)
        y = rng.integers(0, 5, 9).astype(float)
        if len(set(x)) < 2 or len(set(y)) < 2:
            continue
        assert float(kendall_tau_b(x, y)) == pytest.approx(st.kendalltau(x, y).statistic)
        assert float(spearman_rho(x, y)) == pytest.approx(st.spearmanr(x, y).statistic)
    assert math.isnan(float(kendall_tau_b(np.ones(4), np.arange(4.0))))


def test_exact_permutation_p_matches_scipy_exact_kendall():
    x = np.arange(7.0)
    y = np.array([0.1, 0.5, 0.2, 0.9, 0.7, 1.3, 1.1])
    r = rank_correlation(x, y, n_boot=200)
    ref = st.kendalltau(x, y, method="exact")
    assert r.kendall_tau == pytest.approx(ref.statistic)
    assert r.kendall_p == pytest.approx(ref.pvalue)
    assert r.p_method == "exact permutation"


def test_monte_carlo_permutation_and_significance_with_many_runs():
    rng = np.random.default_rng(3)
    x = np.arange(14.0)
    y = x + rng.normal(0, 1.5, 14)
    r = rank_correlation(x, y, n_boot=1000, permutations=4000, seed=2)
    ref = st.kendalltau(x, y)
    assert r.p_method == "Monte Carlo permutation"
    assert r.kendall_tau == pytest.approx(ref.statistic)
    assert r.significant and r.kendall_p < 0.01 and ref.pvalue < 0.01
    assert r.ci_reliable
    assert r.kendall_ci[0] < r.kendall_tau < r.kendall_ci[1] or r.kendall_ci[1] == 1.0
    noise = rank_correlation(x, rng.permutation(14).astype(float), n_boot=500, seed=2)
    assert noise.kendall_ci[0] < 0 < noise.kendall_ci[1]


def test_bootstrap_is_seeded_and_jitter_widens():
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.1, 0.25, 0.2, 0.4, 0.5, 0.45]
    a = rank_correlation(x, y, seed=5, n_boot=800)
    b = rank_correlation(x, y, seed=5, n_boot=800)
    assert a == b
    noisy = rank_correlation(x, y, x_err=[3.0] * 6, seed=5, n_boot=800)
    assert noisy.kendall_tau == a.kendall_tau
    assert (noisy.kendall_ci[1] - noisy.kendall_ci[0]) > (a.kendall_ci[1] - a.kendall_ci[0])


def test_too_few_runs_gives_nan_with_reason():
    r = rank_correlation([1.0, 2.0], [0.1, 0.2])
    assert r.n == 2 and math.isnan(r.kendall_tau) and "at least 3" in r.note
    r = rank_correlation([1.0, 2.0, float("nan"), 4.0], [0.1, 0.2, 0.3, float("nan")])
    assert r.n == 2


# -- arrays --------------------------------------------------------------------------


def test_curve_grid_and_density_match_the_closed_form(tmp_path, make_run_fn):
    run = load_run(make_run_fn(tmp_path / "r", lam=4.0, gap=0.1, loss=0.2))
    cv = curve(run)
    np.testing.assert_allclose(cv.values, 0.2 + 0.5 * 4.0 * cv.alpha**2)
    assert cv.source == "2d centre row"
    g = grid2d(run)
    a, b = np.meshgrid(g.alpha, g.beta, indexing="ij")
    np.testing.assert_allclose(g.values, 0.2 + 0.5 * (4.0 * a**2 + 1.0 * b**2))
    d = density(run)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0)
    one = load_run(make_run_fn(tmp_path / "r1", lam=4.0, gap=0.1, loss=0.2, grid=(9,)))
    c1 = curve(one)
    assert c1.source == "1d" and grid2d(one) is None
    np.testing.assert_allclose(c1.values, 0.2 + 2.0 * c1.alpha**2)
    three = load_run(make_run_fn(tmp_path / "r3", lam=4.0, gap=0.1, grid=(5, 5, 5)))
    np.testing.assert_allclose(grid2d(three).values[:, 2], 0.05 + 2.0 * grid2d(three).alpha ** 2)
    assert curve(three, "test_loss").values[2] == pytest.approx(0.05 + 0.1)


# -- writers -------------------------------------------------------------------------


def test_writers_round_trip(tmp_path, fake_runs):
    cmp = compare_runs(fake_runs, n_boot=200)
    out = tmp_path / "cmp"
    paths = write_comparison(cmp, out)
    rows = list(csv.DictReader(io.StringIO(paths["table.csv"].read_text())))
    assert [r["run"] for r in rows] == ["sgd_b16", "sgd_b64", "sgd_b256", "adam_b64"]
    assert [float(r["lambda_max"]) for r in rows] == [2.0, 5.0, 9.0, 14.0]
    assert [int(r["lambda_max_rank"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[0]["trace_stderr"]) == pytest.approx(0.3)
    data = json.loads(paths["table.json"].read_text())
    assert data["kind"] == "comparison" and data["check"]["comparable"]
    lam = next(m for m in data["metrics"] if m["key"] == "lambda_max")
    assert lam["ranks"] == [1, 2, 3, 4]
    corr = {c["metric"]: c for c in data["correlations"]}
    assert corr["lambda_max"]["kendall_tau"] == pytest.approx(1.0)
    assert corr["lambda_max"]["significant"] is False
    cc = list(csv.DictReader(io.StringIO(paths["correlations.csv"].read_text())))
    assert {r["metric"] for r in cc} >= {"lambda_max", "trace", "frobenius"}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_compare_runs_rejects_incomparable_without_force(tmp_path, make_run_fn):
    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1)
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2, config_overrides={"max_samples": 100})
    with pytest.raises(ConfigError, match="max-samples"):
        compare_runs([a, b])
    cmp = compare_runs([a, b], force=True, n_boot=50)
    assert cmp.check.forced
    assert cmp.to_dict()["check"]["differences"][0]["key"] == "max_samples"


def test_paths_are_portable(fake_runs):
    cmp = compare_runs([Path(p) for p in fake_runs], n_boot=50)
    assert json.dumps(cmp.to_dict())  # everything is JSON-serializable


def test_metric_settings_must_agree(tmp_path, make_run_fn):
    def metrics(radius: float, names: list[str]) -> dict:
        return {
            "eps_sharpness": {"mean": 0.1, "stderr": 0.0, "n": 1},
            "canonicalized": True,
            "settings": {"radius": radius, "sigma": 0.01, "names": names},
        }

    a = make_run_fn(tmp_path / "a", lam=1.0, gap=0.1, metrics=metrics(0.05, ["eps_sharpness"]))
    b = make_run_fn(tmp_path / "b", lam=2.0, gap=0.2, metrics=metrics(0.05, ["trace"]))
    assert check_comparable(load_runs([a, b])).comparable  # chosen names may differ
    c = make_run_fn(tmp_path / "c", lam=2.0, gap=0.2, metrics=metrics(0.1, ["eps_sharpness"]))
    with pytest.raises(ConfigError, match=r"metric settings"):
        check_comparable(load_runs([a, c]))


def test_canonicalized_spectral_metrics_are_labelled(tmp_path, make_run_fn):
    def metrics(lam: float) -> dict:
        return {"lambda_max": lam / 3, "canonicalized": True, "eps_sharpness": lam / 10}

    paths = [make_run_fn(tmp_path / f"r{i}", lam=v, gap=0.1 * v, metrics=metrics(v))
             for i, v in enumerate((1.0, 2.0, 3.0))]  # fmt: skip
    t = build_table(load_runs(paths), n_boot=50)
    assert t.row("metrics.lambda_max").label == "λmax (canonicalized)"
    from landscape.viz.compare_plots import scatter_metrics

    keys = scatter_metrics(t)
    assert keys.index("metrics.eps_sharpness") < keys.index("metrics.lambda_max")
