"""End to end: `landscape demo --compare` trains, scans, compares and reports (tiny settings).

This is the whole product at once: training, the Hessian and surface stages of the scan,
the comparison table and statistics, the figures and the HTML report. The Hessian numbers
in the table are checked against a dense float64 Hessian of the saved checkpoints.
"""

from __future__ import annotations

import csv
import functools
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.experiments import demo_compare as dc
from landscape.pipelines.scan import ScanConfig

TINY_SCAN = ScanConfig(top_k=2, bottom_k=1, trace_matvecs=12, frobenius_probes=4, slq_runs=1,
                       slq_steps=15, tol=1e-4, surface=True, surface_grid=(7, 7), metrics=True)  # fmt: skip
TINY_RUNS = (
    dc.DemoRun("b8-lr0.05", 8, 0.05, 80),
    dc.DemoRun("b48-lr0.05", 48, 0.05, 300),
    dc.DemoRun("b240-lr0.05", 240, 0.05, 900),
)
TINY_MODEL = dc.DemoModel("mlp", {"in_features": 64, "hidden": 12, "num_classes": 10})


def _dense_lambda_max(ckpt, max_samples: int, seed: int) -> float:
    from landscape.io.checkpoint import load_model
    from landscape.io.data import load_data

    model = load_model(ckpt).module.double().eval()
    data = load_data("digits", max_samples=max_samples, seed=seed)
    x, y = data.x_train.double(), data.y_train
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def loss(t: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            params[n] = t[i : i + s.numel()].reshape(s)
            i += s.numel()
        out = torch.func.functional_call(model, params, (x,))
        return torch.nn.functional.cross_entropy(out, y)

    h = torch.func.hessian(loss)(theta)
    return float(torch.linalg.eigvalsh(h)[-1])


@pytest.mark.slow
def test_demo_compare_end_to_end(tmp_path, monkeypatch):
    tiny = functools.partial(
        dc.run_demo_compare, runs=TINY_RUNS, model=TINY_MODEL, max_samples=300,
        scan_config=TINY_SCAN, target_loss=0.05,
    )  # fmt: skip
    monkeypatch.setattr(dc, "run_demo_compare", tiny)
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--compare", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    names = [r.name for r in TINY_RUNS]
    for n in names:
        assert (out / "checkpoints" / f"{n}.pt").exists()
        assert json.loads((out / "runs" / n / "summary.json").read_text())["hessian"]

    rows = {r["run"]: r for r in csv.DictReader((out / "table.csv").open())}
    assert sorted(rows) == sorted(names)
    lam = {n: float(rows[n]["lambda_max"]) for n in names}
    # ranks follow the values: the smallest λmax is rank 1 (flattest)
    order = sorted(names, key=lambda n: lam[n])
    assert [int(rows[n]["lambda_max_rank"]) for n in order] == [1, 2, 3]
    # and the values are right: dense float64 Hessians of the saved checkpoints
    for n in names:
        ref = _dense_lambda_max(out / "checkpoints" / f"{n}.pt", 300, 0)
        assert lam[n] == pytest.approx(ref, rel=2e-3, abs=1e-4), (n, lam[n], ref)
    gaps = [float(rows[n]["generalization_gap"]) for n in names]
    assert all(np.isfinite(gaps))

    data = json.loads((out / "table.json").read_text())
    corr = {c["metric"]: c for c in data["correlations"]}
    assert corr["lambda_max"]["n"] == 3 and corr["lambda_max"]["ci_reliable"] is False
    assert "no correlation can be significant" in corr["lambda_max"]["note"]

    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    for n in names:
        assert f"<td>{n}</td>" in html
    assert "Does flatness track generalization?" in html
    assert "λmax (top Hessian eigenvalue)" in html
    for fig in ("curves", "contours", "density", "metric_vs_gap"):
        assert (out / "figures" / f"{fig}.png").exists(), fig


@pytest.mark.slow
def test_compare_checkpoints_share_one_scan_configuration(tmp_path):
    from landscape.experiments.demo import build_seeded
    from landscape.io.save import save
    from landscape.models import mlp

    ckpts = []
    for i, scale in enumerate((0.5, 1.0, 2.0)):
        net = build_seeded(mlp, 0, in_features=64, hidden=6, num_classes=10)
        with torch.no_grad():
            net[-1].weight.mul_(scale)
        ckpts.append(save(net, tmp_path / f"m{i}.pt", factory="landscape.models:mlp",
                          factory_kwargs={"in_features": 64, "hidden": 6, "num_classes": 10},
                          data="digits", loss="cross_entropy"))  # fmt: skip
    preset = tmp_path / "tiny.toml"
    preset.write_text(
        "[scan]\ntop_k = 1\nbottom_k = 0\ntrace_matvecs = 6\nfrobenius_probes = 2\n"
        "slq_runs = 1\nslq_steps = 8\nsurface = true\nsurface_grid = [5, 5]\nmetrics = false\n"
    )
    out = tmp_path / "cmp"
    args = ["compare", str(ckpts[0]), str(ckpts[1]), "--out", str(out), "--preset", str(preset),
            "--max-samples", "120", "--quiet", "--no-render-3d", "--bootstrap", "100"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    cfgs = [json.loads((out / "runs" / f"m{i}" / "config.json").read_text()) for i in (0, 1)]
    for key in ("scan", "data", "max_samples", "seed", "test_fraction", "loss"):
        assert cfgs[0][key] == cfgs[1][key], key
    assert cfgs[0]["scan"]["trace_matvecs"] == 6 and cfgs[0]["max_samples"] == 120
    # a run directory plus a new checkpoint: the checkpoint is scanned with the run's settings
    out2 = tmp_path / "cmp2"
    r2 = CliRunner().invoke(app, ["compare", str(out / "runs" / "m0"), str(ckpts[2]), "--out",
                                  str(out2), "--quiet", "--no-render-3d", "--bootstrap", "100"])  # fmt: skip
    assert r2.exit_code == 0, r2.output
    cfg2 = json.loads((out2 / "runs" / "m2" / "config.json").read_text())
    assert cfg2["scan"] == cfgs[0]["scan"] and cfg2["max_samples"] == 120
    rows = list(csv.DictReader((out2 / "table.csv").open()))
    assert [x["run"] for x in rows] == ["m0", "m2"]
