"""The default ``landscape scan`` of a small ResNet, as a user waits for it.

The model is ``digits_resnet`` (2,554 parameters, BatchNorm and identity skips) trained
for 30 epochs on 1,438 digits images. Each scan is the command a user types, in a fresh
process, figures included: the default preset (one Krylov sweep shared by the eigenpairs,
the density, the trace and the Frobenius norm; the metrics reuse its curvature) against
the same preset with ``sweep = false`` (every estimator with its own budget, the metrics
recomputing λmax, trace and Frobenius). Printed: wall time of each whole command, the
HVPs per stage, and the agreement of the top-5 eigenvalues, trace and Frobenius norm.
Target: the default scan in at most 60 s on 2 CPU cores.

Run: ``python -m bench.scan_resnet [--quick]`` (``--quick``: 200 images, 5 epochs, a 5×5
surface, the quick preset).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.suite import emit, record, rel_diff

TARGET_S = 60.0


def _train(path: Path, quick: bool) -> None:
    from landscape.experiments.demo import build_seeded
    from landscape.io.data import load_data
    from landscape.io.save import save
    from landscape.models import digits_resnet
    from landscape.training import TrainConfig, train

    data = load_data("digits", seed=0, max_samples=250 if quick else None)
    model = build_seeded(digits_resnet, 0)
    train(model, data, TrainConfig(epochs=5 if quick else 30, batch_size=64, lr=0.05, seed=0))
    save(
        model,
        path,
        factory="landscape.models:digits_resnet",
        data="digits",
        loss="cross_entropy",
    )


def _scan(ckpt: Path, out: Path, preset: str, quick: bool) -> tuple[float, dict[str, Any]]:
    exe = shutil.which("landscape")
    cmd = [exe] if exe else [sys.executable, "-c", "from landscape.cli.app import main; main()"]
    args = [*cmd, "scan", str(ckpt), "--out", str(out)]
    args += ["--preset", preset, "--quiet"]
    if quick:
        args += ["--max-samples", "250", "--grid", "5x5"]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ))
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError((proc.stdout + proc.stderr).strip().splitlines()[-1])
    return seconds, json.loads((out / "summary.json").read_text())


def _hvps(s: dict[str, Any]) -> dict[str, int]:
    h = s.get("hessian", {})
    return {
        "hessian": int(h.get("matvecs", 0)),
        "metrics": int(s.get("metrics", {}).get("details", {}).get("hessian_matvecs", 0)),
    }


def run_cases(quick: bool = False) -> list[dict[str, Any]]:
    """One record: the default scan against the same scan with separate estimators."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = root / "resnet.pt"
        _train(ckpt, quick)
        base = "scan_quick" if quick else "scan_default"
        from landscape.io.presets import load_preset

        table = load_preset(base, "scan")
        table["sweep"] = False
        lines = ["[scan]"] + [f"{k} = {json.dumps(v)}" for k, v in table.items()]
        separate = root / "separate.toml"
        separate.write_text("\n".join(lines) + "\n")
        ours_s, ours = _scan(ckpt, root / "sweep", base, quick)
        sep_s, theirs = _scan(ckpt, root / "separate", str(separate), quick)
    ho, ht = ours["hessian"], theirs["hessian"]
    return [
        record(
            "scan_resnet",
            what="default scan, whole command (fresh process, figures included)",
            size=f"digits_resnet, {ours['data']['num_samples']} images, "
            f"{ours['model']['num_params']} params",
            device=ours["model"]["device"],
            ours_s=ours_s,
            anchor="the same scan with separate estimators (sweep = false)",
            anchor_s=sep_s,
            disagreement=rel_diff(ho["top_eigenvalues"], ht["top_eigenvalues"]),
            ours_hvps=_hvps(ours),
            anchor_hvps=_hvps(theirs),
            ours_timing=ours.get("timing"),
            anchor_timing=theirs.get("timing"),
            ours_trace=ho["trace"],
            anchor_trace=ht["trace"],
            ours_frobenius=ho["frobenius"],
            anchor_frobenius=ht["frobenius"],
            ours_top_converged=ho["top_converged"],
            target_s=None if quick else TARGET_S,
            meets_target=None if quick else bool(ours_s <= TARGET_S),
        )
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    for rec in run_cases(args.quick):
        emit(rec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
