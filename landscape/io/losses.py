"""Loss functions as per-sample callables, so that chunked sums are exact."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from landscape.errors import ConfigError
from landscape.io.importing import resolve_object

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
UnitCount = Callable[[torch.Tensor], torch.Tensor]
Correct = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
IGNORE_INDEX = -100


@dataclass(frozen=True)
class LossSpec:
    """A loss given as per-sample values.

    The mean loss is ``Σ per_sample / Σ units``: with ``units=None`` each sample is one
    unit (the mean over samples); a language-model loss counts its predicted tokens, so
    the mean is per token whatever the chunking.

    Attributes:
        name: ``cross_entropy``, ``mse``, ``gaussian_nll``, ``next_token`` or the
            ``MODULE:FUNCTION`` reference.
        per_sample: maps ``(outputs, targets)`` to a tensor of shape ``(batch,)`` (the sum
            of the sample's unit losses).
        classification: whether accuracy (argmax of outputs) is meaningful.
        units: maps a chunk's targets to its number of averaging units (a 0-d integer
            tensor); ``None``: the number of samples.
        correct: maps ``(outputs, targets)`` to the number of correctly predicted units
            (a 0-d tensor), for losses whose accuracy is not ``argmax(outputs) == targets``.
        reduction: how per-element values become the reported loss, in words.
        sigma: the noise scale of ``gaussian_nll`` (``None`` for other losses).
    """

    name: str
    per_sample: PerSampleLoss
    classification: bool
    units: UnitCount | None = None
    correct: Correct | None = None
    reduction: str = "mean over samples"
    sigma: float | None = None

    def chunk_sum(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Sum of per-sample losses over a chunk (divide by the total units for the mean)."""
        return self.per_sample(outputs, targets).sum()

    def chunk_units(self, targets: torch.Tensor) -> int:
        """Averaging units in a chunk: samples, or what ``units`` counts (tokens).

        Example:
            >>> resolve_loss("next_token").chunk_units(torch.tensor([[1, 2, -100], [3, 4, 5]]))
            3
        """
        if self.units is None:
            return int(targets.shape[0])
        return int(self.units(targets))


def _shifted(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if out.dim() != 3 or y.dim() != 2 or tuple(out.shape[:2]) != tuple(y.shape):
        raise ValueError(
            f"next_token needs logits (batch, seq, vocab) and labels (batch, seq); got"
            f" {tuple(out.shape)} and {tuple(y.shape)}"
        )
    return out[:, :-1], y[:, 1:]


def _next_token(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits, labels = _shifted(out, y)
    per_token = F.cross_entropy(
        logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
    )
    return per_token.sum(dim=1)


def _next_token_units(y: torch.Tensor) -> torch.Tensor:
    return (y[:, 1:] != IGNORE_INDEX).sum()


def _next_token_correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits, labels = _shifted(out, y)
    return ((logits.argmax(dim=-1) == labels) & (labels != IGNORE_INDEX)).sum()


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def _residuals(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``f − y`` per sample, flattened to ``(batch, k)`` (one-hot for class labels)."""
    if not y.is_floating_point() and out.dim() == 2 and out.shape[-1] > 1 and y.dim() == 1:
        # class labels against k outputs: squared error to the one-hot targets
        if int(y.min()) < 0 or int(y.max()) >= out.shape[-1]:
            raise ValueError(f"labels outside [0, {out.shape[-1] - 1}] for one-hot targets")
        y = F.one_hot(y, out.shape[-1])
    if y.dim() == out.dim() - 1 and out.shape[-1] == 1:
        y = y.unsqueeze(-1)
    if tuple(y.shape) != tuple(out.shape):
        raise ValueError(f"targets of shape {tuple(y.shape)} vs outputs {tuple(out.shape)}")
    y = y.to(out.dtype)
    return (out - y).reshape(out.shape[0], -1)


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of squared errors: their mean over samples is ``nn.MSELoss()``."""
    return (_residuals(out, y) ** 2).mean(dim=1)


def _gaussian_nll(sigma: float) -> PerSampleLoss:
    """Per-sample Gaussian NLL ``‖f − y‖²/(2σ²) + (k/2)·log(2πσ²)``."""
    const = 0.5 * math.log(2.0 * math.pi * sigma**2)

    def per_sample(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r = _residuals(out, y)
        return 0.5 * (r**2).sum(dim=1) / sigma**2 + r.shape[1] * const

    return per_sample


def _wrap_user(fn: Callable[..., torch.Tensor]) -> PerSampleLoss:
    """Accept user losses that return per-sample values or a batch mean."""

    def per_sample(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        val = fn(out, y)
        if not isinstance(val, torch.Tensor):
            raise TypeError(f"the loss returned {type(val).__name__}, not a tensor")
        if val.dim() == 0:
            return val.expand(out.shape[0])
        if val.shape[0] != out.shape[0]:
            raise ValueError(
                f"the loss returned shape {tuple(val.shape)} for {out.shape[0]} samples"
            )
        return val.reshape(out.shape[0], -1).sum(dim=1)

    return per_sample


def _user_callable(name: str) -> Callable[..., torch.Tensor]:
    obj = resolve_object(name, "--loss")
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        # a loss class such as torch.nn:CrossEntropyLoss: per-sample values if it can
        try:
            return obj(reduction="none")
        except TypeError:
            try:
                return obj()
            except Exception as exc:  # noqa: BLE001
                raise ConfigError(
                    f"--loss {name!r} cannot be built without arguments ({exc}); point it"
                    " at a function(outputs, targets) instead."
                ) from exc
    if not callable(obj):
        raise ConfigError(f"--loss {name!r} is not callable; point it at a function.")
    return obj


def resolve_loss(name: str | None, targets: torch.Tensor | None = None) -> LossSpec:
    """Build a :class:`LossSpec` from a name.

    ``mse`` is exactly ``torch.nn.MSELoss()``: the mean of squared errors over every
    element. ``gaussian_nll`` is the Gaussian negative log-likelihood with noise σ,
    ``‖f − y‖²/(2σ²) + (k/2)·log(2πσ²)`` per sample, averaged over samples (σ = 1, or
    ``gaussian_nll:0.5`` for σ = 0.5). Integer class labels against ``k > 1`` outputs are
    compared with their one-hot vectors. A user function may return per-sample losses or a
    batch mean; a loss class (``torch.nn:CrossEntropyLoss``) is built with
    ``reduction="none"``.
    ``next_token`` (alias ``lm``) is the causal language-model loss: logits at position
    ``t`` predict label ``t + 1``, labels ``-100`` (and padding) are ignored and the mean
    is over the predicted tokens; its accuracy is the fraction of those tokens predicted.
    It is the default for token data (``input_ids``; see ``ModelBundle.from_module``).

    Args:
        name: ``cross_entropy``, ``mse``, ``gaussian_nll[:SIGMA]``, ``MODULE:FUNCTION`` or
            ``None`` (inferred: cross-entropy for integer targets, MSE otherwise).
        targets: example targets used to infer the default.

    Returns:
        The loss specification.

    Example:
        >>> spec = resolve_loss(None, torch.tensor([0, 1]))
        >>> spec.name
        'cross_entropy'
        >>> f, y = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
        >>> float(resolve_loss("mse").per_sample(f, y)[0]) == float(nn.MSELoss()(f, y))
        True
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
        return LossSpec("mse", _mse, False, reduction="mean over elements (torch.nn.MSELoss)")
    if key.split(":")[0] in {"gaussian_nll", "gaussian"}:
        sigma = _sigma(name)
        return LossSpec(
            "gaussian_nll",
            _gaussian_nll(sigma),
            False,
            reduction=f"Gaussian NLL with sigma={sigma:g}, summed over elements, mean over samples",
            sigma=sigma,
        )
    if key in {"next_token", "lm", "causal_lm"}:
        return LossSpec(
            "next_token",
            _next_token,
            False,
            _next_token_units,
            _next_token_correct,
            reduction="mean over predicted tokens (labels -100 and padding ignored)",
        )
    if ":" in name:
        fn = _user_callable(name)
        return LossSpec(
            name, _wrap_user(fn), targets is None or not targets.dtype.is_floating_point
        )
    raise ConfigError(
        f"unknown loss {name!r}; use cross_entropy, mse, gaussian_nll[:SIGMA], next_token (lm)"
        " or MODULE:FUNCTION."
    )


def _sigma(name: str) -> float:
    """σ of ``gaussian_nll:SIGMA`` (1 when absent)."""
    _, _, text = name.partition(":")
    if not text:
        return 1.0
    try:
        sigma = float(text)
    except ValueError:
        sigma = float("nan")
    if not math.isfinite(sigma) or sigma <= 0:
        raise ConfigError(
            f"--loss {name!r}: sigma must be a positive number, e.g. gaussian_nll:0.5."
        )
    return sigma
