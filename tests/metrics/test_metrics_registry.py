"""The metric registry: one spec per name, its invariance column agrees with the report,
the generated docs table lists every metric, and precomputed curvature is reused."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest
import torch

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.errors import ConfigError
from landscape.hessian import top_eigenpairs
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.metrics import (
    DEFAULT_OPTIONS,
    METRICS,
    REGISTRY,
    MetricOptions,
    compute_metrics,
    frobenius,
    markdown_table,
    trace,
)
from landscape.metrics.registry import SPECS, MetricSpec, spec_of
from landscape.models import mlp, tiny_cnn

ROOT = Path(__file__).resolve().parents[2]
CHEAP = {
    "top_k": 3,
    "trace_matvecs": 9,
    "frobenius_probes": 4,
    "restarts": 1,
    "steps": 3,
    "average_samples": 4,
    "pac_samples": 4,
    "relative_matvecs": 9,
}


@pytest.fixture(scope="module")
def data():
    return load_data("digits", max_samples=60, batch_size=60, seed=0)


@pytest.fixture(scope="module")
def relu(data) -> ParamSpace:
    torch.manual_seed(0)
    return ParamSpace(ModelBundle.from_module(mlp(64, 4, 10), data))


@pytest.fixture(scope="module")
def cnn(data) -> ParamSpace:
    torch.manual_seed(0)
    return ParamSpace(ModelBundle.from_module(tiny_cnn(), data))


@pytest.fixture(scope="module")
def tanh(data) -> ParamSpace:
    torch.manual_seed(0)
    return ParamSpace(ModelBundle.from_module(mlp(64, 4, 10, activation="tanh"), data))


def test_every_metric_has_one_spec_in_report_order() -> None:
    assert tuple(s.name for s in REGISTRY) == METRICS
    assert set(SPECS) == set(METRICS) and len(SPECS) == len(REGISTRY)
    outputs = [o for s in REGISTRY for o in s.outputs]
    assert len(outputs) == len(set(outputs))
    for s in REGISTRY:
        assert isinstance(s, MetricSpec) and callable(s.fn)
        assert s.name in s.outputs and s.needs and all(s.needs)
        assert s.doc and "\n" not in s.doc and s.invariance.text
        with pytest.raises(dataclasses.FrozenInstanceError):
            s.name = "x"  # type: ignore[misc]
    assert spec_of("test_accuracy").name == "generalization_gap"
    assert spec_of("pac_bayes_bound").name == "pac_bayes_sigma"


def test_options_keep_their_names_defaults_and_errors() -> None:
    assert DEFAULT_OPTIONS == {
        "top_k": 10,
        "tol": 1e-6,
        "max_iter": None,
        "exact_max_params": 1000,
        "trace_matvecs": 99,
        "frobenius_probes": 30,
        "restarts": 3,
        "steps": 20,
        "adaptive_radius": None,
        "adaptive_eta": 0.0,
        "average_samples": 50,
        "average_scale": "none",
        "pac_threshold": 0.1,
        "pac_quantity": "loss",
        "pac_samples": 20,
        "fisher": "empirical",
        "layer": None,
        "relative_exact": None,
        "relative_matvecs": 99,
        "strategy": "auto",
    }
    opts = MetricOptions.from_kwargs({"top_k": 4, "fisher": "model"})
    assert (opts.top_k, opts.fisher, opts.tol) == (4, "model", 1e-6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.top_k = 5  # type: ignore[misc]
    for bad, msg in [
        ({"bogus": 1, "alpha": 2}, "unknown metrics option 'alpha'; use one of top_k, tol,"),
        ({"trace_matvecs": 2}, "trace_matvecs must be an integer ≥ 3, got 2."),
        ({"average_samples": 1}, "average_samples must be an integer ≥ 2, got 1."),
        ({"adaptive_eta": float("inf")}, "adaptive_eta must be a number ≥ 0, got inf."),
        ({"tol": "abc"}, "tol must be a number, got 'abc'."),
    ]:
        with pytest.raises(ConfigError) as exc:
            MetricOptions.from_kwargs(bad)
        assert msg in str(exc.value) and "\n" not in str(exc.value)


def _table_rules() -> dict[str, str]:
    """Metric name → the invariance column of the generated table."""
    rules = {}
    for line in markdown_table().splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rules[cells[0].strip("`")] = cells[2]
    return rules


def _expected(rule: str, options: MetricOptions, canonicalized: bool) -> bool:
    """Read the invariance column as a user would."""
    if rule == "always":
        return True
    if rule.startswith("when canonicalized"):
        return canonicalized
    head = rule.removeprefix("when ").split(";")[0]
    option, value = (p.strip() for p in head.split("="))
    return getattr(options, option) == ast.literal_eval(value) or canonicalized


@pytest.mark.parametrize(
    ("model", "extra", "canonicalized"),
    [
        ("relu", {}, True),
        ("cnn", {}, False),
        ("cnn", {"adaptive_eta": 0.1, "average_scale": "element"}, False),
    ],
)
def test_invariance_column_matches_the_report(request, model, extra, canonicalized) -> None:
    space = request.getfixturevalue(model)
    r = compute_metrics(space, seed=0, **CHEAP, **extra)
    assert r.canonicalized is canonicalized and not r.skipped
    assert set(r.values) == {o for s in REGISTRY for o in s.outputs}
    options = MetricOptions(**CHEAP, **extra)
    rules = _table_rules()
    for name, flag in r.invariant.items():
        assert flag is _expected(rules[spec_of(name).name], options, canonicalized), name
    if not canonicalized:
        always = {"loss", "accuracy", "test_loss", "test_accuracy", "generalization_gap"}
        always |= {"fisher_rao_norm"}
        if extra.get("adaptive_eta", 0) == 0:
            always.add("adaptive_sharpness")
        if extra.get("average_scale") == "element":
            always.add("average_sharpness")
        assert {k for k, v in r.invariant.items() if v} == always


def test_generated_table_lists_every_metric_and_the_docs_use_it() -> None:
    table = markdown_table()
    lines = table.splitlines()
    assert len(lines) == len(METRICS) + 2
    assert [ln.split(" | ")[0].removeprefix("| ").strip("`") for ln in lines[2:]] == list(METRICS)
    assert all(len(re.findall(r"(?<!\\)\|", ln)) == 6 for ln in lines)  # 5 cells, no stray |
    page = (ROOT / "docs/metrics.md").read_text(encoding="utf-8")
    assert "<!-- metrics-table -->" in page
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("_gallery_hook", ROOT / "docs/hooks/gallery.py")
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    rendered = hook.metrics_table(page)
    assert table in rendered and "<!-- metrics-table -->" not in rendered


def test_precomputed_curvature_is_reused_only_at_the_model_point(tanh, relu) -> None:
    def measured(space: ParamSpace, k: int) -> dict:
        op = CurvatureOperator(space, space.theta0.detach())
        return {
            "top_eigenpairs": top_eigenpairs(op, k, seed=1),
            "trace": trace(op, num_matvecs=9, seed=2),
            "frobenius": frobenius(op, num_probes=4, seed=3),
        }

    names = ["lambda_max", "trace", "frobenius", "effective_rank"]
    pre = measured(tanh, 3)
    r = compute_metrics(tanh, names=names, precomputed=pre, top_k=3, exact_max_params=0)
    assert r.details["reused"] == names and r.details["hessian_matvecs"] == 0
    assert r.values["lambda_max"] == float(pre["top_eigenpairs"].values[0])
    assert r.values["trace"] is pre["trace"] and r.values["frobenius"] is pre["frobenius"]
    assert r.details["effective_rank_spectrum"] == "top-3"
    # too few pairs for top_k: λmax is recomputed, trace and Frobenius still reused
    r = compute_metrics(tanh, names=names[:3], precomputed=measured(tanh, 2), top_k=3)
    assert r.details["reused"] == ["trace", "frobenius"] and r.details["hessian_matvecs"] > 0
    # a given theta or a canonicalized point: nothing is reused
    th = tanh.theta0.detach().clone()
    r = compute_metrics(tanh, names=["trace"], theta=th, precomputed=pre, trace_matvecs=9)
    assert "reused" not in r.details and r.details["hessian_matvecs"] == 9
    r = compute_metrics(relu, names=["trace"], precomputed=measured(relu, 3), trace_matvecs=9)
    assert r.canonicalized and "reused" not in r.details


def test_lambda_max_and_effective_rank_share_one_lanczos_run(relu) -> None:
    one = compute_metrics(relu, names=["lambda_max"], top_k=3)
    both = compute_metrics(
        relu, names=["lambda_max", "effective_rank"], top_k=3, exact_max_params=0
    )
    assert one.details["hessian_matvecs"] == both.details["hessian_matvecs"] > 0
    assert one.values["lambda_max"] == both.values["lambda_max"]
    assert both.details["top_eigenvalues"] == one.details["top_eigenvalues"]
