"""Peak memory of one Hessian-vector product vs one forward+backward, per HVP strategy.

Target: HVP peak ≤ 3× the forward+backward peak on the same batch. On the CPU the peak
is the resident set size above the baseline (glibc is told to return big blocks to the
system at once, so RSS follows live tensors); on a GPU, ``max_memory_allocated`` above
the baseline. Also checks :func:`landscape.engine.memory.per_sample_bytes` against the
measured HVP peak.

Run: ``python -m bench.memory [--quick]``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
from typing import Any

import torch

from bench.suite import emit, record, timed
from landscape.engine import CurvatureOperator, ParamSpace
from landscape.engine.memory import current_memory, measure_peak_memory, per_sample_bytes
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import digits_cnn

TARGET = 3.0


def _faithful_rss() -> None:
    """Make freed tensors leave the resident set at once (glibc only; harmless elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: big blocks are mmapped
        libc.mallopt(-1, 0)  # M_TRIM_THRESHOLD: give freed heap back
    except (OSError, AttributeError):
        pass


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _peak_delta(fn: Any, device: torch.device) -> tuple[Any, int, float]:
    _trim()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
    base = current_memory(device)
    (out, seconds), peak = measure_peak_memory(lambda: timed(fn, device), device)
    return out, max(0, peak - base), seconds


def _problem(quick: bool, device: str) -> ParamSpace:
    if device == "cuda":
        from bench.models import cifar_like, resnet20

        torch.manual_seed(0)
        n = 64 if quick else 512
        bundle = ModelBundle.from_module(
            resnet20(), cifar_like(n, batch_size=n), device=torch.device(device)
        )
    else:
        n = 200 if quick else 1000
        torch.manual_seed(0)
        data = load_data("digits", max_samples=n, batch_size=n, test_fraction=0.0)
        width = 8 if quick else 32
        bundle = ModelBundle.from_module(digits_cnn(width), data)
    return ParamSpace(bundle)


def run_cases(quick: bool = False, device: str | None = None) -> list[dict[str, Any]]:
    """One record per (device, strategy): HVP and forward+backward peak memory."""
    devices = [device] if device else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    _faithful_rss()
    out = []
    for dev_name in devices:
        space = _problem(quick, dev_name)
        dev = space.device
        v = torch.randn(space.dim, generator=torch.Generator().manual_seed(0)).to(dev)
        space.value_and_grad()  # warm-up: lazy initialisation is not the peak we want
        CurvatureOperator(space, strategy="reverse").matvec(v)
        _, fb_bytes, fb_s = _peak_delta(space.value_and_grad, dev)
        _, fb_bytes2, _ = _peak_delta(space.value_and_grad, dev)
        fb_bytes = min(fb_bytes, fb_bytes2) if fb_bytes2 > 0 else fb_bytes
        n = space.num_samples()
        for strategy in ("cached", "reverse", "forward"):
            estimate = per_sample_bytes(space, strategy=strategy) * n
            op = CurvatureOperator(space, strategy=strategy)
            _, hvp_bytes, hvp_s = _peak_delta(lambda op=op, v=v: op.matvec(v), dev)
            op.release()
            del op
            ratio = hvp_bytes / fb_bytes if fb_bytes > 0 else None
            out.append(
                record(
                    "memory",
                    what=f"HVP peak memory ({strategy})",
                    size=f"{n} samples, {space.dim} params, one chunk",
                    device=str(dev),
                    ours_s=hvp_s,
                    anchor="forward+backward",
                    anchor_s=fb_s,
                    disagreement=None,
                    peak_memory_bytes=hvp_bytes,
                    anchor_peak_memory_bytes=fb_bytes,
                    memory_ratio=ratio,
                    target_memory_ratio=TARGET,
                    meets_target=None if ratio is None else bool(ratio <= TARGET),
                    estimated_hvp_bytes=int(estimate),
                    measured_over_estimate=hvp_bytes / estimate if estimate > 0 else None,
                )
            )
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
