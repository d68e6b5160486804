"""Our self-describing checkpoint: weights plus how to rebuild and evaluate the model.

A bundle is a ``torch.save`` of plain data (tensors, strings, numbers), so it loads with
``weights_only=True``: the factory is looked up by name, never unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.errors import ConfigError
from landscape.io.checkpoint import BUNDLE_KEY, LoadedModel, load_model
from landscape.io.rundir import atomic_write


def save(
    model: nn.Module,
    path: str | Path,
    *,
    factory: str,
    factory_kwargs: dict[str, Any] | None = None,
    data: str | None = None,
    loss: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` as a landscape bundle (atomically).

    Args:
        model: the module; its state_dict is copied to the CPU, the module is untouched.
        path: destination file (``.pt``).
        factory: ``MODULE:FACTORY`` that rebuilds the architecture. Loading calls a
            factory outside ``landscape`` only when the user confirms it with ``--model``
            or ``--trust-checkpoint``.
        factory_kwargs: JSON keyword arguments of the factory.
        data: default ``--data`` for scans of this checkpoint.
        loss: default ``--loss``.
        meta: extra JSON-like information (training settings, metrics).

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> p = save(nn.Linear(2, 2), tempfile.mktemp(suffix=".pt"), factory="torch.nn:Linear",
        ...          factory_kwargs={"in_features": 2, "out_features": 2})
        >>> p.exists()
        True
    """
    path = Path(path)
    if not isinstance(factory, str) or ":" not in factory:
        raise ConfigError(
            f"factory {factory!r} must name the architecture as MODULE:FACTORY, e.g."
            " 'landscape.models:mlp'."
        )
    for what, value in (("factory_kwargs", factory_kwargs), ("meta", meta)):
        try:
            json.dumps(value or {}, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{what} must hold only JSON values (numbers, strings, lists, dicts): {exc};"
                " convert arrays and tensors with .tolist()."
            ) from exc
    for what, spec in (("data", data), ("loss", loss)):
        if spec is not None and not isinstance(spec, str):
            raise ConfigError(
                f"{what} must be a string such as 'digits', got {type(spec).__name__}."
            )
    sd = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    payload = {
        BUNDLE_KEY: 1,
        "factory": factory,
        "factory_kwargs": json.loads(json.dumps(factory_kwargs or {})),
        "state_dict": sd,
        "data": data,
        "loss": loss,
        "meta": json.loads(json.dumps(meta or {})),
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return path


def load_bundle(path: str | Path, *, trust: bool = False) -> LoadedModel:
    """Load a bundle written by :func:`save` (see :func:`landscape.io.load_model`).

    Example:
        >>> import tempfile
        >>> from landscape.models import mlp
        >>> p = save(mlp(4, 3, 2), tempfile.mktemp(suffix=".pt"),
        ...          factory="landscape.models:mlp",
        ...          factory_kwargs={"in_features": 4, "hidden": 3, "num_classes": 2})
        >>> load_bundle(p).factory_kwargs["hidden"]
        3
    """
    return load_model(path, trust=trust)
