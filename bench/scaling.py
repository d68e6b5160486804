"""Scaling table: seconds vs grid points, vs data size, vs parameter count.

Each axis doubles one size with the others fixed and fits the slope of log(seconds) on
log(size): a slope near 1 is linear growth. One JSON line per measurement, then one per
axis with the slope.

Run: ``python -m bench.scaling [--quick]``.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from bench.suite import emit, record, timed_both
from landscape.engine import CurvatureOperator, ParamSpace
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import mlp
from landscape.surface.sharded import sharded_grid_eval


def _space(n: int, hidden: int, device: str, batch: int = 512) -> ParamSpace:
    data = load_data("synthetic", max_samples=None, test_fraction=0.0, batch_size=batch)
    reps = -(-n // data.num_train)
    x = data.x_train.repeat(reps, 1)[:n]
    y = data.y_train.repeat(reps)[:n]
    from dataclasses import replace

    data = replace(data, x_train=x, y_train=y)
    torch.manual_seed(0)
    model = mlp(10, [hidden, hidden], 3, activation="tanh")
    return ParamSpace(ModelBundle.from_module(model, data, device=torch.device(device)))


def fit_slope(xs: list[float], ts: list[float]) -> tuple[float, float]:
    """Slope and R² of log(t) against log(x)."""
    lx, lt = np.log(np.asarray(xs, float)), np.log(np.asarray(ts, float))
    slope, icpt = np.polyfit(lx, lt, 1)
    pred = slope * lx + icpt
    ss_res = float(((lt - pred) ** 2).sum())
    ss_tot = float(((lt - lt.mean()) ** 2).sum()) or 1.0
    return float(slope), 1.0 - ss_res / ss_tot


def _axis(
    axis: str, what: str, xs: list[int], run: Any, device: str, repeats: int
) -> list[dict[str, Any]]:
    recs, times = [], []
    for x in xs:
        size, fn = run(x)
        fn()  # warm-up
        _, wall, cpu = timed_both(fn, device, repeats)
        t = cpu if device == "cpu" else wall
        times.append(t)
        recs.append(
            record(
                "scaling",
                what=what,
                size=size,
                device=device,
                ours_s=wall,
                cpu_s=cpu,
                axis=axis,
                x=x,
            )
        )
    slope, r2 = fit_slope(xs, times)
    recs.append(
        record(
            "scaling",
            what=f"log-log slope of seconds vs {axis}",
            size=f"{xs[0]}..{xs[-1]}",
            device=device,
            axis=axis,
            slope=slope,
            r2=r2,
            linear=bool(0.75 <= slope <= 1.25),
            fitted_on="process CPU seconds, 1 thread" if device == "cpu" else "wall seconds",
        )
    )
    return recs


def run_cases(quick: bool = False, device: str | None = None) -> list[dict[str, Any]]:
    """The three scaling axes on a tanh MLP over synthetic data."""
    dev = device or "cpu"
    repeats = 2 if quick else 3
    threads = torch.get_num_threads()
    if dev == "cpu":
        torch.set_num_threads(1)
    try:
        return _run(quick, dev, repeats)
    finally:
        torch.set_num_threads(threads)


def _run(quick: bool, dev: str, repeats: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    base = _space(2048 if quick else 8192, 64 if quick else 256, dev)
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(2, base.dim, generator=g).to(base.device) * 0.01

    def grid(p: int):  # noqa: ANN202
        a = torch.linspace(-1, 1, p, dtype=torch.float64)
        pts = torch.stack([a, a.flip(0)], 1)
        return (
            f"{p} grid points, {base.num_samples()} samples, {base.dim} params",
            lambda: sharded_grid_eval(base, pts, dirs, splits=("train",)),
        )

    gp = [4, 8, 16] if quick else [8, 16, 32, 64]
    out += _axis("grid points", "surface grid evaluation", gp, grid, dev, repeats)

    def data_size(n: int):  # noqa: ANN202
        space = _space(n, 64 if quick else 256, dev)
        op = CurvatureOperator(space, strategy="reverse")
        v = torch.randn(space.dim, generator=torch.Generator().manual_seed(1)).to(space.device)
        return f"{n} samples, {space.dim} params", lambda: op.matvec(v)

    ns = [1024, 2048, 4096] if quick else [4096, 8192, 16384, 32768]
    out += _axis("samples", "Hessian-vector product", ns, data_size, dev, repeats)

    def params(h: int):  # noqa: ANN202
        space = _space(1024 if quick else 2048, h, dev)
        op = CurvatureOperator(space, strategy="reverse")
        v = torch.randn(space.dim, generator=torch.Generator().manual_seed(2)).to(space.device)
        return f"{space.num_samples()} samples, {space.dim} params", lambda: op.matvec(v)

    # the hidden-hidden layer dominates: doubling the width ~quadruples the parameters
    hs = [64, 128, 256] if quick else [128, 256, 512, 1024]
    recs = _axis("parameters", "Hessian-vector product", hs, params, dev, repeats)
    # fit against the parameter count rather than the width
    pts = [r for r in recs if "x" in r and r.get("x") is not None]
    dims = [int(r["size"].split(", ")[1].split()[0]) for r in pts]
    for r, d in zip(pts, dims, strict=True):
        r["x"] = d
    key = "cpu_s" if dev == "cpu" else "ours_s"
    slope, r2 = fit_slope(dims, [r[key] for r in pts])
    recs[-1].update(
        slope=slope, r2=r2, linear=bool(0.75 <= slope <= 1.25), size=f"{dims[0]}..{dims[-1]}"
    )
    out += recs
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    for rec in run_cases(args.quick, args.device):
        emit(rec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
