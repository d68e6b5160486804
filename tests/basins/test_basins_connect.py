"""Mode connectivity: barriers on linear, aligned and trained curved paths, against known answers."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape.basins.connect import (
    Connectivity,
    CurveConfig,
    PathResult,
    curve_path,
    linear_path,
    mode_connectivity,
    path_barrier,
    train_curve,
)
from landscape.basins.symmetry import (
    AxisPerm,
    match_permutations,
    permutation_spec,
    permute_named,
    permute_theta,
)
from landscape.engine import ParamSpace
from landscape.errors import ConfigError, NotApplicable
from landscape.io.data import DataSource, load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import digits_cnn, mlp
from landscape.training import TrainConfig, train


def _trained(model: nn.Module, data: DataSource, seed: int, epochs: int = 15) -> nn.Module:
    torch.manual_seed(seed)
    train(model, data, TrainConfig(epochs=epochs, lr=0.05, batch_size=32, seed=seed))
    return model


@pytest.fixture(scope="module")
def digits() -> DataSource:
    return load_data("digits", max_samples=200, batch_size=200, seed=0)


@pytest.fixture(scope="module")
def two_mlps(digits) -> tuple[ParamSpace, torch.Tensor]:
    """Two ReLU MLPs 64-16-10 from different seeds, in float64; returns A's space and θ_B."""
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(_trained(mlp(64, 16, 10), digits, seed).double())
    sa = ParamSpace(ModelBundle.from_module(nets[0], digits, dtype=torch.float64))
    sb = ParamSpace(ModelBundle.from_module(nets[1], digits, dtype=torch.float64))
    return sa, sb.theta0


# -- the barrier's definition ----------------------------------------------------------
def test_path_barrier_is_max_minus_mean_of_endpoints():
    t = np.linspace(0, 1, 5)
    assert path_barrier(t, np.array([1.0, 2.0, 4.0, 2.0, 3.0])) == (2.0, 0.5)
    assert path_barrier(t, np.array([1.0, 2.0, np.inf, 2.0, 3.0]))[0] == math.inf
    r = PathResult(t, np.zeros(5), np.full(5, np.nan), 0.0, 0.0).to_dict()
    assert r["barrier"] == 0.0 and r["acc"][0] == "nan" and len(r["loss"]) == 5


def test_convex_quadratic_has_its_analytic_barrier(make_bowl):
    space, hess = make_bowl()
    star = space.theta0
    u = torch.tensor([0.3, -0.2, 0.1, 0.4], dtype=torch.float64)
    v = torch.tensor([-0.1, 0.5, 0.2, -0.3], dtype=torch.float64)
    res = linear_path(space, star + u, star + v, points=11)
    l_star = float(space.loss(star))
    t = torch.as_tensor(res.t)
    d = (1 - t)[:, None] * u + t[:, None] * v
    exact = l_star + 0.5 * torch.einsum("ki,ij,kj->k", d, hess, d).numpy()
    np.testing.assert_allclose(res.loss, exact, rtol=1e-10)
    # convex along a line: the max is at an end, so B = |L0 − L1| / 2 (≥ 0, from the ends)
    assert res.barrier == pytest.approx(abs(exact[0] - exact[-1]) / 2, rel=1e-10)
    assert res.t_max in (0.0, 1.0)
    # symmetric ends around the minimum: equal end losses, no barrier at all
    sym = linear_path(space, star + u, star - u, points=11)
    assert sym.barrier <= 1e-12
    assert sym.loss[5] == pytest.approx(l_star, rel=1e-12)  # the midpoint is the minimum


# -- permutation alignment ---------------------------------------------------------------
def test_permuted_copy_has_no_barrier_after_alignment(two_mlps):
    space, _ = two_mlps
    rng = np.random.default_rng(3)
    spec = permutation_spec(space)
    perm = [rng.permutation(n) for n in spec.sizes]
    theta_b = permute_theta(space, spec, space.theta0, perm)
    res = mode_connectivity(space, space.theta0, theta_b, points=11)
    assert res.linear.barrier > 0.05  # the straight path through a permutation is not trivial
    assert res.aligned is not None and res.alignment is not None
    assert abs(res.aligned.barrier) < 1e-6
    torch.testing.assert_close(res.alignment.theta, space.theta0, rtol=0, atol=0)
    assert np.ptp(res.aligned.loss) < 1e-12


def test_alignment_lowers_the_barrier_of_different_nets(two_mlps):
    space, theta_b = two_mlps
    res = mode_connectivity(space, space.theta0, theta_b, points=11)
    assert res.aligned is not None
    assert res.linear.barrier > 0
    assert res.aligned.barrier < res.linear.barrier
    # the aligned endpoint computes B's function
    x = space.bundle.data.x_train[:20].double()
    torch.testing.assert_close(space.forward(res.alignment.theta, x), space.forward(theta_b, x))


@pytest.fixture(scope="module")
def cnn(digits) -> ParamSpace:
    torch.manual_seed(0)
    model = _trained(digits_cnn(4), digits, 0, epochs=5).double()
    return ParamSpace(ModelBundle.from_module(model, digits, dtype=torch.float64))


def test_cnn_batchnorm_permutation_keeps_the_function(cnn):
    spec = permutation_spec(cnn)
    assert spec.sizes == (4, 8, 16)
    assert spec.axes["1.running_var"][0].group == 0  # BN statistics move with their channels
    rng = np.random.default_rng(0)
    perm = [rng.permutation(n) for n in spec.sizes]
    theta_b = permute_theta(cnn, spec, cnn.theta0, perm)
    buffers_b = permute_named(spec, cnn.buffers, perm)
    x = cnn.bundle.data.x_train[:16].double()
    params = cnn.unflatten(theta_b)
    params.update(buffers_b)
    out_b = functional_call(cnn.bundle.module, params, (x,))
    torch.testing.assert_close(out_b, cnn.forward(cnn.theta0, x), rtol=1e-10, atol=1e-10)
    al = match_permutations(cnn, cnn.theta0, theta_b)
    torch.testing.assert_close(al.theta, cnn.theta0, rtol=0, atol=0)


def test_cnn_aligned_path_is_flat_and_the_model_untouched(cnn):
    before = copy.deepcopy(cnn.bundle.module.state_dict())
    spec = permutation_spec(cnn)
    rng = np.random.default_rng(1)
    theta_b = permute_theta(cnn, spec, cnn.theta0, [rng.permutation(n) for n in spec.sizes])
    res = mode_connectivity(cnn, cnn.theta0, theta_b, points=7)
    assert res.repaired
    assert res.linear.barrier > 0.05
    assert abs(res.aligned.barrier) < 1e-6
    for k, v in cnn.bundle.module.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_repair_uses_the_training_set_statistics(cnn):
    # one chunk: the recomputed running statistics are the full-batch statistics
    res = linear_path(cnn, cnn.theta0, cnn.theta0, points=2)
    m = copy.deepcopy(cnn.bundle.module)
    x, y = cnn.bundle.data.x_train.double(), cnn.bundle.data.y_train
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None
    m.train()
    with torch.no_grad():
        m(x)
        m.eval()
        ref = float(nn.functional.cross_entropy(m(x), y))
    assert res.loss[0] == pytest.approx(ref, rel=1e-10)
    plain = linear_path(cnn, cnn.theta0, cnn.theta0, points=2, repair=False)
    assert plain.loss[0] == pytest.approx(float(cnn.loss()), rel=1e-12)


class _InputResidual(nn.Module):
    """x + relu(a(x)): the stream is the raw input, so nothing can be permuted."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(x + torch.relu(self.a(x)))


class _Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.cat([x, torch.relu(self.a(x))], dim=1))


class ResMLP(nn.Module):
    """A stem, two residual blocks sharing the 12-unit stream, and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(64, 12)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 12)) for _ in range(2)
        )
        self.norm = nn.LayerNorm(12)
        self.head = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x.flatten(1)))
        for block in self.blocks:
            h = h + block(h)
        return self.head(self.norm(h))


class ResCNN(nn.Module):
    """Conv stem with BatchNorm, one residual conv block, global average pooling, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.conv1 = nn.Conv2d(6, 5, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(5)
        self.conv2 = nn.Conv2d(5, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.head = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = torch.relu(h + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(h))))))
        return self.head(h.mean((2, 3)))


def _permuted_copy_check(space: ParamSpace, seed: int = 0) -> torch.Tensor:
    """Permute every group at random; the function (eval mode, buffers too) must not change."""
    spec = permutation_spec(space)
    rng = np.random.default_rng(seed)
    perm = [rng.permutation(n) for n in spec.sizes]
    theta_b = permute_theta(space, spec, space.theta0, perm)
    params = space.unflatten(theta_b)
    params.update(permute_named(spec, space.buffers, perm))
    x = space.bundle.data.x_train[:16].to(space.dtype)
    out_b = functional_call(space.bundle.module, params, (x,))
    torch.testing.assert_close(out_b, space.forward(space.theta0, x), rtol=1e-10, atol=1e-10)
    assert not torch.equal(theta_b, space.theta0)
    al = match_permutations(space, space.theta0, theta_b)
    torch.testing.assert_close(al.theta, space.theta0, rtol=0, atol=0)
    return theta_b


def test_residual_streams_share_one_permutation(digits):
    torch.manual_seed(0)
    sp = ParamSpace(ModelBundle.from_module(ResMLP(), digits, dtype=torch.float64))
    spec = permutation_spec(sp)
    # the stream (stem, both blocks' outputs, LayerNorm) is one group; each block's hidden one
    assert sorted(spec.sizes) == [12, 20, 20]
    stream = spec.axes["stem.weight"][0].group
    for name in ("blocks.0.2.weight", "blocks.1.2.bias", "norm.weight", "norm.bias"):
        assert spec.axes[name][0].group == stream
    assert spec.axes["head.weight"] == (None, AxisPerm(stream))
    _permuted_copy_check(sp)


def test_residual_cnn_with_batchnorm(digits):
    torch.manual_seed(0)
    model = ResCNN()
    for bn in (model.stem[1], model.bn1, model.bn2):
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
    sp = ParamSpace(ModelBundle.from_module(model, digits, dtype=torch.float64))
    spec = permutation_spec(sp)
    assert sorted(spec.sizes) == [5, 6]
    assert spec.axes["bn2.running_var"][0] == spec.axes["stem.1.running_mean"][0]
    theta_b = _permuted_copy_check(sp, seed=2)
    res = mode_connectivity(sp, sp.theta0, theta_b, points=5)
    assert res.repaired and abs(res.aligned.barrier) < 1e-6


def test_layernorm_mlp_is_supported(digits):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 10))
    sp = ParamSpace(ModelBundle.from_module(m, digits, dtype=torch.float64))
    assert permutation_spec(sp).sizes == (8,)
    _permuted_copy_check(sp)


def test_unsupported_models_are_named():
    data = DataSource("d", torch.randn(8, 4), torch.randint(0, 2, (8,)))
    sp = ParamSpace(ModelBundle.from_module(_InputResidual(), data))
    with pytest.raises(NotApplicable, match="no permutable hidden units"):
        permutation_spec(sp)
    cat = ParamSpace(ModelBundle.from_module(_Concat(), data))
    with pytest.raises(NotApplicable, match="cat"):
        permutation_spec(cat)
    grouped = nn.Sequential(nn.Conv1d(4, 4, 1, groups=2), nn.Flatten(), nn.Linear(4, 2))
    g_data = DataSource("g", torch.randn(8, 4, 1), torch.randint(0, 2, (8,)))
    g_space = ParamSpace(ModelBundle.from_module(grouped, g_data))
    with pytest.raises(NotApplicable, match="groups=2"):
        permutation_spec(g_space)
    r = mode_connectivity(cat, cat.theta0, cat.theta0 * 0.5, points=3)
    assert r.aligned is None and "cat" in r.skipped["aligned"]
    with pytest.raises(ConfigError):
        CurveConfig(kind="spline")


# -- curves on a toy landscape with a curved valley (tests/conftest.py: RingValley) ------
EPS = 0.1  # the ring valley's tilt: L(0, 0) = 1 + ε


@pytest.fixture()
def ring(ring_space) -> ParamSpace:
    return ring_space()


@pytest.mark.parametrize(
    ("kind", "best_bend", "ratio"),
    # Bézier: the parabola y = 1 − x² (bend height 2) stays within x⁴(1 − x²)² ≤ 0.05 of the
    # ring; polychain: the chords' worst point is best at bend height 2^¼, (√2 − 1)² ≈ 0.17.
    [("bezier", 2.0, 0.1), ("polychain", 2**0.25, 0.2)],
)
def test_curve_finds_the_valley(ring, ring_loss, kind, best_bend, ratio):
    a = torch.tensor([-1.0, 0.0], dtype=torch.float64)
    b = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert float(ring.loss(torch.zeros(2, dtype=torch.float64))) == pytest.approx(1 + EPS)
    p = torch.tensor([0.6, 0.8], dtype=torch.float64)
    assert float(ring.loss(p)) == pytest.approx(ring_loss(p), rel=1e-12)
    cfg = CurveConfig(kind=kind, steps=1000, lr=0.02, seed=0)
    res = mode_connectivity(ring, a, b, align=False, curve=cfg, points=25)
    assert res.linear.barrier == pytest.approx(1 + EPS, rel=1e-12)
    assert res.linear.t_max == 0.5
    assert res.curve is not None and res.control is not None
    assert res.curve.barrier < ratio * res.linear.barrier
    assert float(res.control[1]) == pytest.approx(best_bend, abs=0.15)  # up into the valley
    assert abs(float(res.control[0])) < 0.05
    d = res.to_dict()
    assert d["curve"]["kind"] == kind and d["curve"]["endpoint"] == "raw"
    # the curve's values are the loss at the curve's points
    again = curve_path(ring, a, res.control, b, kind, points=25)
    np.testing.assert_allclose(again.loss, res.curve.loss, rtol=1e-12)


def test_curve_training_is_seeded_and_starts_at_the_midpoint(ring):
    a = torch.tensor([-1.0, 0.0], dtype=torch.float64)
    b = torch.tensor([1.0, 0.2], dtype=torch.float64)
    zero = train_curve(ring, a, b, CurveConfig(steps=0))
    torch.testing.assert_close(zero.control, (a + b) / 2)
    one = train_curve(ring, a, b, CurveConfig(steps=20, seed=4))
    two = train_curve(ring, a, b, CurveConfig(steps=20, seed=4))
    torch.testing.assert_close(one.control, two.control, rtol=0, atol=0)
    assert isinstance(mode_connectivity(ring, a, b, align=False, points=3), Connectivity)
