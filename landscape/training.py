"""A small, seeded training loop for the reference models (demo, presets, experiments)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from landscape.io.data import DataSource
from landscape.io.losses import LossSpec, resolve_loss
from landscape.io.model_bundle import call_model
from landscape.progress import Progress, tracked


@dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    Attributes:
        epochs: passes over the training data.
        batch_size: minibatch size.
        lr: learning rate.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty.
        optimizer: ``sgd`` or ``adam``.
        seed: seed of initialization order and batch shuffling.
        target_loss: stop early once the full training loss is below this.
        max_steps: stop after exactly this many optimizer steps (``None``: no limit).
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    optimizer: str = "sgd"
    seed: int = 0
    target_loss: float | None = None
    max_steps: int | None = None


@dataclass
class TrainResult:
    """Per-epoch history of a training run."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    epochs_run: int = 0
    steps: int = 0


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: LossSpec,
    *,
    data: DataSource | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` in eval mode (restores its train flag).

    ``data`` (whose ``x`` these are) says how to call the model for keyed token inputs;
    means are over the loss's units (tokens for ``next_token``).
    """
    was = model.training
    model.eval()
    total, correct, n = 0.0, 0, 0
    counted = loss.classification or loss.correct is not None
    for i in range(0, x.shape[0], 1024):
        xb, yb = x[i : i + 1024], y[i : i + 1024]
        out = model(xb) if data is None else call_model(model, xb, data)
        total += float(loss.chunk_sum(out, yb))
        n += loss.chunk_units(yb)
        if loss.correct is not None:
            correct += int(loss.correct(out, yb))
        elif loss.classification:
            correct += int((out.argmax(-1) == yb).sum())
    model.train(was)
    return total / n, (correct / n if counted else float("nan"))


def train(
    model: nn.Module,
    data: DataSource,
    config: TrainConfig,
    *,
    loss: LossSpec | str | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data.x_train`` with minibatch SGD or Adam.

    Args:
        model: the module to train (this function is for models the caller owns).
        data: the data source.
        config: training settings.
        loss: loss spec or name (default inferred from targets).
        progress: optional progress reporter (one step per epoch).

    Returns:
        The training history.

    Example:
        >>> from landscape.io.data import load_data
        >>> from landscape.models import mlp
        >>> torch.manual_seed(0) and None
        >>> m = mlp(10, 8, 3)
        >>> r = train(m, load_data("synthetic"), TrainConfig(epochs=2))
        >>> r.epochs_run
        2
    """
    if loss is None and data.keyed:
        loss = "next_token"
    spec = loss if isinstance(loss, LossSpec) else resolve_loss(loss, data.y_train)
    g = torch.Generator().manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(
            params, lr=config.lr, weight_decay=config.weight_decay
        )
    else:
        opt = torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    x, y = data.x_train, data.y_train
    n = x.shape[0]
    result = TrainResult()
    model.train()
    limit = config.max_steps
    with tracked(progress, "training", config.epochs) as task:
        for _ in range(config.epochs):
            if limit is not None and result.steps >= limit:
                break
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, config.batch_size):
                if limit is not None and result.steps >= limit:
                    break
                result.steps += 1
                idx = perm[i : i + config.batch_size]
                opt.zero_grad(set_to_none=True)
                out = call_model(model, x[idx], data)
                lval = spec.chunk_sum(out, y[idx]) / max(spec.chunk_units(y[idx]), 1)
                lval.backward()
                opt.step()
            tl, ta = evaluate(model, x, y, spec, data=data)
            result.train_loss.append(tl)
            result.train_accuracy.append(ta)
            result.epochs_run += 1
            task.advance()
            if config.target_loss is not None and tl <= config.target_loss:
                break
    model.eval()
    opt.zero_grad(set_to_none=True)
    return result
