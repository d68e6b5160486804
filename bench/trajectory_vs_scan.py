"""Checkpoints per minute: ``landscape trajectory`` against a ``landscape scan`` per checkpoint.

The run is the trajectory example (a 64→32→10 MLP on digits, a checkpoint every 2
epochs). Ours: :func:`~landscape.pipelines.trajectory.run_trajectory` over all of them
(data loaded once; PCA surface off, so both sides measure checkpoints only), with and
without the LLC. Anchor: what a user would run otherwise, a scan of each checkpoint
(:func:`~landscape.cli.common.load_bundle` then
:func:`~landscape.pipelines.scan.run_scan` with the default configuration, its quick
surface off). ``disagreement`` is the largest relative difference of λmax between the two.

Run: ``python -m bench.trajectory_vs_scan [--quick]``; one JSON line per record.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.suite import emit, record


def _checkpoints(folder: Path, quick: bool) -> list[Path]:
    from landscape.experiments.trajectory_demo import DemoRun, save_training_run

    run = DemoRun(epochs=4, every=2) if quick else DemoRun(epochs=12, every=2)
    return save_training_run(folder, run)


def run_cases(quick: bool = False) -> list[dict[str, Any]]:
    """Seconds per checkpoint of both ways, and checkpoints per minute."""
    from landscape.cli.common import LoadOptions, load_bundle
    from landscape.io.data import load_data
    from landscape.io.rundir import RunDir
    from landscape.pipelines.scan import ScanConfig, run_scan
    from landscape.pipelines.trajectory import (
        TrajectoryConfig,
        resolve_checkpoints,
        run_trajectory,
        shared_loader,
    )

    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = _checkpoints(root / "ckpts", quick)
        n = len(paths)
        scan_lam: list[float] = []
        t0 = time.perf_counter()
        for k, p in enumerate(paths):
            bundle, _ = load_bundle(LoadOptions(checkpoint=p))
            run = RunDir.create(root / f"scan{k}", {})
            s = run_scan(bundle, run, ScanConfig(surface=False))
            scan_lam.append(float(s["hessian"]["top_eigenvalues"][0]))
        scan_s = (time.perf_counter() - t0) / n
        for llc in (True, False):
            cfg = TrajectoryConfig(llc=llc, surface=False)
            t0 = time.perf_counter()
            data = load_data("digits")
            tr = run_trajectory(
                resolve_checkpoints(root / "ckpts"),
                shared_loader(data),
                RunDir.create(root / f"traj{int(llc)}", {}),
                cfg,
            )
            ours_s = (time.perf_counter() - t0) / n
            lam = [p.lambda_max for p in tr.points]
            dis = max(abs(a - b) / abs(b) for a, b in zip(lam, scan_lam, strict=True))
            out.append(
                record(
                    "trajectory_vs_scan",
                    what="seconds per checkpoint" + (" (with LLC)" if llc else " (no LLC)"),
                    size=f"{n} checkpoints, MLP 2410 params, digits 1438",
                    device="cpu",
                    ours_s=ours_s,
                    anchor="landscape scan per checkpoint (default, no surface)",
                    anchor_s=scan_s,
                    disagreement=dis,
                    ours_checkpoints_per_min=60.0 / ours_s,
                    anchor_checkpoints_per_min=60.0 / scan_s,
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the records as JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 checkpoints instead of 7")
    args = ap.parse_args(argv)
    for rec in run_cases(args.quick):
        emit(rec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
