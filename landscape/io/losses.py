"""Loss functions as per-sample callables, so that chunked sums are exact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from landscape.errors import ConfigError
from landscape.io.importing import resolve_object

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LossSpec:
    """A loss given as per-sample values.

    Attributes:
        name: ``cross_entropy``, ``mse`` or the ``MODULE:FUNCTION`` reference.
        per_sample: maps ``(outputs, targets)`` to a tensor of shape ``(batch,)``.
        classification: whether accuracy (argmax of outputs) is meaningful.
    """

    name: str
    per_sample: PerSampleLoss
    classification: bool

    def chunk_sum(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Sum of per-sample losses over a chunk (divide by the dataset size for the mean)."""
        return self.per_sample(outputs, targets).sum()


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if y.dim() == out.dim() - 1 and out.shape[-1] == 1:
        y = y.unsqueeze(-1)
    if y.dtype != out.dtype:
        y = y.to(out.dtype)
    diff = (out - y).reshape(out.shape[0], -1)
    return 0.5 * (diff**2).sum(dim=1)


def _wrap_user(fn: Callable[..., torch.Tensor]) -> PerSampleLoss:
    """Accept user losses that return per-sample values or a batch mean."""

    def per_sample(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        val = fn(out, y)
        if val.dim() == 0:
            return val.expand(out.shape[0])
        return val.reshape(out.shape[0], -1).sum(dim=1)

    return per_sample


def resolve_loss(name: str | None, targets: torch.Tensor | None = None) -> LossSpec:
    """Build a :class:`LossSpec` from a name.

    ``mse`` is ``½‖f(x) − y‖²`` per sample (the Gaussian negative log-likelihood with σ = 1,
    up to a constant). A user function may return per-sample losses or a batch mean.

    Args:
        name: ``cross_entropy``, ``mse``, ``MODULE:FUNCTION`` or ``None`` (inferred:
            cross-entropy for integer targets, MSE otherwise).
        targets: example targets used to infer the default.

    Returns:
        The loss specification.

    Example:
        >>> spec = resolve_loss(None, torch.tensor([0, 1]))
        >>> spec.name
        'cross_entropy'
    """
    if name is None:
        if targets is not None and targets.dtype.is_floating_point:
            name = "mse"
        else:
            name = "cross_entropy"
    key = name.lower().replace("-", "_")
    if key in {"cross_entropy", "ce", "xent"}:
        return LossSpec("cross_entropy", _cross_entropy, True)
    if key in {"mse", "squared_error", "l2"}:
        return LossSpec("mse", _mse, False)
    if ":" in name:
        fn = resolve_object(name, "--loss")
        if not callable(fn):
            raise ConfigError(f"--loss {name!r} is not callable; point it at a function.")
        return LossSpec(
            name, _wrap_user(fn), targets is None or not targets.dtype.is_floating_point
        )
    raise ConfigError(f"unknown loss {name!r}; use cross_entropy, mse or MODULE:FUNCTION.")
