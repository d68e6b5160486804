"""Small reference models, built by name so that bundles can name their factory.

Every factory takes only JSON-friendly keyword arguments and returns a fresh module.
"""

from __future__ import annotations

import torch
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


class _BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and an identity skip connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(x + bn2(conv2(relu(bn1(conv1(x))))))``."""
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


class DigitsResNet(nn.Module):
    """A residual network for 8×8 digit images (see :func:`digits_resnet`)."""

    def __init__(self, channels: int = 8, blocks: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.blocks = nn.Sequential(*[_BasicBlock(channels) for _ in range(blocks)])
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of 8×8 images (``(n, 1, 8, 8)`` or flattened ``(n, 64)``)."""
        if x.dim() == 2:  # flattened 8×8 images
            x = x.view(x.shape[0], 1, 8, 8)
        h = self.blocks(torch.relu(self.bn(self.stem(x))))
        return self.head(h.mean(dim=(2, 3)))


def digits_resnet(channels: int = 8, blocks: int = 2, num_classes: int = 10) -> nn.Module:
    """A small ResNet for 8×8 digits: BatchNorm and identity skips (2,554 parameters).

    A stem convolution, ``blocks`` basic blocks of two 3×3 convolutions with BatchNorm
    and an identity skip, global average pooling and a linear head.

    Example:
        >>> sum(p.numel() for p in digits_resnet().parameters())
        2554
    """
    return DigitsResNet(channels, blocks, num_classes)


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


class TinyTransformer(nn.Module):
    """A causal pre-LayerNorm transformer language model (see :func:`tiny_transformer`)."""

    def __init__(
        self, vocab: int, d_model: int, n_heads: int, n_layers: int, d_ff: int, max_len: int
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=d_ff, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, vocab)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``(batch, seq, vocab)``; position ``t`` sees tokens ``0..t`` only."""
        seq = input_ids.shape[-1]
        pos = torch.arange(seq, device=input_ids.device)
        h = self.embed(input_ids) + self.pos(pos)
        causal = torch.triu(
            torch.full((seq, seq), float("-inf"), device=h.device, dtype=h.dtype), diagonal=1
        )
        pad = None if attention_mask is None else attention_mask == 0
        h = self.blocks(h, mask=causal, src_key_padding_mask=pad, is_causal=True)
        return self.unembed(self.norm(h))


def tiny_transformer(
    vocab: int,
    d_model: int = 32,
    n_heads: int = 4,
    n_layers: int = 2,
    d_ff: int = 64,
    max_len: int = 8,
) -> nn.Module:
    """A tiny causal transformer LM: token + position embeddings, pre-LN encoder blocks.

    Called as ``model(input_ids, attention_mask=None)``; returns logits of shape
    ``(batch, seq, vocab)``. No dropout, so eval and train mode compute the same function.

    Args:
        vocab: vocabulary size.
        d_model: width of the residual stream.
        n_heads: attention heads per block.
        n_layers: transformer blocks.
        d_ff: hidden width of each block's MLP.
        max_len: longest sequence (size of the position embedding).

    Example:
        >>> m = tiny_transformer(24)
        >>> m(torch.zeros(2, 4, dtype=torch.long)).shape
        torch.Size([2, 4, 24])
    """
    return TinyTransformer(vocab, d_model, n_heads, n_layers, d_ff, max_len)


def modular_addition(
    p: int = 23, train_fraction: float = 0.8, seed: int = 0
) -> dict[str, torch.Tensor]:
    """All sums ``a + b mod p`` as token sequences ``[a, b, =, c]`` for :func:`tiny_transformer`.

    The vocabulary is ``0..p`` (``p`` is the ``=`` token). Only the answer is a target:
    labels are ``-100`` except the last position, so the next-token loss scores the
    prediction made at ``=``. The ``p²`` pairs are split at random (seeded) into train and
    test; the result loads with ``--data landscape.models:modular_addition``.

    Args:
        p: the modulus.
        train_fraction: fraction of pairs used for training.
        seed: seed of the split.

    Returns:
        ``{"input_ids", "labels", "input_ids_test", "labels_test"}`` as int64 tensors.

    Example:
        >>> d = modular_addition(5)
        >>> d["input_ids"].shape, d["input_ids_test"].shape
        (torch.Size([20, 4]), torch.Size([5, 4]))
    """
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    c = (a + b) % p
    ids = torch.stack([a, b, torch.full_like(a, p), c], dim=1)
    labels = torch.full_like(ids, -100)
    labels[:, -1] = c
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    n_train = int(round(train_fraction * p * p))
    tr, te = perm[:n_train], perm[n_train:]
    return {
        "input_ids": ids[tr],
        "labels": labels[tr],
        "input_ids_test": ids[te],
        "labels_test": labels[te],
    }
