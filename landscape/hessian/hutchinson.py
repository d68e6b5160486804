"""Hutchinson's trace estimator (Hutchinson 1990): ``tr(A) = E[zᵀ A z]``."""

from __future__ import annotations

import math

import torch

from landscape.engine import Operator
from landscape.errors import ConfigError
from landscape.hessian.probes import (
    DISTRIBUTIONS,
    batches,
    draw_probes,
    make_generator,
    probe_batch_size,
)
from landscape.progress import Progress, tracked
from landscape.results import Estimate


def quadratic_forms(
    op: Operator,
    num_probes: int,
    *,
    seed: int = 0,
    distribution: str = "rademacher",
    progress: Progress | None = None,
    description: str = "Hutchinson probes",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-probe ``zᵀ A z`` and ``‖A z‖²`` (float64, on the CPU) for random probes ``z``.

    Probes are applied in batches through ``op.matmat``.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> q, s = quadratic_forms(DenseOperator(torch.eye(4, dtype=torch.float64)), 3)
        >>> q.tolist(), s.tolist()
        ([4.0, 4.0, 4.0], [4.0, 4.0, 4.0])
    """
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(
            f"unknown probe distribution {distribution!r}; use one of {', '.join(DISTRIBUTIONS)}."
        )
    gen = make_generator(op.device, seed)
    quad: list[torch.Tensor] = []
    sq: list[torch.Tensor] = []
    size = probe_batch_size(op, num_probes)
    with tracked(progress, description, num_probes) as task:
        for b in batches(num_probes, size):
            z = draw_probes(
                gen, b, op.dim, distribution=distribution, device=op.device, dtype=op.dtype
            )
            az = op.matmat(z).to(dtype=z.dtype)
            quad.append((z * az).sum(dim=1, dtype=torch.float64).cpu())
            sq.append((az * az).sum(dim=1, dtype=torch.float64).cpu())
            task.advance(b)
    return torch.cat(quad), torch.cat(sq)


def mean_and_stderr(samples: torch.Tensor) -> tuple[float, float]:
    """Sample mean and its standard error (``std / √n``, NaN for one sample).

    Example:
        >>> mean_and_stderr(torch.tensor([1.0, 3.0], dtype=torch.float64))
        (2.0, 1.0)
    """
    n = samples.numel()
    mean = float(samples.mean())
    if n < 2:
        return mean, float("nan")
    return mean, float(samples.std(correction=1)) / math.sqrt(n)


def hutchinson_trace(
    op: Operator,
    num_probes: int = 100,
    *,
    seed: int = 0,
    distribution: str = "rademacher",
    progress: Progress | None = None,
) -> Estimate:
    """Estimate ``tr(A)`` as the mean of ``zᵀ A z`` over random probes.

    Args:
        op: a symmetric operator.
        num_probes: number of probes (= matvecs), at least 2.
        seed: seed of the probes.
        distribution: ``rademacher`` (lowest variance for a fixed matrix) or ``gaussian``.
        progress: optional progress reporter (one step per probe).

    Returns:
        :class:`~landscape.results.Estimate` with the standard error of the mean.

    Raises:
        ConfigError: on fewer than 2 probes or an unknown distribution.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> op = DenseOperator(torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64)))
        >>> hutchinson_trace(op, 10).mean  # Rademacher is exact on diagonal matrices
        55.0
    """
    if not isinstance(num_probes, int) or num_probes < 2:
        raise ConfigError(
            f"Hutchinson needs at least 2 probes for a standard error, got {num_probes!r}."
        )
    quad, _ = quadratic_forms(
        op,
        num_probes,
        seed=seed,
        distribution=distribution,
        progress=progress,
        description="Hutchinson trace",
    )
    mean, se = mean_and_stderr(quad)
    return Estimate(mean, se, num_probes, f"hutchinson-{distribution}")
