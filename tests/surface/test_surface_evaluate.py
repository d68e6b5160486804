from __future__ import annotations

import copy
import itertools
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from landscape.engine import ParamSpace
from landscape.io.model_bundle import ModelBundle
from landscape.models import mlp
from landscape.surface import (
    GridSpec,
    PointEvaluator,
    Surface,
    detect_first_layer,
    evaluate_points,
    evaluate_surface,
    quick_surface,
    random_directions,
)

FAST = {"compile": False}


def _check_random_points(space, dirs, grid, surf, n=6, seed=0):
    rng = np.random.default_rng(seed)
    axes = grid.coordinates()
    for _ in range(n):
        idx = tuple(int(rng.integers(0, s)) for s in grid.shape)
        theta = dirs.point([a[i] for a, i in zip(axes, idx, strict=True)])
        ref = float(space.loss(theta))
        assert surf.train_loss[idx] == pytest.approx(ref, rel=1e-12, abs=1e-14), idx
        ref_test, acc_test = space.evaluate(theta, "test")
        assert surf.test_loss[idx] == pytest.approx(ref_test, rel=1e-12)
        assert surf.test_accuracy[idx] == acc_test


@pytest.mark.parametrize(
    "grid, rng",
    [("9", "-1:1"), ("5x5", "-1:1"), ("4x7", "-0.5:1,-2:0.3"), ("3x4x2", "-1:1,-0.5:0.5,0:1")],
)
def test_grid_points_equal_direct_loss(mlp_space, grid, rng):
    spec = GridSpec.parse(grid, rng)
    dirs = random_directions(mlp_space, spec.dims, seed=1)
    surf = evaluate_surface(mlp_space, dirs, spec, **FAST)
    assert surf.train_loss.shape == spec.shape == surf.test_loss.shape
    assert np.isfinite(surf.train_loss).all()
    _check_random_points(mlp_space, dirs, spec, surf)


@pytest.mark.parametrize("grid, rng", [("7x7", "-1:1"), ("6x9", "-1.5:0.5,-0.2:2")])
def test_quadratic_model_gives_exact_quadratic_in_right_orientation(quad_space, grid, rng):
    spec = GridSpec.parse(grid, rng)
    dirs = random_directions(quad_space, 2, normalization="layer", ignore="none", seed=2)
    surf = evaluate_surface(quad_space, dirs, spec, **FAST)
    a, b = np.meshgrid(*spec.coordinates(), indexing="ij")
    design = np.stack([np.ones_like(a), a, b, a * a, a * b, b * b], -1).reshape(-1, 6)
    coef, *_ = np.linalg.lstsq(design, surf.train_loss.reshape(-1), rcond=None)
    resid = surf.train_loss.reshape(-1) - design @ coef
    assert np.abs(resid).max() < 1e-10
    # the fitted polynomial is the exact Taylor expansion, with alpha along d1
    t0 = quad_space.theta0
    _, g = quad_space.value_and_grad(t0)
    h = torch.func.hessian(lambda t: quad_space.loss(t))(t0)
    d1, d2 = dirs.vectors
    expect = [
        float(quad_space.loss(t0)),
        float(g @ d1),
        float(g @ d2),
        0.5 * float(d1 @ h @ d1),
        float(d1 @ h @ d2),
        0.5 * float(d2 @ h @ d2),
    ]
    np.testing.assert_allclose(coef, expect, rtol=1e-8, atol=1e-10)
    # the array is indexed [i, j] at (alpha[i], beta[j])
    ds = surf.to_dataset()
    al, be = spec.coordinates()
    for i, j in [(0, spec.shape[1] - 1), (spec.shape[0] - 1, 1)]:
        theta = dirs.point([al[i], be[j]])
        v = float(ds.train_loss.sel(alpha=al[i], beta=be[j]))
        assert v == pytest.approx(float(quad_space.loss(theta)), rel=1e-12)


@pytest.mark.parametrize("first_layer", [True, False])
def test_centre_equals_loss_at_theta_exactly(cnn_space, first_layer):
    dirs = random_directions(cnn_space, 2, seed=0)
    surf = evaluate_surface(cnn_space, dirs, GridSpec.parse("3x5"), first_layer=first_layer, **FAST)
    loss, acc = cnn_space.evaluate()
    tl, ta = cnn_space.evaluate(split="test")
    assert surf.train_loss[1, 2] == loss and surf.center_loss == loss
    assert surf.train_accuracy[1, 2] == acc
    assert surf.test_loss[1, 2] == tl and surf.test_accuracy[1, 2] == ta
    assert surf.info["first_layer"] is first_layer


def test_first_layer_trick_equals_plain_path(cnn_space, mlp_space):
    for space in (cnn_space, mlp_space):
        assert detect_first_layer(space) is not None
        dirs = random_directions(space, 2, seed=3, ignore="none")  # biases move too
        pts = GridSpec.parse("3x3", "-2:2").points()
        trick = evaluate_points(space, dirs, pts, first_layer=True, **FAST)
        plain = evaluate_points(space, dirs, pts, first_layer=False, **FAST)
        for k in trick:
            np.testing.assert_allclose(trick[k], plain[k], rtol=1e-12, atol=1e-14)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 10)
        self.skip = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.lin(x) + torch.tanh(self.skip(x))


def test_models_outside_the_trick_fall_back(digits_tiny):
    torch.manual_seed(0)
    space = ParamSpace(ModelBundle.from_module(_Residual(), digits_tiny, dtype=torch.float64))
    assert detect_first_layer(space) is None
    shared = nn.Linear(64, 64)
    seq = nn.Sequential(nn.Flatten(), shared, nn.Tanh(), shared, nn.Linear(64, 10))
    assert detect_first_layer(ParamSpace(ModelBundle.from_module(seq, digits_tiny))) is None
    dirs = random_directions(space, 1, seed=0)
    surf = evaluate_surface(space, dirs, GridSpec.parse("3"), **FAST)
    assert surf.info["first_layer"] is False
    assert surf.train_loss[2] == pytest.approx(float(space.loss(dirs.point([1.0]))), rel=1e-12)


def test_vmap_path_equals_loop_path(cnn_space):
    dirs = random_directions(cnn_space, 2, seed=4)
    spec = GridSpec.parse("3x3", "-1:1")
    loop = evaluate_surface(cnn_space, dirs, spec, method="loop", **FAST)
    for first_layer in (True, False):
        vm = evaluate_surface(
            cnn_space,
            dirs,
            spec,
            method="vmap",
            points_per_batch=4,
            first_layer=first_layer,
            **FAST,
        )
        assert vm.info["method"] == "vmap"
        np.testing.assert_allclose(vm.train_loss, loop.train_loss, rtol=1e-12)
        np.testing.assert_allclose(vm.test_loss, loop.test_loss, rtol=1e-12)
        np.testing.assert_array_equal(vm.train_accuracy, loop.train_accuracy)


def _manual_recompute(space, theta):
    m = copy.deepcopy(space.bundle.module)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(theta, m.parameters())
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.reset_running_stats()
                mod.momentum = None
                mod.train()
        for x, _ in space.chunks("train"):
            m(x)
        m.eval()
        total = sum(float(space.bundle.loss.chunk_sum(m(x), y)) for x, y in space.chunks("train"))
    return total / space.num_samples("train")


def test_recompute_bn_changes_loss_and_is_deterministic(cnn_space):
    dirs = random_directions(cnn_space, 2, seed=5)
    spec = GridSpec.parse("3x2", "-1:1,0:0.5")
    ev_mode = evaluate_surface(cnn_space, dirs, spec, **FAST)
    rec1 = evaluate_surface(cnn_space, dirs, spec, recompute_bn=True, **FAST)
    rec2 = evaluate_surface(cnn_space, dirs, spec, recompute_bn=True, **FAST)
    np.testing.assert_array_equal(rec1.train_loss, rec2.train_loss)
    assert np.abs(rec1.train_loss - ev_mode.train_loss).max() > 1e-3
    al, be = spec.coordinates()
    theta = dirs.point([al[2], be[1]])
    assert rec1.train_loss[2, 1] == pytest.approx(_manual_recompute(cnn_space, theta), rel=1e-12)
    assert rec1.info["recompute_bn"] and rec1.to_dataset().attrs["surface_recompute_bn"] == 1
    # the user's module is untouched
    bn = cnn_space.bundle.module[1]
    assert bn.momentum == 0.1 and torch.equal(bn.running_mean, cnn_space.buffers["1.running_mean"])


def test_nonfinite_losses_are_recorded_not_raised(digits_tiny):
    torch.manual_seed(0)
    space = ParamSpace(ModelBundle.from_module(mlp(64, 12, 10, activation="relu"), digits_tiny))
    dirs = random_directions(space, 2, seed=0)
    spec = GridSpec.parse("3x3", "-1e38:1e38")
    surf = evaluate_surface(space, dirs, spec, **FAST)
    assert not np.isfinite(surf.train_loss).all()
    assert np.isfinite(surf.train_loss[1, 1])
    corner = float(space.loss(dirs.point([-1e38, 1e38])))
    got = surf.train_loss[0, 2]
    assert (np.isnan(got) and np.isnan(corner)) or got == corner
    d = surf.to_dict()
    assert d["nonfinite_points"] == int((~np.isfinite(surf.train_loss)).sum()) > 0
    ds = surf.to_dataset()
    assert np.isnan(ds.train_loss.values).sum() + np.isinf(ds.train_loss.values).sum() > 0


def test_bf16_reports_error_against_fp32(cnn_space, digits_tiny):
    torch.manual_seed(0)
    from landscape.models import tiny_cnn

    space = ParamSpace(ModelBundle.from_module(tiny_cnn(4), digits_tiny))
    dirs = random_directions(space, 2, seed=0)
    spec = GridSpec.parse("3x3")
    surf = evaluate_surface(space, dirs, spec, bf16=True, **FAST)
    fp32 = evaluate_surface(space, dirs, spec, **FAST)
    err = np.abs(surf.train_loss[:, 1] - fp32.train_loss[:, 1]) / np.abs(fp32.train_loss[:, 1])
    assert surf.bf16_error == pytest.approx(err.max(), rel=1e-6)
    assert 0 < surf.bf16_error < 0.05
    assert surf.to_dataset().attrs["surface_bf16_error"] == surf.bf16_error


def test_compile_failure_falls_back_to_eager(mlp_space, monkeypatch):
    def broken(fn, **kw):
        def run(*a):
            raise RuntimeError("no compiler here")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    dirs = random_directions(mlp_space, 1, seed=0)
    spec = GridSpec.parse("3")
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        surf = evaluate_surface(mlp_space, dirs, spec, compile=True)
    ref = evaluate_surface(mlp_space, dirs, spec, compile=False)
    np.testing.assert_array_equal(surf.train_loss, ref.train_loss)
    assert surf.info["compiled"] is False


@pytest.mark.slow
def test_compiled_loop_matches_eager_and_compiles_once(digits_tiny):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    space = ParamSpace(ModelBundle.from_module(model, digits_tiny))
    dirs = random_directions(space, 2, seed=0)
    spec = GridSpec.parse("3x3")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        comp = evaluate_surface(space, dirs, spec, compile=True, test=False, chunk_size=120)
    eager = evaluate_surface(space, dirs, spec, compile=False, test=False)
    assert comp.info["compiled"] is True
    # grid coordinates enter as tensors: one graph serves all nine points
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    np.testing.assert_allclose(comp.train_loss, eager.train_loss, rtol=1e-5)


@pytest.mark.slow
def test_compiled_conv_loop_uses_channels_last_and_matches_eager(cnn_space):
    dirs = random_directions(cnn_space, 2, seed=3)
    spec = GridSpec.parse("3x3", "-0.5:0.5")
    eager = evaluate_surface(cnn_space, dirs, spec, compile=False, test=False)
    ev = PointEvaluator(cnn_space, dirs, compile=True)
    assert ev.compiled and ev.channels_last
    _, x, _ = next(ev.chunks("train"))
    assert x.is_contiguous(memory_format=torch.channels_last)
    a, b = np.meshgrid(*spec.coordinates(), indexing="ij")
    comp = ev.evaluate(np.stack([a.ravel(), b.ravel()], 1))["train_loss"].reshape(3, 3)
    np.testing.assert_allclose(comp, eager.train_loss, rtol=1e-9)


def test_dataset_roundtrip_and_summary(mlp_space):
    dirs = random_directions(mlp_space, 2, seed=0)
    surf = evaluate_surface(mlp_space, dirs, GridSpec.parse("3x4", "-1:1,-0.5:0.5"), **FAST)
    ds = surf.to_dataset()
    assert ds.train_loss.dims == ("alpha", "beta")
    assert set(ds.data_vars) == {"train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    assert ds.attrs["surface_grid"] == "3x4" and ds.attrs["surface_kind"] == "random"
    assert ds.attrs["surface_normalization"] == "filter" and ds.attrs["surface_ignore"] == "biasbn"
    back = Surface.from_dataset(ds)
    np.testing.assert_array_equal(back.train_loss, surf.train_loss)
    np.testing.assert_array_equal(back.axes[1], surf.axes[1])
    assert back.seed == 0 and back.center_loss == surf.center_loss
    s = surf.to_dict()
    assert s["grid"] == [3, 4] and s["range"] == [[-1.0, 1.0], [-0.5, 0.5]]
    assert s["min_loss"] == np.nanmin(surf.train_loss)


def test_quick_surface(mlp_space):
    surf = quick_surface(mlp_space, grid=(3, 3), span=0.5, seed=2)
    assert surf.shape == (3, 3) and surf.kind == "random" and surf.normalization == "filter"
    assert surf.axes[0].tolist() == [-0.5, 0.0, 0.5]
    assert surf.center_loss == mlp_space.evaluate()[0]


@pytest.mark.filterwarnings("ignore:The .grad attribute:UserWarning")
def test_torchscript_models_are_evaluated_too(mlp_space):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(copy.deepcopy(mlp_space.bundle.module))
    space = ParamSpace(ModelBundle.from_module(scripted, mlp_space.bundle.data))
    assert space.scripted
    dirs = random_directions(mlp_space, 1, seed=0)
    surf = evaluate_surface(space, dirs, GridSpec.parse("3"), **FAST)
    ref = evaluate_surface(mlp_space, dirs, GridSpec.parse("3"), **FAST)
    np.testing.assert_allclose(surf.train_loss, ref.train_loss, rtol=1e-12)


def test_mismatched_grid_and_directions(mlp_space):
    from landscape.errors import ConfigError

    with pytest.raises(ConfigError):
        evaluate_surface(mlp_space, random_directions(mlp_space, 2), GridSpec.parse("3"), **FAST)


def test_all_points_evaluated_once_in_row_major_order(quad_space):
    dirs = random_directions(quad_space, 3, seed=0, ignore="none")
    spec = GridSpec.parse("2x3x2")
    surf = evaluate_surface(quad_space, dirs, spec, **FAST)
    al, be, ga = spec.coordinates()
    for i, j, k in itertools.product(range(2), range(3), range(2)):
        theta = dirs.point([al[i], be[j], ga[k]])
        assert surf.train_loss[i, j, k] == pytest.approx(float(quad_space.loss(theta)), rel=1e-12)


def test_surface_written_after_other_arrays_keeps_its_attributes(tmp_path, mlp_space):
    import xarray as xr

    from landscape.io.rundir import RunDir

    run = RunDir.create(tmp_path / "run", {"command": "test"})
    run.write_arrays(xr.Dataset({"hessian_top_eigenvalues": ("top_k", np.arange(3.0))}))
    surf = evaluate_surface(mlp_space, random_directions(mlp_space, 1), GridSpec.parse("3"), **FAST)
    run.write_arrays(surf.to_dataset())
    ds = run.read_arrays()
    assert "hessian_top_eigenvalues" in ds and ds.attrs["surface_kind"] == "random"
    back = Surface.from_dataset(ds)
    np.testing.assert_array_equal(back.train_loss, surf.train_loss)
    assert back.center_loss == surf.center_loss


def test_checkpoint_slices_reproduce_the_checkpoints_losses(mlp_space, tmp_path):
    from landscape.surface import (
        interpolation_direction,
        load_directions,
        plane_directions,
        save_directions,
    )

    g = torch.Generator().manual_seed(0)
    t = mlp_space.theta0
    a, b, c = (t + 0.2 * torch.randn(t.shape, generator=g, dtype=t.dtype) for _ in range(3))
    refs = [mlp_space.evaluate(th) for th in (a, b, c)]
    line = interpolation_direction(mlp_space, a, b)
    surf = evaluate_surface(mlp_space, line, GridSpec.parse("5", "-0.5:1.5"), **FAST)
    assert surf.axes[0].tolist() == [-0.5, 0.0, 0.5, 1.0, 1.5]
    assert surf.train_loss[1] == refs[0][0]  # origin: exact
    assert surf.train_loss[3] == pytest.approx(refs[1][0], rel=1e-12)
    assert surf.anchors == ((0.0, 1.0),) and surf.center_loss == refs[0][0]
    plane = plane_directions(mlp_space, a, b, c)
    anchors = np.array(plane.anchors).T
    vals = evaluate_points(mlp_space, plane, anchors, **FAST)
    for k in range(3):
        assert vals["train_loss"][k] == pytest.approx(refs[k][0], rel=1e-10)
        assert vals["train_accuracy"][k] == refs[k][1]
    # a saved plane keeps its own origin when loaded back
    p = save_directions(tmp_path / "plane.pt", plane)
    again = load_directions(p, mlp_space)
    assert torch.equal(again.origin, plane.origin) and again.anchors == plane.anchors
