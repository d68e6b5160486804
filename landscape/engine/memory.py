"""Memory: pick a chunk size from the memory available, and measure peak memory.

Data stays where it was loaded (normally the CPU) and is streamed to the model's device
in chunks (:meth:`ParamSpace.chunks`), so memory on the device grows with the chunk size,
not with the dataset. :func:`choose_chunk_size` measures one Hessian-vector product on
two small batches (peak allocation on CUDA, the saved autograd graph elsewhere), takes
the per-sample cost, and fits as many samples as a memory budget allows. :func:`measure_peak_memory` reports the peak of a
computation: allocated bytes on CUDA, resident set size (RSS) on the CPU — tracemalloc
does not see PyTorch's allocations, so RSS is the honest CPU number.
"""

from __future__ import annotations

import os
import re
import resource
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import torch

from landscape.engine.curvature import CurvatureOperator
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.io.model_bundle import ModelBundle

T = TypeVar("T")

DEFAULT_FRACTION = 0.5
HVP_OVERHEAD = 2.5
FORWARD_FACTOR = 2.0
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_bytes(text: str | int | float) -> int:
    """Parse a memory size like ``8GiB``, ``512MB``, ``1.5e9`` or ``2G`` into bytes.

    Example:
        >>> parse_bytes("2GiB"), parse_bytes("512MB"), parse_bytes(1000)
        (2147483648, 512000000, 1000)
    """
    if isinstance(text, int | float):
        value = int(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        unit = m.group(2).lower() if m else ""
        if m is None or unit not in _UNITS:
            raise ConfigError(
                f"memory size {text!r} does not parse; write it like 8GiB, 512MB or 2e9."
            )
        value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ConfigError(f"memory size {text!r} must be positive.")
    return value


def _meminfo(field: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def available_memory(device: torch.device | str | None = None) -> int:
    """Bytes free for new allocations on ``device``.

    CUDA: ``torch.cuda.mem_get_info``. CPU: ``MemAvailable`` from ``/proc/meminfo``,
    else ``os.sysconf`` available pages, else 4 GiB.

    Example:
        >>> available_memory("cpu") > 0
        True
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    avail = _meminfo("MemAvailable")
    if avail is not None:
        return avail
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3


def graph_bytes(fn: Callable[[], Any]) -> int:
    """Bytes of the distinct tensor storages autograd saves while ``fn`` runs.

    This is the memory a backward pass keeps alive, measured the same way on every
    device (tensors saved for a double backward with ``create_graph=True`` included).

    Example:
        >>> w = torch.ones(3, requires_grad=True)
        >>> graph_bytes(lambda: (w * torch.ones(3)).sum()) > 0
        True
    """
    seen: dict[tuple[str, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
            seen[(str(t.device), st.data_ptr())] = st.nbytes()
        except (RuntimeError, NotImplementedError):
            seen[(str(t.device), id(t))] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return int(sum(seen.values()))


def _reverse_pass(space: ParamSpace, x: torch.Tensor, y: torch.Tensor) -> Callable[[], Any]:
    def run() -> Any:
        _, g, leaves = space.grad_graph(space.theta0, x, y, create_graph=True)
        v = torch.ones_like(g)
        return torch.autograd.grad(g, leaves, grad_outputs=v, allow_unused=True)

    return run


def _hvp_bytes(space: ParamSpace, b: int, strategy: str) -> int:
    bundle = space.bundle
    sub = ParamSpace(
        replace(bundle, data=replace(bundle.data.subset(b), batch_size=b)), params=space.params
    )
    op = CurvatureOperator(sub, strategy=strategy)
    v = torch.ones(sub.dim, device=sub.device, dtype=sub.dtype)
    if space.device.type == "cuda":
        torch.cuda.synchronize(space.device)
        base = torch.cuda.memory_allocated(space.device)
        torch.cuda.reset_peak_memory_stats(space.device)
        op.matvec(v)
        torch.cuda.synchronize(space.device)
        used = torch.cuda.max_memory_allocated(space.device) - base
        op.release()
        return int(used)
    x = bundle.to_device(bundle.data.x_train[:b])
    y = bundle.to_device(bundle.data.y_train[:b])
    inputs = x.numel() * x.element_size() + y.numel() * y.element_size()
    if op.strategy == "forward":  # torch.func hides its graph from saved-tensor hooks
        return int(FORWARD_FACTOR * graph_bytes(_reverse_pass(sub, x, y))) + inputs
    return graph_bytes(lambda: op.matvec(v)) + inputs


def per_sample_bytes(
    space: ParamSpace, *, strategy: str = "auto", sizes: tuple[int, int] = (4, 12)
) -> float:
    """Memory per sample of one Hessian-vector product on one chunk, on the model's device.

    Runs the operator's HVP (``strategy`` as in :class:`CurvatureOperator`) on two small
    training batches and takes the difference, so parameters and other constant costs
    cancel. On CUDA the measured peak allocation is used; elsewhere the autograd graph
    the product saves plus the chunk's inputs (for ``forward``, whose graph torch.func
    hides, twice the reverse-mode graph).

    Example:
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> s = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> per_sample_bytes(s) > 0
        True
    """
    n = space.num_samples("train")
    b1, b2 = min(sizes[0], n), min(sizes[1], n)
    costs = [_hvp_bytes(space, b, strategy) for b in (b1, b2)]
    if b2 > b1:
        slope = (costs[1] - costs[0]) / (b2 - b1)
        if slope > 0:
            return float(slope)
    return float(max(costs[-1], 1)) / max(b2, 1)


def choose_chunk_size(
    space: ParamSpace,
    *,
    memory_budget: int | str | None = None,
    fraction: float = DEFAULT_FRACTION,
    overhead: float = HVP_OVERHEAD,
    max_size: int | None = None,
    strategy: str = "auto",
) -> int:
    """The largest chunk (samples per pass) whose HVP pass fits in a memory budget.

    Args:
        space: the parameter space (the model's device decides where memory is counted).
        memory_budget: bytes (or ``"8GiB"``) to use; default ``fraction`` of the memory
            available on the device now.
        fraction: share of the available memory to use when no budget is given.
        overhead: safety factor on the measured per-sample cost (temporaries,
            allocator slack).
        max_size: upper bound (default: the number of training samples).
        strategy: the HVP strategy that will run (``auto`` resolves as the operator
            does). The ``cached`` strategy keeps every chunk's graph, so its memory grows
            with the data, not the chunk: use ``reverse`` when that does not fit.

    Returns:
        A chunk size between 1 and ``max_size``.

    Raises:
        ConfigError: on a budget or fraction that cannot work.

    Example:
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> s = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> choose_chunk_size(s, memory_budget="1GiB")
        819
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"memory fraction must be in (0, 1], got {fraction}.")
    if overhead <= 0:
        raise ConfigError(f"memory overhead must be positive, got {overhead}.")
    budget = (
        parse_bytes(memory_budget)
        if memory_budget is not None
        else int(available_memory(space.device) * fraction)
    )
    cap = int(max_size) if max_size is not None else space.num_samples("train")
    per = per_sample_bytes(space, strategy=strategy) * overhead
    return int(max(1, min(cap, budget // max(per, 1.0))))


def with_chunk_size(bundle: ModelBundle, chunk_size: int) -> ModelBundle:
    """The same bundle streaming its data in chunks of ``chunk_size`` samples.

    Example:
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> with_chunk_size(b, 100).data.batch_size
        100
    """
    if chunk_size < 1:
        raise ConfigError(f"chunk size must be at least 1, got {chunk_size}.")
    return replace(bundle, data=replace(bundle.data, batch_size=int(chunk_size)))


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_cpu_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def current_memory(device: torch.device | str | None = None) -> int:
    """Bytes in use now: allocated on CUDA, resident set size on the CPU.

    Example:
        >>> current_memory("cpu") > 0
        True
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        return int(torch.cuda.memory_allocated(dev))
    rss = _status_bytes("VmRSS")
    if rss is not None:
        return rss
    return _maxrss()


def _maxrss() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def measure_peak_memory(
    fn: Callable[[], T], device: torch.device | str | None = None
) -> tuple[T, int]:
    """Run ``fn()`` and return ``(its result, peak memory in bytes while it ran)``.

    CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak (bytes held by
    tensors, including those allocated before ``fn``). CPU: the process's peak resident
    set size, reset before ``fn`` where Linux allows it (``/proc/self/clear_refs``), else
    the lifetime peak from ``getrusage``.

    Args:
        fn: the computation.
        device: where to count (default CPU).

    Example:
        >>> out, peak = measure_peak_memory(lambda: torch.ones(1000).sum())
        >>> float(out), peak > 0
        (1000.0, True)
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        result = fn()
        torch.cuda.synchronize(dev)
        return result, int(torch.cuda.max_memory_allocated(dev))
    reset = _reset_cpu_peak()
    result = fn()
    hwm = _status_bytes("VmHWM") if reset else None
    return result, int(hwm if hwm is not None else _maxrss())
