"""Frobenius norm by random probes: ``‖A‖_F² = E‖A z‖²`` for ``E[z zᵀ] = I``."""

from __future__ import annotations

import math

from landscape.engine import Operator
from landscape.errors import ConfigError
from landscape.hessian.hutchinson import mean_and_stderr, quadratic_forms
from landscape.progress import Progress
from landscape.results import Estimate


def frobenius_norm(
    op: Operator,
    num_probes: int = 30,
    *,
    seed: int = 0,
    progress: Progress | None = None,
) -> Estimate:
    """Estimate ``‖A‖_F`` from Rademacher probes.

    The mean ``μ`` of ``‖A z‖²`` estimates ``‖A‖_F²``; the result is ``√μ`` with the
    delta-method standard error ``se(μ) / (2√μ)``.

    Args:
        op: a symmetric operator.
        num_probes: number of probes (= matvecs), at least 2.
        seed: seed of the probes.
        progress: optional progress reporter.

    Returns:
        :class:`~landscape.results.Estimate` of the Frobenius norm.

    Example:
        >>> import torch
        >>> from landscape.engine import DenseOperator
        >>> op = DenseOperator(torch.diag(torch.tensor([3.0, 4.0], dtype=torch.float64)))
        >>> frobenius_norm(op, 4).mean
        5.0
    """
    if not isinstance(num_probes, int) or num_probes < 2:
        raise ConfigError(f"the Frobenius estimate needs at least 2 probes, got {num_probes!r}.")
    _, sq = quadratic_forms(
        op, num_probes, seed=seed, progress=progress, description="Frobenius norm"
    )
    mu, se_mu = mean_and_stderr(sq)
    fro = math.sqrt(max(mu, 0.0))
    se = se_mu / (2.0 * fro) if fro > 0 else 0.0
    return Estimate(fro, se, num_probes, "hutchinson-frobenius")
