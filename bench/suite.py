"""Shared pieces of the benchmark suite: the JSON record, timing, device choice.

Every case prints one JSON line with at least these keys::

    case, status, what, size, device, ours_s, anchor, anchor_s, ratio, disagreement

``ratio`` is ``anchor_s / ours_s`` (above 1: we are faster); ``disagreement`` is the
relative numerical difference between our answer and the anchor's. ``status`` is ``ok``,
``missing`` (a module has not landed), ``skipped`` (not applicable here, e.g. no GPU) or
``error``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

KEYS = (
    "case",
    "status",
    "what",
    "size",
    "device",
    "ours_s",
    "anchor",
    "anchor_s",
    "ratio",
    "disagreement",
)


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _clean(x.tolist())
    if hasattr(x, "item") and not isinstance(x, str):
        try:
            return _clean(x.item())
        except (ValueError, TypeError):
            return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return round(x, 6) if abs(x) >= 1e-3 else float(f"{x:.4g}")
    return x


def record(case: str, **fields: Any) -> dict[str, Any]:
    """A result record with every standard key (missing ones ``None``), ratio filled in."""
    rec: dict[str, Any] = {k: None for k in KEYS}
    rec["case"] = case
    rec["status"] = "ok"
    rec.update(fields)
    ours, anchor = rec.get("ours_s"), rec.get("anchor_s")
    if (
        rec.get("ratio") is None
        and isinstance(ours, int | float)
        and isinstance(anchor, int | float)
    ):
        rec["ratio"] = anchor / ours if ours > 0 else None
    target = rec.get("target_ratio")
    if target is not None and isinstance(rec.get("ratio"), int | float):
        rec["meets_target"] = bool(rec["ratio"] >= target)
    return rec


def emit(rec: dict[str, Any]) -> None:
    """Print one record as a JSON line (flushed)."""
    sys.stdout.write(json.dumps(_clean(rec)) + "\n")
    sys.stdout.flush()


def sync(device: torch.device | str) -> None:
    """Wait for queued GPU work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | str, repeats: int = 1) -> tuple[Any, float]:
    """Run ``fn`` ``repeats`` times; return the last result and the fastest wall time."""
    best = math.inf
    out = None
    for _ in range(max(1, repeats)):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return out, best


def timed_both(
    fn: Callable[[], Any], device: torch.device | str, repeats: int = 1
) -> tuple[Any, float, float]:
    """Like :func:`timed`, also returning the fastest process CPU time.

    CPU time is robust to other processes sharing the machine, so scaling fits on a
    busy CPU use it (with one torch thread).
    """
    best_wall, best_cpu = math.inf, math.inf
    out = None
    for _ in range(max(1, repeats)):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        sync(device)
        best_wall = min(best_wall, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return out, best_wall, best_cpu


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def rel_diff(a: Any, b: Any) -> float:
    """``‖a − b‖ / max(‖a‖, tiny)`` for tensors, arrays or numbers."""
    ta = torch.as_tensor(a, dtype=torch.float64).flatten().cpu()
    tb = torch.as_tensor(b, dtype=torch.float64).flatten().cpu()
    n = min(ta.numel(), tb.numel())
    ta, tb = ta[:n], tb[:n]
    return float((ta - tb).norm() / max(float(ta.norm()), 1e-300))
