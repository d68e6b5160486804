"""Bad input: one-line ConfigErrors; unanalysable models warn unless canonicalization is forced."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape.engine import ParamSpace
from landscape.errors import ConfigError
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.metrics import (
    adaptive_sharpness,
    analyse,
    average_sharpness,
    canonicalize,
    compute_metrics,
    eps_sharpness,
    pac_bayes_sigma,
    relative_flatness,
)
from landscape.models import mlp, tiny_cnn


@pytest.fixture(scope="module")
def data():
    return load_data("digits", max_samples=40, batch_size=40, seed=0)


@pytest.fixture(scope="module")
def relu(data) -> ParamSpace:
    torch.manual_seed(0)
    return ParamSpace(ModelBundle.from_module(mlp(64, 4, 10), data))


@pytest.fixture(scope="module")
def tanh(data) -> ParamSpace:
    torch.manual_seed(0)
    return ParamSpace(ModelBundle.from_module(mlp(64, 4, 10, activation="tanh"), data))


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    for n in needles:
        assert n in msg, (n, msg)


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        ({"names": ["lambda_max", "bogus"]}, ("unknown metric 'bogus'", "lambda_max")),
        ({"names": []}, ("no metric chosen",)),
        ({"radius": 0.0}, ("radius", "positive")),
        ({"radius": -1.0}, ("radius",)),
        ({"sigma": 0.0}, ("sigma", "positive")),
        ({"sigma": float("nan")}, ("sigma",)),
        ({"colour": "red"}, ("unknown metrics option 'colour'",)),
        ({"top_k": 0}, ("top_k",)),
        ({"average_scale": "layer"}, ("average_scale",)),
        ({"pac_quantity": "nll"}, ("pac_quantity",)),
        ({"fisher": "true"}, ("fisher",)),
        ({"canonicalize": "yes"}, ("canonicalize",)),
    ],
)
def test_compute_metrics_rejects_bad_input(relu, kwargs, needles) -> None:
    with pytest.raises(ConfigError) as exc:
        compute_metrics(relu, **kwargs)
    _one_line(exc, *needles)


def test_metric_functions_reject_bad_input(relu) -> None:
    for call, needle in [
        (lambda: eps_sharpness(relu, radius=0), "radius"),
        (lambda: adaptive_sharpness(relu, radius=0.1, eta=-1), "eta"),
        (lambda: average_sharpness(relu, sigma=-0.1), "sigma"),
        (lambda: average_sharpness(relu, num_samples=1), "num_samples"),
        (lambda: pac_bayes_sigma(relu, threshold=0), "threshold"),
        (lambda: eps_sharpness(relu, torch.zeros(3)), "theta"),
        (lambda: eps_sharpness(relu, split="valid"), "split"),
        (lambda: relative_flatness(relu, layer="nope"), "no 2-D weight"),
    ]:
        with pytest.raises(ConfigError) as exc:
            call()
        _one_line(exc, needle)


def test_unanalysable_models_warn_by_default_and_fail_when_forced(tanh, data) -> None:
    links, _, reason = analyse(tanh)
    assert links is None and "Tanh" in reason
    r = compute_metrics(tanh, names=["loss", "lambda_max"], top_k=1)
    assert not r.canonicalized and not r.invariant["lambda_max"] and r.invariant["loss"]
    assert any("not canonicalized" in w and "Tanh" in w for w in r.warnings)
    with pytest.raises(ConfigError) as exc:
        compute_metrics(tanh, names=["loss"], canonicalize=True)
    _one_line(exc, "cannot canonicalize", "Tanh", "--no-canonicalize")
    torch.manual_seed(0)
    bn = ParamSpace(ModelBundle.from_module(tiny_cnn(), data))
    with pytest.raises(ConfigError) as exc:
        canonicalize(bn)
    _one_line(exc, "BatchNorm2d")

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(64, 64)
            self.b = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.flatten(1)
            return self.b(torch.relu(self.a(x)) + x)

    res = ParamSpace(ModelBundle.from_module(Residual(), data))
    assert "not a plain nn.Sequential" in analyse(res)[2]
    r = compute_metrics(res, names=["loss"])
    assert not r.canonicalized and r.warnings


def test_report_dict_is_the_summary_section(relu) -> None:
    r = compute_metrics(relu, names=["loss", "accuracy", "trace"], trace_matvecs=6)
    d = r.to_dict()
    assert set(d) >= {"loss", "accuracy", "trace", "canonicalized", "invariant", "warnings"}
    assert set(d["trace"]) == {"mean", "stderr", "n", "method"}
    assert isinstance(d["loss"], float) and d["canonicalized"] is True
    assert d["invariant"] == {"loss": True, "accuracy": True, "trace": True}
    assert d["settings"]["radius"] == 0.05 and d["settings"]["sigma"] == 0.01


def test_dead_units_are_reported(data) -> None:
    torch.manual_seed(0)
    model = mlp(64, 8, 10)
    with torch.no_grad():
        model[3].weight[:, 2] = 0.0  # unit 2 feeds nothing: its scale is not identifiable
    space = ParamSpace(ModelBundle.from_module(model, data))
    r = compute_metrics(space, names=["loss"])
    assert r.canonicalized and any("1 dead hidden unit" in w for w in r.warnings)
    assert r.details["canonicalization"]["dead_units"] == 1
