"""The shipped example: a small CNN trained on scikit-learn's digits in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.io.data import load_data
from landscape.io.losses import resolve_loss
from landscape.io.save import save
from landscape.models import digits_cnn
from landscape.progress import Progress
from landscape.training import TrainConfig, evaluate, train

DEMO_FACTORY = "landscape.models:digits_cnn"


def build_seeded(factory: Any, seed: int, **kwargs: Any) -> nn.Module:
    """Build a model with a seeded initialization, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(**kwargs)


def train_demo_model(
    path: str | Path,
    *,
    seed: int = 0,
    channels: int = 16,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
) -> tuple[Path, dict[str, float]]:
    """Train the demo CNN on digits and save it as a landscape bundle.

    Args:
        path: where to save the bundle.
        seed: seed of the initialization and batch order.
        channels: width of the first convolution.
        config: training settings (default: 15 epochs of SGD, batch 64, lr 0.05).
        progress: progress reporter.

    Returns:
        The path written and ``{train_loss, train_accuracy, test_loss, test_accuracy}``.

    Example:
        >>> import tempfile
        >>> p, m = train_demo_model(tempfile.mkdtemp() + "/m.pt", channels=2,
        ...                         config=TrainConfig(epochs=1))
        >>> p.exists()
        True
    """
    data = load_data("digits", seed=seed)
    cfg = config or TrainConfig(epochs=15, batch_size=64, lr=0.05, seed=seed)
    model = build_seeded(digits_cnn, seed, channels=channels)
    train(model, data, cfg, progress=progress)
    spec = resolve_loss("cross_entropy")
    tl, ta = evaluate(model, data.x_train, data.y_train, spec)
    assert data.x_test is not None and data.y_test is not None
    vl, va = evaluate(model, data.x_test, data.y_test, spec)
    stats = {"train_loss": tl, "train_accuracy": ta, "test_loss": vl, "test_accuracy": va}
    out = save(
        model,
        path,
        factory=DEMO_FACTORY,
        factory_kwargs={"channels": channels},
        data="digits",
        loss="cross_entropy",
        meta={"train": {k: v for k, v in vars(cfg).items()}, **stats},
    )
    return out, stats


TRANSFORMER_FACTORY = "landscape.models:tiny_transformer"
TRANSFORMER_DATA = "landscape.models:modular_addition"
MODULUS = 23


def train_transformer_demo(
    path: str | Path,
    *,
    seed: int = 0,
    d_model: int = 32,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
) -> tuple[Path, dict[str, float]]:
    """Train the tiny causal transformer on ``a + b mod 23`` and save it as a bundle.

    The data is :func:`~landscape.models.modular_addition` (all 529 pairs,
    80/20 split fixed by its own seed); the loss is the next-token loss on the answer
    token, so accuracy is the fraction of sums predicted exactly.

    Args:
        path: where to save the bundle.
        seed: seed of the initialization and batch order.
        d_model: width of the transformer.
        config: training settings (default: 400 epochs of Adam, batch 64, lr 0.01,
            L2 weight decay 0.001).
        progress: progress reporter.

    Returns:
        The path written and ``{train_loss, train_accuracy, test_loss, test_accuracy}``.

    Example:
        >>> import tempfile
        >>> p, m = train_transformer_demo(tempfile.mkdtemp() + "/t.pt", d_model=8,
        ...                               config=TrainConfig(epochs=1, optimizer="adam"))
        >>> p.exists()
        True
    """
    from landscape.models import tiny_transformer

    data = load_data(TRANSFORMER_DATA, seed=seed)
    cfg = config or TrainConfig(
        epochs=400, batch_size=64, lr=1e-2, weight_decay=1e-3, optimizer="adam", seed=seed
    )
    kwargs = {"vocab": MODULUS + 1, "d_model": d_model}
    model = build_seeded(tiny_transformer, seed, **kwargs)
    spec = resolve_loss("next_token")
    train(model, data, cfg, loss=spec, progress=progress)
    tl, ta = evaluate(model, data.x_train, data.y_train, spec, data=data)
    assert data.x_test is not None and data.y_test is not None
    vl, va = evaluate(model, data.x_test, data.y_test, spec, data=data)
    stats = {"train_loss": tl, "train_accuracy": ta, "test_loss": vl, "test_accuracy": va}
    out = save(
        model,
        path,
        factory=TRANSFORMER_FACTORY,
        factory_kwargs=kwargs,
        data=TRANSFORMER_DATA,
        loss="next_token",
        meta={"train": {k: v for k, v in vars(cfg).items()}, **stats},
    )
    return out, stats
