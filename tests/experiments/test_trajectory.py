"""`landscape trajectory`'s core: ordering, known answers on a quadratic, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.errors import ConfigError
from landscape.io.data import DataSource
from landscape.io.rundir import RunDir
from landscape.io.save import save
from landscape.models import linear_model, mlp
from landscape.pipelines.trajectory import (
    CheckpointMeasure,
    TrajectoryConfig,
    order_checkpoints,
    path_pca,
    resolve_checkpoints,
    run_trajectory,
    shared_loader,
)

FACTORY = "landscape.models:linear_model"
IN, OUT, N = 4, 2, 40
FAST = TrajectoryConfig(llc=False, weights=False, surface=False)


def _data() -> DataSource:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, IN, generator=g, dtype=torch.float64)
    y = torch.randn(N, OUT, generator=g, dtype=torch.float64)
    xt = torch.randn(10, IN, generator=g, dtype=torch.float64)
    yt = torch.randn(10, OUT, generator=g, dtype=torch.float64)
    return DataSource("quadratic", x, y, xt, yt)


def _hessian_block(data: DataSource) -> np.ndarray:
    """Hessian of torch.nn.MSELoss (mean over N·OUT elements) in one output row's weights."""
    x = data.x_train.numpy()
    return 2.0 * x.T @ x / (N * OUT)


def _gd_iterates(steps: tuple[int, ...] = (0, 5, 10, 20, 40)) -> dict[int, np.ndarray]:
    """Gradient descent on the quadratic from θ* + (two eigen-directions), in float64.

    The start differs from the least-squares minimum θ* only along two eigenvectors of
    the Hessian, so every iterate θ_t − θ_final lies in their 2-D span.
    """
    data = _data()
    x, y = data.x_train.numpy(), data.y_train.numpy()
    w_star = np.linalg.lstsq(x, y, rcond=None)[0].T  # (OUT, IN)
    evals, evecs = np.linalg.eigh(_hessian_block(data))
    w = w_star.copy()
    w[0] += 3.0 * evecs[:, -1]  # output row 0 along the top eigenvector
    w[1] += 2.0 * evecs[:, 0]  # output row 1 along the bottom one
    lr = 0.5 / evals[-1]
    out = {}
    for t in range(max(steps) + 1):
        if t in steps:
            out[t] = w.copy()
        w = w - lr * 2.0 * (w @ x.T - y.T) @ x / (N * OUT)
    return out


def _gd_run(folder: Path, steps: tuple[int, ...] = (0, 5, 10, 20, 40)) -> list[np.ndarray]:
    """Save :func:`_gd_iterates` as bundles with their step; return them as stored.

    The factory builds float32 modules, so the stored iterates are the float32 roundings
    (returned in float64); the 2-D span holds them to that rounding.
    """
    model = linear_model(IN, OUT, bias=False)
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for t, w in _gd_iterates(steps).items():
        with torch.no_grad():
            model[1].weight.copy_(torch.from_numpy(w))
        save(
            model,
            folder / f"gd_{t}.pt",
            factory=FACTORY,
            factory_kwargs={"in_features": IN, "out_features": OUT, "bias": False},
            meta={"step": t},
        )
        saved.append(model[1].weight.detach().double().reshape(-1).numpy().copy())
    return saved


def _loader() -> object:
    return shared_loader(_data(), "mse", dtype=torch.float64)


def test_path_pca_recovers_the_plane_of_gradient_descent_on_a_quadratic() -> None:
    thetas = [torch.from_numpy(w.reshape(-1)) for w in _gd_iterates().values()]
    pca = path_pca(thetas, keep_directions=True)
    assert sum(pca.explained_variance) == pytest.approx(1.0, abs=1e-12)
    assert float(pca.residual.max()) < 1e-10
    assert pca.coordinates[-1].tolist() == [0.0, 0.0]
    # the coordinates reproduce θ_t − θ_final exactly
    b = torch.stack(pca.directions).numpy()
    for t, c in zip(thetas, pca.coordinates, strict=True):
        np.testing.assert_allclose(c @ b, (t - thetas[-1]).numpy(), atol=1e-10)


def test_path_pca_of_a_three_dimensional_path_leaves_a_residual() -> None:
    e = torch.eye(6, dtype=torch.float64)
    thetas = [e[0], e[1], e[2], torch.zeros(6, dtype=torch.float64)]
    pca = path_pca(thetas)
    assert sum(pca.explained_variance) < 0.99
    assert float(pca.residual.max()) > 0.1


def test_trajectory_on_a_quadratic_has_the_analytic_curvature_and_exact_distances(
    tmp_path: Path,
) -> None:
    saved = _gd_run(tmp_path / "ck")
    refs = resolve_checkpoints(tmp_path / "ck")
    run = RunDir.create(tmp_path / "run", {})
    tr = run_trajectory(refs, _loader(), run, FAST)
    assert tr.steps.tolist() == [0, 5, 10, 20, 40]
    block = _hessian_block(_data())
    lam = float(np.linalg.eigvalsh(block)[-1])
    for p, w in zip(tr.points, saved, strict=True):
        assert p.lambda_max == pytest.approx(lam, rel=1e-9)
        assert p.lambda_max_error < 1e-8 and p.lambda_max_converged
        # the Hessian is I_OUT ⊗ block: its trace is OUT·tr(block), exactly (dim 8)
        assert p.trace.mean == pytest.approx(OUT * np.trace(block), rel=1e-9)
        assert p.param_norm == pytest.approx(float(np.linalg.norm(w)), rel=1e-12)
        assert p.distance_first == pytest.approx(float(np.linalg.norm(w - saved[0])), abs=1e-12)
        assert p.distance_last == pytest.approx(float(np.linalg.norm(w - saved[-1])), abs=1e-12)
        assert p.pca_residual < 1e-5  # float32 storage of the iterates
        assert p.gap == pytest.approx(p.test_loss - p.train_loss)
    losses = [p.train_loss for p in tr.points]
    assert losses == sorted(losses, reverse=True)  # gradient descent on a quadratic
    ds = run.read_arrays()
    np.testing.assert_allclose(ds["lambda_max"].values, lam, rtol=1e-9)
    assert ds["step"].values.tolist() == [0, 5, 10, 20, 40]
    summary = run.summary()["trajectory"]
    assert summary["steps"] == [0, 5, 10, 20, 40]
    assert sum(summary["pca"]["explained_variance"]) == pytest.approx(1.0)


def test_the_pca_surface_is_the_quadratic_on_the_plane(tmp_path: Path) -> None:
    saved = _gd_run(tmp_path / "ck", steps=(0, 3, 8, 30))
    cfg = TrajectoryConfig(llc=False, weights=False, surface_grid=(5, 4), surface_compile=False)
    run = RunDir.create(tmp_path / "run", {})
    tr = run_trajectory(resolve_checkpoints(tmp_path / "ck"), _loader(), run, cfg)
    surf = tr.surface
    assert surf is not None and surf.shape == (5, 4)
    thetas = [torch.from_numpy(t) for t in saved]
    b = torch.stack(path_pca(thetas, keep_directions=True).directions).numpy()
    data = _data()
    x, y = data.x_train.numpy(), data.y_train.numpy()
    for i, a in enumerate(surf.axes[0]):
        for j, c in enumerate(surf.axes[1]):
            w = (saved[-1] + a * b[0] + c * b[1]).reshape(OUT, IN)
            expect = float(((x @ w.T - y) ** 2).mean())
            assert surf.train_loss[i, j] == pytest.approx(expect, rel=1e-9)
    # the path lies inside the grid, and results.nc holds both
    coords = np.array([p.pca for p in tr.points])
    for k in range(2):
        assert surf.axes[k][0] < coords[:, k].min() and coords[:, k].max() < surf.axes[k][-1]
    ds = run.read_arrays()
    assert ds["train_loss"].shape == (5, 4)
    np.testing.assert_allclose(ds["path_pc1"].values, coords[:, 0])


def _plain(folder: Path, name: str, seed: int) -> Path:
    torch.manual_seed(seed)
    path = folder / name
    torch.save(mlp(4, 3, 2).state_dict(), path)
    return path


def test_order_comes_from_stored_steps_before_file_names(tmp_path: Path) -> None:
    kw = {"in_features": IN, "out_features": OUT}
    m = linear_model(IN, OUT)
    for name, step in (("a_100.pt", 5), ("b_3.pt", 50), ("c_7.pt", 20)):
        save(m, tmp_path / name, factory=FACTORY, factory_kwargs=kw, meta={"step": step})
    refs = resolve_checkpoints(tmp_path)
    assert [(r.path.name, r.step, r.source) for r in refs] == [
        ("a_100.pt", 5, "meta"),
        ("c_7.pt", 20, "meta"),
        ("b_3.pt", 50, "meta"),
    ]


def test_order_falls_back_to_the_last_integer_in_the_name(tmp_path: Path) -> None:
    for name in ("run1_ckpt_10.pt", "run1_ckpt_2.pt", "run1_ckpt_33.pt"):
        _plain(tmp_path, name, 0)
    (tmp_path / "notes.txt").write_text("x")
    refs = resolve_checkpoints(str(tmp_path / "run1_*.pt"))
    assert [(r.step, r.source) for r in refs] == [(2, "name"), (10, "name"), (33, "name")]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (("x_5.pt", "y_5.pt"), "both have step 5"),
        (("x_5.pt", "final.pt"), "cannot tell the training step of final.pt"),
    ],
)
def test_ambiguous_steps_are_one_line_errors(
    tmp_path: Path, names: tuple[str, ...], message: str
) -> None:
    for n in names:
        _plain(tmp_path, n, 0)
    with pytest.raises(ConfigError, match=message) as info:
        resolve_checkpoints(tmp_path)
    assert "\n" not in str(info.value)


def test_stored_and_missing_steps_do_not_mix(tmp_path: Path) -> None:
    save(linear_model(IN, OUT), tmp_path / "a_1.pt", factory=FACTORY, meta={"step": 1})
    _plain(tmp_path, "b_2.pt", 0)
    with pytest.raises(ConfigError, match="stores its training step but b_2.pt does not"):
        order_checkpoints(sorted(tmp_path.iterdir()))


def test_no_match_and_a_single_checkpoint_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no checkpoints match"):
        resolve_checkpoints(str(tmp_path / "*.pt"))
    _plain(tmp_path, "c_1.pt", 0)
    with pytest.raises(ConfigError, match="at least 2"):
        resolve_checkpoints(tmp_path)


def test_mixed_architectures_are_refused(tmp_path: Path) -> None:
    for step, hidden in ((1, 3), (2, 5)):
        kw = {"in_features": IN, "hidden": hidden, "num_classes": 2}
        save(
            mlp(**kw),
            tmp_path / f"a_{step}.pt",
            factory="landscape.models:mlp",
            factory_kwargs=kw,
        )
    data = DataSource("d", torch.randn(8, IN), torch.randint(0, 2, (8,)))
    with pytest.raises(ConfigError, match="a_2.pt is not the architecture of a_1.pt") as info:
        run_trajectory(
            resolve_checkpoints(tmp_path),
            shared_loader(data),
            RunDir.create(tmp_path / "run", {}),
            FAST,
        )
    assert "\n" not in str(info.value)


def test_resume_skips_measured_checkpoints_and_measures_new_ones(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    _gd_run(ck, steps=(0, 5, 10))
    first = run_trajectory(
        resolve_checkpoints(ck), _loader(), RunDir.create(tmp_path / "run", {}), FAST
    )
    assert first.measured == (0, 5, 10)
    again = run_trajectory(
        resolve_checkpoints(ck), _loader(), RunDir.create(tmp_path / "run", {}, resume=True), FAST
    )
    assert again.measured == ()
    assert [p.seconds for p in again.points] == [p.seconds for p in first.points]
    assert repr(again.points) == repr(first.points)  # NaN accuracies: compare the text
    # training went on: a new checkpoint is measured, the others are not
    _gd_run(tmp_path / "later", steps=(20,))
    (tmp_path / "later" / "gd_20.pt").rename(ck / "gd_20.pt")
    grown = run_trajectory(
        resolve_checkpoints(ck), _loader(), RunDir.create(tmp_path / "run", {}, resume=True), FAST
    )
    assert grown.measured == (20,)
    assert grown.points[-1].distance_last == 0.0
    assert grown.points[0].distance_last > first.points[0].distance_last
    assert RunDir(tmp_path / "run").read_arrays().sizes["step"] == 4


def test_a_changed_file_is_measured_again(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    _gd_run(ck, steps=(0, 5, 10))
    run_trajectory(resolve_checkpoints(ck), _loader(), RunDir.create(tmp_path / "run", {}), FAST)
    m = linear_model(IN, OUT, bias=False).double()
    kw = {"in_features": IN, "out_features": OUT, "bias": False}
    save(m, ck / "gd_5.pt", factory=FACTORY, factory_kwargs=kw, meta={"step": 5})
    again = run_trajectory(
        resolve_checkpoints(ck), _loader(), RunDir.create(tmp_path / "run", {}, resume=True), FAST
    )
    assert again.measured == (5,)


def test_measures_round_trip_through_json(tmp_path: Path) -> None:
    _gd_run(tmp_path / "ck", steps=(0, 5, 10))
    run = RunDir.create(tmp_path / "run", {})
    tr = run_trajectory(resolve_checkpoints(tmp_path / "ck"), _loader(), run, FAST)
    stored = run.summary()["trajectory"]["measured"]["5"]
    back = CheckpointMeasure.from_dict(stored)
    assert math.isnan(back.alpha) and back.alpha_note == "weights off"
    assert back.lambda_max == tr.points[1].lambda_max


def test_llc_and_weight_alpha_are_measured_when_asked(tmp_path: Path) -> None:
    from landscape.io import load_data

    folder = tmp_path / "ck"
    folder.mkdir()
    kw = {"in_features": 10, "hidden": 8, "num_classes": 3}
    for s in (1, 2, 3):
        torch.manual_seed(s)
        save(
            mlp(**kw),
            folder / f"m{s}.pt",
            factory="landscape.models:mlp",
            factory_kwargs=kw,
        )
    cfg = TrajectoryConfig(surface=False)
    tr = run_trajectory(
        resolve_checkpoints(folder),
        shared_loader(load_data("synthetic", max_samples=128)),
        RunDir.create(tmp_path / "run", {}),
        cfg,
    )
    for p in tr.points:
        assert math.isfinite(p.llc.mean) and p.llc.n == 2
        assert p.llc_trustworthy is not None
        # 8x10 and 3x8 matrices are too small for a power-law tail of 10 eigenvalues
        assert math.isnan(p.alpha) and p.alpha_note
    assert any("undefined" in n for n in tr.notes)


def test_stored_steps_of_dict_and_safetensors_checkpoints(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from landscape.pipelines.trajectory import stored_step

    sd = mlp(4, 3, 2).state_dict()
    torch.save({"state_dict": sd, "global_step": 7, "epoch": 1}, tmp_path / "lightning.ckpt")
    save_file(
        {k: v.contiguous() for k, v in sd.items()},
        str(tmp_path / "w.safetensors"),
        metadata={"step": "12"},
    )
    torch.save(sd, tmp_path / "plain_3.pt")
    assert stored_step(tmp_path / "lightning.ckpt") == 7
    assert stored_step(tmp_path / "w.safetensors") == 12
    assert stored_step(tmp_path / "plain_3.pt") is None


def test_a_damaged_record_is_measured_again(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    _gd_run(ck, steps=(0, 5, 10))
    run = RunDir.create(tmp_path / "run", {})
    run_trajectory(resolve_checkpoints(ck), _loader(), run, FAST)
    summary = json.loads(run.summary_path.read_text())
    del summary["trajectory"]["measured"]["5"]["lambda_max"]
    run.summary_path.write_text(json.dumps(summary))
    again = run_trajectory(
        resolve_checkpoints(ck), _loader(), RunDir.create(tmp_path / "run", {}, resume=True), FAST
    )
    assert again.measured == (5,)
