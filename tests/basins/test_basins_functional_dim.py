"""Functional dimension: Jacobian rank at a plateau, with the known ReLU-MLP symmetries."""

import numpy as np
import pytest
import torch

from landscape.basins import FunctionalDimension, functional_dimension
from landscape.basins.jacobian_rank import output_jacobian
from landscape.basins.symmetry import apply_rescaling, rescale_layer_pair
from landscape.engine import ParamSpace
from landscape.errors import ConfigError
from landscape.io.data import DataSource
from landscape.io.model_bundle import ModelBundle
from landscape.models import mlp

IN, H, OUT = 6, 16, 4
D = IN * H + H + H * OUT + OUT  # 180


def _space(
    loss: str = "mse",
    *,
    n: int = 400,
    dead_unit: bool = False,
    zero_feature: bool = False,
    dtype: torch.dtype = torch.float64,
    activation: str = "relu",
    seed: int = 0,
) -> ParamSpace:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, IN, generator=g, dtype=torch.float64)
    if zero_feature:
        x[:, 2] = 0.0
    model = mlp(IN, H, OUT, activation=activation).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        model[1].bias.mul_(0.3)
        if dead_unit:
            model[1].bias[0] = -100.0
    if loss == "mse":
        y = torch.randn(n, OUT, generator=g, dtype=torch.float64)
    else:
        y = torch.randint(0, OUT, (n,), generator=g)
    data = DataSource("fd", x, y)
    return ParamSpace(ModelBundle.from_module(model, data, loss, dtype=dtype))


def _activity(space: ParamSpace) -> torch.Tensor:
    model = space.bundle.module
    x = space.bundle.data.x_train.to(space.dtype)
    return model[1](x) > 0


def test_relu_mlp_mse_rank_is_d_minus_h():
    space = _space("mse")
    on = _activity(space)
    assert bool(on.any(0).all()) and not bool(on.all(0).any())  # no dead, no linear unit
    fd = functional_dimension(space)
    assert isinstance(fd, FunctionalDimension)
    assert fd.dim == D and fd.outputs_per_sample == OUT
    assert fd.rank == D - H
    assert fd.plateau and not fd.saturated
    assert fd.deficit == H and fd.symmetry_dim == H and fd.excess_deficit == 0
    assert fd.symmetry is not None and fd.symmetry.rescaling == H
    assert fd.symmetry.invisible == 0 and fd.zero_columns == 0
    # N·k starts at 2d and doubles; the last two ranks agree
    assert fd.curve[0][0] * OUT >= 2 * D
    assert fd.curve[-1][1] == fd.curve[-2][1] == fd.rank
    assert fd.num_samples == fd.curve[-1][0]
    assert fd.gap > 1e4  # the threshold sits in a clear gap
    dct = fd.to_dict()
    for key in ("rank", "dim", "num_samples", "deficit", "symmetry_dim", "excess_deficit"):
        assert key in dct
    assert dct["rank"] == D - H and dct["dim"] == D and dct["deficit"] == H
    assert dct["curve"][-1] == [fd.num_samples, fd.rank]
    assert isinstance(dct["notes"], list)


def test_relu_mlp_cross_entropy_removes_logit_shifts():
    space = _space("cross_entropy")
    fd = functional_dimension(space)
    assert fd.outputs_per_sample == OUT - 1
    assert fd.rank == D - H - (H + 1)
    assert fd.plateau and not fd.saturated
    assert fd.symmetry is not None
    assert fd.symmetry.rescaling == H and fd.symmetry.logit_shift == H + 1
    assert fd.symmetry_dim == 2 * H + 1 and fd.excess_deficit == 0


def test_logit_shift_count_dense():
    # dense SVD of the centred logit Jacobian: its null space is rescalings + h + 1 shifts,
    # and each shift direction is in it
    space = _space("cross_entropy", n=200)
    jac, n = output_jacobian(space, max_samples=None)
    jac = jac.reshape(n, OUT, D)
    jc = (jac - jac.mean(1, keepdim=True)).reshape(-1, D)
    sv = torch.linalg.svdvals(jc)
    assert int((sv > 1e-10 * sv[0]).sum()) == D - 2 * H - 1
    w2 = space.infos[2].slice
    for j in range(H):
        v = torch.zeros(D, dtype=torch.float64)
        e = torch.zeros(OUT, H, dtype=torch.float64)
        e[:, j] = 1.0
        v[w2] = e.reshape(-1)
        assert float((jc @ v).abs().max()) < 1e-12
    v = torch.zeros(D, dtype=torch.float64)
    v[space.infos[3].slice] = 1.0
    assert float((jc @ v).abs().max()) < 1e-12
    # the raw logits do move along the shifts: the centring is what removes them
    assert float((jac.reshape(-1, D) @ v).abs().max()) > 0.5


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_dead_unit_and_zero_feature_are_counted_exactly(loss):
    space = _space(loss, dead_unit=True, zero_feature=True)
    fd = functional_dimension(space)
    s = fd.symmetry
    assert s is not None
    assert s.dead_units == 1 and s.live_units == H - 1 and s.zero_inputs == 1
    # dead unit 0: IN incoming + 1 bias + OUT outgoing; feature 2: H first-layer weights,
    # one of which (W1[0, 2]) is also the dead unit's
    invisible = IN + 1 + OUT + H - 1
    assert s.invisible == invisible == fd.zero_columns
    assert s.rescaling == H - 1
    shifts = H if loss == "cross_entropy" else 0  # (H − 1 live units) + bias
    assert s.logit_shift == shifts
    assert fd.symmetry_dim == invisible + H - 1 + shifts
    assert fd.rank == D - fd.symmetry_dim and fd.excess_deficit == 0
    assert fd.plateau


def test_saturated_when_inputs_run_out():
    space = _space("mse", n=400)
    fd = functional_dimension(space, max_samples=10)
    assert fd.num_samples == 10 and fd.rank == 10 * OUT
    assert fd.saturated and not fd.plateau
    assert any("rank capped by the sample count" in n and "give more inputs" in n for n in fd.notes)
    assert fd.to_dict()["saturated"] is True


def test_rank_is_invariant_to_rescalings():
    space = _space("mse")
    th = space.theta0
    base = functional_dimension(space)
    g = torch.Generator().manual_seed(1)
    others = [
        rescale_layer_pair(space, th, 0, 4.0),
        apply_rescaling(
            space, th, [torch.exp(2 * torch.randn(H, generator=g, dtype=torch.float64))]
        ),
    ]
    for other in others:
        x = space.bundle.data.x_train
        torch.testing.assert_close(space.forward(other, x), space.forward(th, x))
        fd = functional_dimension(space, other)
        assert fd.curve == base.curve
        assert fd.symmetry_dim == base.symmetry_dim
        assert fd.effective_rank == pytest.approx(base.effective_rank, rel=1e-6)


def test_float32_model_uses_float64_jacobian():
    space = _space("mse", dtype=torch.float32)
    fd = functional_dimension(space)
    assert fd.jacobian_dtype == "float64" and fd.rtol == 1e-6
    assert fd.rank == D - H and fd.excess_deficit == 0
    assert any("float64" in n for n in fd.notes)


def test_non_relu_model_reports_no_symmetry_and_test_inputs_are_used():
    space = _space("mse", activation="tanh", n=60)
    x_test = torch.randn(300, IN, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    data = DataSource(
        "fd", space.bundle.data.x_train, space.bundle.data.y_train, x_test, torch.zeros(300, OUT)
    )
    space = ParamSpace(ModelBundle.from_module(space.bundle.module, data, "mse"))
    fd = functional_dimension(space)
    assert fd.num_samples > 60  # more inputs than the training split holds
    assert fd.symmetry_dim is None and fd.excess_deficit is None
    assert any("symmetry_dim not counted" in n for n in fd.notes)
    assert fd.to_dict()["symmetry_dim"] is None
    # tanh nets have no continuous symmetry: full rank
    assert fd.rank == D and fd.plateau


def test_bad_arguments():
    space = _space("mse", n=50)
    for kwargs in ({"rtol": 2.0}, {"growth": 1.0}, {"chunk": 0}, {"max_samples": 0}):
        with pytest.raises(ConfigError):
            functional_dimension(space, **kwargs)
    assert np.all(np.diff(functional_dimension(space, max_samples=20).singular_values) <= 0)
