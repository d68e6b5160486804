"""``landscape scan`` of a transformer state_dict on token data, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from landscape.cli.app import app
from landscape.engine import ParamSpace
from landscape.experiments.demo import build_seeded
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import modular_addition, tiny_transformer

runner = CliRunner()
KW = {"vocab": 8, "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8, "max_len": 4}


def _files(tmp_path: Path) -> tuple[Path, Path, torch.nn.Module]:
    model = build_seeded(tiny_transformer, 0, **KW)
    sd = tmp_path / "sd.pt"
    torch.save(model.state_dict(), sd)
    d = modular_addition(7, seed=0)
    ids = d["input_ids"]
    mask = torch.ones_like(ids)
    mask[::3, -1] = 0  # some padded answers
    tokens = tmp_path / "tokens.pt"
    torch.save(
        {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": d["labels"],
            "input_ids_test": d["input_ids_test"],
            "attention_mask_test": torch.ones_like(d["input_ids_test"]),
            "labels_test": d["labels_test"],
        },
        tokens,
    )
    return sd, tokens, model


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["reverse", "forward"])
def test_scan_transformer_state_dict_with_tokens(tmp_path: Path, strategy: str) -> None:
    sd, tokens, model = _files(tmp_path)
    out = tmp_path / f"run-{strategy}"
    args = [
        "scan", str(sd),
        "--model", "landscape.models:tiny_transformer",
        "--model-kwargs", json.dumps(KW),
        "--data", str(tokens),
        "--batch-size", "16",
        "--dtype", "float64",
        "--strategy", strategy,
        "--out", str(out),
        "--grid", "5x5",
        "--trace-matvecs", "12",
        "--no-figures",
        "--quiet",
    ]  # fmt: skip
    if strategy == "reverse":
        args += ["--exact", "--no-metrics"]  # metrics run in the forward case
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    s = json.loads((out / "summary.json").read_text())
    space = ParamSpace(
        ModelBundle.from_module(model, load_data(str(tokens), batch_size=16), dtype=torch.float64)
    )
    loss, acc = space.evaluate()
    assert s["loss"] == pytest.approx(loss, rel=1e-10)
    assert s["accuracy"] == pytest.approx(acc)
    assert s["data"]["input_keys"] == ["input_ids", "attention_mask"]
    top = s["hessian"]["top_eigenvalues"]
    assert all(a >= b for a, b in zip(top, top[1:], strict=False))
    if strategy == "reverse":
        assert s["hessian"]["exact_trace"] == pytest.approx(
            s["hessian"]["trace"]["mean"], abs=6 * s["hessian"]["trace"]["stderr"] + 1e-6
        )


def test_demo_rejects_unknown_model(tmp_path: Path) -> None:
    r = runner.invoke(app, ["demo", "--model", "rnn", "--out", str(tmp_path / "d"), "--quiet"])
    assert r.exit_code != 0
    assert "unknown --model" in r.output and "Traceback" not in r.output


def test_quick_scan_transformer_completes(tmp_path: Path) -> None:
    sd, tokens, _ = _files(tmp_path)
    out = tmp_path / "run"
    args = [
        "scan", str(sd),
        "--model", "landscape.models:tiny_transformer",
        "--model-kwargs", json.dumps(KW),
        "--data", str(tokens),
        "--loss", "lm",
        "--out", str(out),
        "--preset", "scan_quick",
        "--grid", "3x3",
        "--no-metrics",
        "--no-figures",
        "--quiet",
    ]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["hessian"]["top_eigenvalues"][0] > 0 and 0.0 <= s["accuracy"] <= 1.0


def test_scan_params_and_per_layer_on_a_transformer(tmp_path: Path) -> None:
    from landscape.hessian import dense_hessian

    sd, tokens, model = _files(tmp_path)
    out = tmp_path / "sel"
    glob = "blocks.layers.0.self_attn.*"
    args = [
        "scan", str(sd),
        "--model", "landscape.models:tiny_transformer",
        "--model-kwargs", json.dumps(KW),
        "--data", str(tokens),
        "--dtype", "float64",
        "--params", glob,
        "--per-layer",
        "--out", str(out),
        "--preset", "scan_quick",
        "--no-surface",
        "--no-figures",
        "--quiet",
    ]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["params"] == [glob]
    space = ParamSpace(
        ModelBundle.from_module(model, load_data(str(tokens)), dtype=torch.float64), params=[glob]
    )
    assert s["model"]["num_params"] == space.dim < sum(p.numel() for p in model.parameters())
    ev = torch.linalg.eigvalsh(dense_hessian(space)).numpy()
    assert s["hessian"]["top_eigenvalues"][0] == pytest.approx(ev[-1], rel=1e-6)
    assert s["hessian"]["trace"]["mean"] == pytest.approx(
        ev.sum(), abs=6 * s["hessian"]["trace"]["stderr"] + 1e-8
    )
    rows = s["hessian"]["per_layer"]
    assert rows and all(row["name"].startswith("blocks.layers.0") for row in rows)


def test_a_bad_params_glob_leaves_no_run_directory(tmp_path: Path) -> None:
    sd, tokens, _ = _files(tmp_path)
    out = tmp_path / "bad"
    args = [
        "scan", str(sd),
        "--model", "landscape.models:tiny_transformer",
        "--model-kwargs", json.dumps(KW),
        "--data", str(tokens),
        "--params", "nothing.*",
        "--out", str(out),
        "--quiet",
    ]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "nothing.*" in r.output and "Traceback" not in r.output
    assert not out.exists()
