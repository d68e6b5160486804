"""HVP time, HVP memory and scan time on the tiny transformer against a plain double backward.

The problem is the shipped transformer example: a 2-layer causal pre-LayerNorm transformer
(d_model 32, 4 heads, 18,968 parameters) on ``a + b mod 23`` (423 training sequences),
next-token loss on the answer token. The anchor is the plain HVP a user would write:
``torch.autograd.grad`` of ``g · v`` with ``g`` the gradient taken with ``create_graph``,
on the model's own parameters, with scaled-dot-product attention restricted to the math
backend (the fused CPU kernels have no double backward).

Records (JSON, one per line):

* ``transformer_hvp``: one HVP, ours (``auto``: the cached strategy on the CPU, and
  ``reverse``) against the anchor: per-HVP seconds after one warm-up product, and the
  first product with its warm-up; relative disagreement. Target: parity or better.
* ``transformer_memory``: the HVP's peak memory above the baseline against one forward
  plus backward on the same batch. Target: at most 3×.
* ``transformer_scan``: a default ``run_scan`` (no surface figures) as a user waits for
  it, with its HVP count, against that many anchor HVPs.

Run: ``python -m bench.transformer [--quick]``.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.memory import _faithful_rss, _peak_delta
from bench.suite import emit, record, rel_diff, timed
from landscape.engine import CurvatureOperator, ParamSpace
from landscape.experiments.demo import MODULUS, TRANSFORMER_DATA, build_seeded
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle, call_model
from landscape.models import tiny_transformer


def _problem(quick: bool) -> tuple[ParamSpace, torch.nn.Module, Any]:
    kw = {"vocab": MODULUS + 1, "d_model": 16 if quick else 32}
    model = build_seeded(tiny_transformer, 0, **kw)
    data = load_data(TRANSFORMER_DATA, seed=0)
    bundle = ModelBundle.from_module(model, data, "next_token")
    anchor = copy.deepcopy(model).eval()
    return ParamSpace(bundle), anchor, data


def _plain_hvp(model: torch.nn.Module, data: Any, spec: Any):  # noqa: ANN202
    """The anchor: double backward on the model's parameters under the math backend."""
    params = [p for p in model.parameters() if p.requires_grad]
    x, y = data.x_train, data.y_train
    n = spec.chunk_units(y) if spec.units is not None else x.shape[0]

    def hvp(v: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            loss = spec.chunk_sum(call_model(model, x, data), y) / n
            grads = torch.autograd.grad(loss, params, create_graph=True)
            flat = torch.cat([g.reshape(-1) for g in grads])
            hv = torch.autograd.grad(flat @ v, params)
        return torch.cat([h.reshape(-1) for h in hv])

    def forward_backward() -> None:
        with sdpa_kernel(SDPBackend.MATH):
            loss = spec.chunk_sum(call_model(model, x, data), y) / n
            torch.autograd.grad(loss, params)

    return hvp, forward_backward


def run_cases(quick: bool = False) -> list[dict[str, Any]]:
    """The three records (see the module docstring)."""
    torch.manual_seed(0)
    _faithful_rss()
    space, anchor, data = _problem(quick)
    spec = space.bundle.loss
    size = f"tiny transformer, {space.num_samples()} sequences, {space.dim} params"
    dev = space.device
    v = torch.randn(space.dim, generator=torch.Generator().manual_seed(0))
    plain, fwd_bwd = _plain_hvp(anchor, data, spec)
    reps = 2 if quick else 5
    out: list[dict[str, Any]] = []

    t0 = time.perf_counter()
    theirs = plain(v)
    anchor_first = time.perf_counter() - t0
    _, anchor_s = timed(lambda: plain(v), dev, reps)
    for strategy in ("auto", "reverse"):
        op = CurvatureOperator(space, strategy=strategy)
        t0 = time.perf_counter()
        ours = op.matvec(v)
        first = time.perf_counter() - t0
        _, ours_s = timed(lambda op=op: op.matvec(v), dev, reps)
        out.append(
            record(
                "transformer_hvp",
                what=f"one HVP ({op.strategy})",
                size=size,
                device=str(dev),
                ours_s=ours_s,
                anchor="plain double backward (math attention)",
                anchor_s=anchor_s,
                disagreement=rel_diff(ours, theirs),
                first_product_s=first,
                anchor_first_product_s=anchor_first,
                target_ratio=1.0,
                meets_target=bool(anchor_s / ours_s >= 1.0),
            )
        )
        op.release()

    fwd_bwd()
    _, fb_bytes, fb_s = _peak_delta(fwd_bwd, dev)
    for strategy in ("reverse", "cached"):
        op = CurvatureOperator(space, strategy=strategy)
        _, hvp_bytes, hvp_s = _peak_delta(lambda op=op: op.matvec(v), dev)
        op.release()
        ratio = hvp_bytes / fb_bytes if fb_bytes > 0 else None
        out.append(
            record(
                "transformer_memory",
                what=f"HVP peak memory ({strategy})",
                size=size,
                device=str(dev),
                ours_s=hvp_s,
                anchor="forward+backward",
                anchor_s=fb_s,
                disagreement=None,
                peak_memory_bytes=hvp_bytes,
                anchor_peak_memory_bytes=fb_bytes,
                memory_ratio=ratio,
                target_memory_ratio=3.0,
                meets_target=None if ratio is None else bool(ratio <= 3.0),
            )
        )

    from landscape.io.rundir import RunDir
    from landscape.pipelines.scan import ScanConfig, run_scan

    cfg = ScanConfig(surface_grid=(5, 5) if quick else (21, 21), metrics=not quick)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = RunDir.create(f"{tmp}/run", {})
        summary = run_scan(ModelBundle.from_module(anchor, data, "next_token"), run, cfg)
        scan_s = time.perf_counter() - t0
    hvps = int(summary["hessian"]["matvecs"]) + int(
        summary.get("metrics", {}).get("details", {}).get("hessian_matvecs", 0)
    )
    out.append(
        record(
            "transformer_scan",
            what="default scan (whole call)",
            size=size,
            device=str(dev),
            ours_s=scan_s,
            anchor=f"{hvps} plain HVPs (the scan's HVP count)",
            anchor_s=hvps * anchor_s,
            disagreement=None,
            hvps=hvps,
            timing=summary.get("timing"),
            top_eigenvalues=summary["hessian"]["top_eigenvalues"],
            trace=summary["hessian"]["trace"],
        )
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    for rec in run_cases(args.quick):
        emit(rec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
