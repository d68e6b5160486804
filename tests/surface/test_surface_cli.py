from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.engine import ParamSpace
from landscape.io import ModelBundle, load_data, save
from landscape.models import mlp

runner = CliRunner()
FACTORY = "landscape.models:mlp"
KW = {"in_features": 64, "hidden": 8, "num_classes": 10, "activation": "tanh"}
COMMON = ["--max-samples", "60", "--compile", "off", "--quiet"]


@pytest.fixture()
def ckpts(tmp_path):
    paths = []
    for k in range(3):
        torch.manual_seed(k)
        paths.append(
            save(
                mlp(**KW), tmp_path / f"ck{k}.pt", factory=FACTORY, factory_kwargs=KW, data="digits"
            )
        )
    return paths


def _run(args):
    # typer runs a lone command without its name: the branch alone registers only `surface`
    lone = len(app.registered_commands) == 1 and app.registered_callback is None
    return runner.invoke(app, [*([] if lone else ["surface"]), *map(str, args)])


def _err(res):
    text = res.output  # stdout and stderr together
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert res.exit_code == 2, text
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_surface_command_writes_run_directory(tmp_path, ckpts):
    out = tmp_path / "run"
    res = _run([ckpts[0], "--grid", "3x4", "--range", "-1:1,-0.5:0.5", "--out", out, *COMMON])
    assert res.exit_code == 0, res.output
    ds = xr.open_dataset(out / "results.nc", engine="h5netcdf").load()
    assert ds.train_loss.dims == ("alpha", "beta") and ds.train_loss.shape == (3, 4)
    assert ds.attrs["surface_normalization"] == "filter" and ds.attrs["surface_grid"] == "3x4"
    assert "test_loss" in ds
    d = torch.load(out / "directions.pt", weights_only=True)
    assert d["d1"].numel() == d["d2"].numel() and len(d["names"]) == len(d["shapes"])
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["surface"]["grid"] == [3, 4] and summary["model"]["num_params"] == d["d1"].numel()
    )
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["surface"]["directions"] == "filter"
    # the centre is the checkpoint itself
    space = ParamSpace(
        ModelBundle.from_module(_load(ckpts[0]), load_data("digits", max_samples=60))
    )
    assert float(ds.train_loss[1, 1]) != float(ds.train_loss[0, 0])
    assert summary["surface"]["center_loss"] == pytest.approx(space.evaluate()[0], rel=1e-6)
    # rerunning needs --resume or --overwrite; --resume finishes at once
    assert "--resume" in _err(
        _run([ckpts[0], "--grid", "3x4", "--range", "-1:1,-0.5:0.5", "--out", out, *COMMON])
    )
    res = _run(
        [ckpts[0], "--grid", "3x4", "--range", "-1:1,-0.5:0.5", "--out", out, "--resume", *COMMON]
    )
    assert res.exit_code == 0, res.output
    again = xr.open_dataset(out / "results.nc", engine="h5netcdf").load()
    np.testing.assert_array_equal(again.train_loss.values, ds.train_loss.values)


def _load(path):
    m = mlp(**KW)
    m.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    return m


def test_interpolation_and_plane_commands(tmp_path, ckpts):
    out = tmp_path / "line"
    res = _run(
        [
            ckpts[0],
            "--directions",
            "interpolate",
            "--checkpoints",
            ckpts[1],
            ckpts[2],
            "--grid",
            "4",
            "--range",
            "-1:2",
            "--out",
            out,
            *COMMON,
        ]
    )
    assert res.exit_code == 0, res.output
    ds = xr.open_dataset(out / "results.nc", engine="h5netcdf").load()
    assert ds.alpha.values.tolist() == [-1.0, 0.0, 1.0, 2.0]
    data = load_data("digits", max_samples=60)
    for coord, ck in ((0.0, ckpts[1]), (1.0, ckpts[2])):
        ref = ParamSpace(ModelBundle.from_module(_load(ck), data)).evaluate()[0]
        assert float(ds.train_loss.sel(alpha=coord)) == pytest.approx(ref, rel=1e-5)
    assert list(ds.attrs["surface_anchor_alpha"]) == [0.0, 1.0]

    out = tmp_path / "plane"
    res = _run(
        [
            ckpts[0],
            "--directions",
            "plane",
            "--checkpoints",
            ckpts[0],
            ckpts[1],
            ckpts[2],
            "--grid",
            "3x3",
            "--out",
            out,
            *COMMON,
        ]
    )
    assert res.exit_code == 0, res.output
    ds = xr.open_dataset(out / "results.nc", engine="h5netcdf").load()
    assert ds.attrs["surface_kind"] == "plane" and len(ds.attrs["surface_anchor_beta"]) == 3
    lo, hi = float(ds.alpha.min()), float(ds.alpha.max())
    assert lo < 0.0 and hi > 1.0  # the automatic range shows all three checkpoints


def test_pca_command_with_trajectory_folder(tmp_path, ckpts):
    out = tmp_path / "pca"
    folder = ckpts[0].parent
    res = _run(
        [
            ckpts[2],
            "--directions",
            "pca",
            "--trajectory",
            folder,
            "--grid",
            "3x3",
            "--out",
            out,
            *COMMON,
        ]
    )
    assert res.exit_code == 0, res.output
    ds = xr.open_dataset(out / "results.nc", engine="h5netcdf").load()
    assert ds.trajectory_alpha.dims == ("step",) and ds.trajectory_alpha.size == 3
    ev = np.atleast_1d(ds.attrs["surface_explained_variance"])
    assert ev.shape == (2,) and 0.99 < ev.sum() <= 1.0 + 1e-9


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--grid", "3y3"], "--grid"),
        (["--range", "1:-1"], "--range"),
        (["--range", "-1:1,0:1,0:2"], "--range"),
        (["--directions", "sideways"], "--directions"),
        (["--directions", "plane", "--checkpoints", "{0}", "{1}"], "exactly 3"),
        (["--directions", "pca", "--checkpoints", "{0}"], "at least 2"),
        (["--directions", "interpolate", "--checkpoints", "{0}", "{1}", "{2}"], "exactly 2"),
        (["--dims", "4"], "--dims"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, ckpts, extra, needle):
    args = [a.format(*ckpts) for a in extra]
    line = _err(_run([ckpts[0], *args, "--out", tmp_path / "x", *COMMON]))
    assert needle in line


def test_direction_file_for_another_model_is_refused(tmp_path, ckpts):
    from landscape.surface import random_directions, save_directions

    other = ParamSpace(ModelBundle.from_module(mlp(64, 5, 10), load_data("digits", max_samples=20)))
    f = save_directions(tmp_path / "other.pt", random_directions(other, 2))
    line = _err(
        _run([ckpts[0], "--directions-file", f, "--grid", "3x3", "--out", tmp_path / "y", *COMMON])
    )
    assert "architecture" in line


def test_eigen_directions_use_the_hessian_solver(tmp_path, ckpts, monkeypatch):
    import landscape.hessian

    calls = []

    def dense_top(op, k=5, *, max_iter=None, tol=1e-6, seed=0, return_vectors=False, progress=None):
        h = op.matmat(torch.eye(op.dim, dtype=op.dtype))
        vals, vecs = torch.linalg.eigh(0.5 * (h + h.T).double())
        order = torch.argsort(vals, descending=True)[:k]
        calls.append(k)

        class Pairs:
            values = vals[order].numpy()
            vectors = vecs[:, order].T.numpy()

        return Pairs()

    monkeypatch.setattr(landscape.hessian, "top_eigenpairs", dense_top, raising=False)
    out = tmp_path / "eig"
    res = _run(
        [
            ckpts[0],
            "--directions",
            "eigen",
            "--grid",
            "3x3",
            "--range",
            "-0.5:0.5",
            "--out",
            out,
            *COMMON,
        ]
    )
    assert res.exit_code == 0, res.output
    assert calls == [2]
    ds = xr.open_dataset(out / "results.nc", engine="h5netcdf").load()
    assert ds.attrs["surface_kind"] == "eigen"
    d = torch.load(out / "directions.pt", weights_only=True)
    assert abs(float(d["d1"].double().norm()) - 1.0) < 1e-5
    assert d["info"]["eigenvalues"][0] >= d["info"]["eigenvalues"][1]
    # the top eigenvector is the most curved direction: along it the loss rises faster
    assert float(ds.train_loss[0, 1] + ds.train_loss[2, 1]) >= float(
        ds.train_loss[1, 0] + ds.train_loss[1, 2]
    )
