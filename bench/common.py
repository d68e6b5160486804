"""Small helpers shared by the benchmarks: JSON output, fair timing, digits models and data."""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.io import DataSource, load_data
from landscape.models import digits_cnn, mlp
from landscape.training import TrainConfig, train


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.generic):
        return _clean(x.item())
    if isinstance(x, torch.Tensor):
        return _clean(x.tolist())
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return str(x)
        return float(f"{x:.6g}")
    return x


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON object on one line (floats to 6 significant digits)."""
    print(json.dumps(_clean(obj)), flush=True)


def environment() -> dict[str, Any]:
    """Machine and library versions, for the record."""
    import pyhessian  # noqa: F401

    try:
        from importlib.metadata import version

        pyh = version("pyhessian")
    except Exception:  # noqa: BLE001
        pyh = "unknown"
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pyhessian": pyh,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }


def timed(fn: Callable[[], Any], *, warmup: int = 1, repeat: int = 3) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls of ``fn`` after ``warmup`` calls; and its last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def interleaved(
    fns: dict[str, Callable[[], Any]], *, warmup: int = 1, repeat: int = 5
) -> dict[str, dict[str, float]]:
    """Time several functions in turns (A B C A B C ...) so that machine load hits all alike.

    Returns ``{name: {"median": s, "min": s}}``.
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: {"median": statistics.median(v), "min": min(v)} for k, v in times.items()}


def digits_data(num_samples: int = 1000, *, seed: int = 0) -> DataSource:
    """``num_samples`` digits training images (1×8×8) in one chunk."""
    return load_data("digits", max_samples=num_samples, batch_size=num_samples, seed=seed)


def trained_model(name: str, data: DataSource, *, epochs: int = 10, seed: int = 0) -> nn.Module:
    """A float32 reference model trained briefly (SGD) so that its spectrum is realistic.

    ``cnn``: ``digits_cnn()`` (about 13k parameters, BatchNorm); ``mlp``: a 10-class ReLU
    ``mlp(64, 64, 10)`` (4.8k parameters); at initialization (``epochs=0``) its Hessian has
    nine outlier eigenvalues (one per class direction of the output layer) packed in a
    tight cluster, relative gaps of about 1%: hard for power iteration.
    """
    torch.manual_seed(seed)
    if name == "cnn":
        model = digits_cnn()
    elif name == "mlp":
        model = mlp(64, 64, 10, activation="relu")
    else:
        raise ValueError(f"unknown model {name!r}")
    if epochs > 0:
        train(model, data, TrainConfig(epochs=epochs, lr=0.05, batch_size=64, seed=seed))
    return model.eval()
