"""ModelBundle: a private eval-mode copy; check_fit names data/model/loss mismatches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.errors import ConfigError, DataError
from landscape.io.data import DataSource, load_data
from landscape.io.losses import resolve_loss
from landscape.io.model_bundle import ModelBundle


def _data(x: torch.Tensor, y: torch.Tensor) -> DataSource:
    return DataSource("test", x, y, batch_size=8)


def test_private_copy_in_eval_mode(small_mlp) -> None:
    small_mlp.train()
    d = load_data("digits", max_samples=20)
    b = ModelBundle.from_module(small_mlp, d, dtype="float64")
    assert b.module is not small_mlp and not b.module.training and small_mlp.training
    assert b.dtype == torch.float64 and next(small_mlp.parameters()).dtype == torch.float32
    assert b.loss.name == "cross_entropy" and b.loss.classification


def test_data_shape_does_not_fit(small_mlp, one_line) -> None:
    with pytest.raises(DataError) as ei:
        ModelBundle.from_module(small_mlp, _data(torch.zeros(10, 7), torch.zeros(10).long()))
    one_line(ei.value, "(7,)", "does not fit", "--data")


def test_labels_out_of_range(small_mlp, one_line) -> None:
    with pytest.raises(DataError) as ei:
        ModelBundle.from_module(small_mlp, _data(torch.zeros(10, 64), torch.full((10,), 12)))
    one_line(ei.value, "[12, 12]", "10 outputs", "--loss mse")
    with pytest.raises(DataError) as ei:
        ModelBundle.from_module(small_mlp, _data(torch.zeros(10, 64), torch.full((10,), -1)))
    one_line(ei.value, "[-1, -1]")
    d = DataSource(
        "t",
        torch.zeros(10, 64),
        torch.zeros(10).long(),
        torch.zeros(3, 64),
        torch.tensor([0, 1, 10]),
    )
    with pytest.raises(DataError) as ei:
        ModelBundle.from_module(small_mlp, d)
    one_line(ei.value, "test labels", "10 outputs")


def test_loss_cannot_compare(small_mlp, one_line) -> None:
    d = _data(torch.zeros(10, 64), torch.zeros(10, 3))
    with pytest.raises(DataError) as ei:
        ModelBundle.from_module(small_mlp, d, "mse")
    one_line(ei.value, "cannot compare", "(2, 10)", "(2, 3)", "--loss")
    d = _data(torch.zeros(10, 64), torch.zeros(10).long())
    with pytest.raises(DataError) as ei:
        ModelBundle.from_module(small_mlp, d, "torch.nn.functional:binary_cross_entropy")
    one_line(ei.value, "cannot compare")


def test_model_output_without_batch_dim(one_line) -> None:
    class Mean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x @ self.w).mean()

    with pytest.raises(DataError) as ei:
        ModelBundle.from_module(Mean(), _data(torch.zeros(10, 3), torch.zeros(10)), "mse")
    one_line(ei.value, "batch dimension first")


def test_bad_device_and_dtype(small_mlp, one_line) -> None:
    d = _data(torch.zeros(10, 64), torch.zeros(10).long())
    with pytest.raises(ConfigError) as ei:
        ModelBundle.from_module(small_mlp, d, dtype="float63")
    one_line(ei.value, "--dtype", "float32")
    with pytest.raises(ConfigError) as ei:
        ModelBundle.from_module(small_mlp, d, device="tpu9")
    one_line(ei.value, "--device")


def test_losses_per_sample_and_inferred() -> None:
    g = torch.Generator().manual_seed(0)
    out = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ce = resolve_loss(None, y)
    assert ce.name == "cross_entropy"
    torch.testing.assert_close(ce.per_sample(out, y), F.cross_entropy(out, y, reduction="none"))
    mse = resolve_loss(None, torch.zeros(3))
    assert mse.name == "mse" and not mse.classification
    t = torch.randn(6, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(mse.per_sample(out, t), ((out - t) ** 2).mean(1))
    # its mean over samples is exactly torch.nn.MSELoss()
    torch.testing.assert_close(mse.per_sample(out, t).mean(), torch.nn.MSELoss()(out, t))
    assert "MSELoss" in mse.reduction
    nll = resolve_loss("gaussian_nll:0.5")
    assert nll.sigma == 0.5
    expected = 0.5 * ((out - t) ** 2).sum(1) / 0.25 + out.shape[1] * 0.5 * math.log(
        2 * math.pi * 0.25
    )
    torch.testing.assert_close(nll.per_sample(out, t), expected)
    # integer labels with --loss mse: squared error to one-hot targets
    torch.testing.assert_close(
        resolve_loss("mse").per_sample(out, y),
        ((out - F.one_hot(y, 4).double()) ** 2).mean(1),
    )
    # (N, 1) outputs against (N,) targets
    torch.testing.assert_close(mse.per_sample(out[:, :1], t[:, 0]), (out[:, 0] - t[:, 0]) ** 2)
    # a loss class is built with reduction="none"; a mean-returning function is spread evenly
    cls = resolve_loss("torch.nn:CrossEntropyLoss", y)
    torch.testing.assert_close(cls.per_sample(out, y), F.cross_entropy(out, y, reduction="none"))
    mean_fn = resolve_loss("torch.nn.functional:cross_entropy", y)
    assert torch.allclose(mean_fn.chunk_sum(out, y), F.cross_entropy(out, y, reduction="sum"))


def test_unknown_loss(one_line) -> None:
    with pytest.raises(ConfigError) as ei:
        resolve_loss("hinge")
    one_line(ei.value, "unknown loss", "cross_entropy")
    with pytest.raises(ConfigError) as ei:
        resolve_loss("math:pi")
    one_line(ei.value, "not callable")


def test_wrappers_are_unwrapped(small_mlp) -> None:
    d = load_data("digits", max_samples=20)
    for wrapped in (torch.compile(small_mlp), torch.nn.DataParallel(small_mlp)):
        b = ModelBundle.from_module(wrapped, d)
        assert isinstance(b.module, torch.nn.Sequential)
        assert [n for n, _ in b.module.named_parameters()] == [
            "1.weight",
            "1.bias",
            "3.weight",
            "3.bias",
        ]


def test_mse_loss_of_a_model_is_torch_mse_loss():
    """``--loss mse`` over chunked data equals ``F.mse_loss`` at θ, and λmax doubles vs ½‖·‖²."""
    from landscape.engine import ParamSpace

    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64)
    y = torch.randn(50, 3, generator=g, dtype=torch.float64)
    model = nn.Linear(4, 3).double()
    space = ParamSpace(ModelBundle.from_module(model, DataSource("lin", x, y, batch_size=7), "mse"))
    with torch.no_grad():
        want = float(F.mse_loss(model(x), y))
    assert float(space.loss(space.theta0)) == pytest.approx(want, rel=1e-12)
    nll = ParamSpace(
        ModelBundle.from_module(model, DataSource("lin", x, y, batch_size=7), "gaussian_nll")
    )
    h_mse = torch.func.hessian(space.loss)(space.theta0)
    h_nll = torch.func.hessian(nll.loss)(nll.theta0)
    # mean over k = 3 elements against ½ Σ: the Hessians differ by 2/k exactly
    torch.testing.assert_close(h_mse, h_nll * 2 / 3, rtol=1e-12, atol=1e-12)
