"""Small reference models, built by name so that bundles can name their factory.

Every factory takes only JSON-friendly keyword arguments and returns a fresh module.
"""

from __future__ import annotations

from torch import nn


def mlp(
    in_features: int = 64,
    hidden: int | list[int] = 32,
    num_classes: int = 10,
    activation: str = "relu",
    bias: bool = True,
) -> nn.Module:
    """A fully connected network that flattens its input.

    Args:
        in_features: input size after flattening.
        hidden: width of the hidden layer, or a list of widths.
        num_classes: outputs.
        activation: ``relu``, ``tanh``, ``leaky_relu`` or ``linear``.
        bias: whether linear layers have biases.

    Example:
        >>> sum(p.numel() for p in mlp(64, 32, 10).parameters())
        2410
    """
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "linear": nn.Identity}
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}")
    layers: list[nn.Module] = [nn.Flatten()]
    prev = in_features
    for w in widths:
        layers += [nn.Linear(prev, w, bias=bias), acts[activation]()]
        prev = w
    layers.append(nn.Linear(prev, num_classes, bias=bias))
    return nn.Sequential(*layers)


def digits_cnn(channels: int = 16, num_classes: int = 10, batchnorm: bool = True) -> nn.Module:
    """A small CNN for 8×8 digit images (about 14k parameters at the default width).

    Example:
        >>> sum(p.numel() for p in digits_cnn().parameters()) > 10000
        True
    """
    c = channels
    norm1: nn.Module = nn.BatchNorm2d(c) if batchnorm else nn.Identity()
    norm2: nn.Module = nn.BatchNorm2d(2 * c) if batchnorm else nn.Identity()
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1),
        norm1,
        nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, padding=1),
        norm2,
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * c * 16, 16),
        nn.ReLU(),
        nn.Linear(16, num_classes),
    )


def tiny_cnn(channels: int = 4, num_classes: int = 10) -> nn.Module:
    """A CNN with BatchNorm small enough for a dense Hessian (about 1.2k parameters).

    Example:
        >>> sum(p.numel() for p in tiny_cnn().parameters()) < 5000
        True
    """
    c = channels
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1),
        nn.BatchNorm2d(c),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c, c, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c * 4, num_classes),
    )


def linear_model(in_features: int = 10, out_features: int = 1, bias: bool = True) -> nn.Module:
    """A linear (affine) model; with MSE its loss is exactly quadratic in θ."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, out_features, bias=bias))


def deep_linear(widths: list[int], bias: bool = False) -> nn.Module:
    """A deep linear network ``x ↦ W_L ⋯ W_1 x`` with layer widths ``widths``.

    Example:
        >>> deep_linear([4, 3, 2])(__import__("torch").zeros(5, 4)).shape
        torch.Size([5, 2])
    """
    layers = [nn.Linear(a, b, bias=bias) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    return nn.Sequential(*layers)
