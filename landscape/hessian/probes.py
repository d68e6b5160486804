"""Random probe vectors for stochastic estimators, drawn from an explicit generator."""

from __future__ import annotations

import torch

from landscape.engine import Operator
from landscape.errors import ConfigError

DISTRIBUTIONS = ("rademacher", "gaussian")

# Probe matrices (batch × dim) stay below this many entries on accelerators.
_MAX_BATCH_ENTRIES = 1 << 27


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``.

    Example:
        >>> g = make_generator(torch.device("cpu"), 0)
        >>> torch.randn(2, generator=g).shape
        torch.Size([2])
    """
    return torch.Generator(device=device).manual_seed(int(seed))


def draw_probes(
    gen: torch.Generator,
    num: int,
    dim: int,
    *,
    distribution: str = "rademacher",
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Draw ``num`` probe vectors of length ``dim`` as rows, with ``E[z zᵀ] = I``.

    Args:
        gen: the random generator (on ``device``).
        num: number of probes.
        dim: probe length.
        distribution: ``rademacher`` (±1 entries) or ``gaussian`` (standard normal).
        device: where the probes live.
        dtype: their floating dtype.

    Returns:
        A tensor of shape ``(num, dim)``.

    Example:
        >>> g = make_generator(torch.device("cpu"), 0)
        >>> z = draw_probes(g, 3, 4, device=torch.device("cpu"), dtype=torch.float64)
        >>> sorted(set(z.abs().flatten().tolist()))
        [1.0]
    """
    if distribution == "rademacher":
        z = torch.randint(0, 2, (num, dim), generator=gen, device=device)
        return z.to(dtype).mul_(2).sub_(1)
    if distribution == "gaussian":
        return torch.randn(num, dim, generator=gen, device=device, dtype=dtype)
    raise ConfigError(
        f"unknown probe distribution {distribution!r}; use one of {', '.join(DISTRIBUTIONS)}."
    )


def probe_batch_size(op: Operator, wanted: int) -> int:
    """How many probes to apply per ``op.matmat`` call.

    On the CPU operators apply probes one by one anyway, so small batches only bound
    memory; on accelerators larger batches let the operator vmap over probes.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> probe_batch_size(DenseOperator(torch.eye(3)), 100)
        8
    """
    cap = 8 if op.device.type == "cpu" else 16
    cap = min(cap, max(1, _MAX_BATCH_ENTRIES // max(1, op.dim)))
    return max(1, min(cap, wanted))


def batches(total: int, size: int) -> list[int]:
    """Split ``total`` items into consecutive batch sizes of at most ``size``.

    Example:
        >>> batches(10, 4)
        [4, 4, 2]
    """
    out = [size] * (total // size)
    if total % size:
        out.append(total % size)
    return out
