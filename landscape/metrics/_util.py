"""Small helpers shared by the metric modules: validation, seeded noise, scalings."""

from __future__ import annotations

import math

import torch

from landscape.engine import ParamSpace
from landscape.errors import ConfigError

SCALES = ("none", "filter", "element")


def positive(name: str, value: float) -> float:
    """Return ``value`` as a float, or raise a one-line :class:`ConfigError`."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number, got {value!r}.") from exc
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}.")
    return v


def positive_int(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` as an int ``≥ minimum``, or raise a one-line :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer ≥ {minimum}, got {value!r}.")
    return value


def point(space: ParamSpace, theta: torch.Tensor | None) -> torch.Tensor:
    """The evaluation point: ``theta`` (checked) or the model's own parameters."""
    if theta is None:
        return space.theta0.detach()
    if not isinstance(theta, torch.Tensor) or theta.shape != (space.dim,):
        shape = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__
        raise ConfigError(
            f"theta must be a flat tensor of {space.dim} parameters, got {shape};"
            " use space.theta0 or space.flatten(...)."
        )
    return theta.detach().to(device=space.device, dtype=space.dtype)


def normal(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise drawn on the CPU in float64 (device-independent), then moved."""
    z = torch.randn(shape, generator=generator, dtype=torch.float64)
    return z.to(device=like.device, dtype=like.dtype)


def check_split(space: ParamSpace, split: str) -> str:
    """Check that ``split`` is ``train`` or ``test`` and holds samples."""
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}.")
    if space.num_samples(split) == 0:
        raise ConfigError(f"the {split} split is empty; give data for it.")
    return split


def noise_scale(space: ParamSpace, theta: torch.Tensor, scale: str) -> torch.Tensor | None:
    """Per-coordinate standard deviation multipliers for a perturbation.

    Args:
        space: gives the split of θ into named tensors.
        theta: the point.
        scale: ``none`` (isotropic, returns ``None``), ``element`` (``|θ_i|``) or
            ``filter`` (every coordinate of filter ``f`` gets ``‖θ_f‖/√n_f``, so that a
            standard normal vector scaled by it has ``E‖δ_f‖² = ‖θ_f‖²``; filters are the
            rows (output channels) of weight tensors, and each 1-D tensor such as a bias
            is one group).

    Returns:
        A vector like ``theta`` or ``None``.
    """
    if scale not in SCALES:
        raise ConfigError(f"unknown perturbation scale {scale!r}; use one of {', '.join(SCALES)}.")
    if scale == "none":
        return None
    if scale == "element":
        return theta.abs()
    out = torch.empty_like(theta)
    for info in space.infos:
        t = theta[info.slice]
        if info.role == "weight" and len(info.shape) >= 2:
            rows = t.view(info.shape[0], -1)
            per = rows.norm(dim=1, keepdim=True) / math.sqrt(rows.shape[1])
            out[info.slice] = per.expand_as(rows).reshape(-1)
        else:
            out[info.slice] = t.norm() / math.sqrt(max(1, info.numel))
    return out


@torch.no_grad()
def loss_at(space: ParamSpace, theta: torch.Tensor, split: str = "train") -> float:
    """Mean loss over a split at θ, as a Python float."""
    return float(space.loss(theta, split))


@torch.no_grad()
def error_at(space: ParamSpace, theta: torch.Tensor, split: str = "train") -> float:
    """Classification error ``1 − accuracy`` at θ (needs a classification loss)."""
    _, acc = space.evaluate(theta, split)
    return 1.0 - acc
