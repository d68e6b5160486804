"""CIFAR-style ResNet-20/56 (He et al., 2016) and CIFAR-shaped synthetic data, for benchmarks.

BasicBlocks in 3 stages of 16/32/64 channels (n blocks each, depth 6n+2), stride 2 at the
start of stages 2 and 3, parameter-free "option A" shortcuts (subsample + zero-pad
channels), global average pooling and a 64→10 classifier: 0.27M parameters for
ResNet-20, 0.85M for ResNet-56. No torchvision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from landscape.io.data import DataSource


class ShortcutA(nn.Module):
    """Identity shortcut that halves the resolution and zero-pads the new channels."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = (
            ShortcutA(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32×32 inputs with ``depth = 6n + 2``."""

    def __init__(self, depth: int = 20, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        layers: list[nn.Module] = []
        in_ch = width
        for stage, ch in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(in_ch, ch, stride))
                in_ch = ch
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.conv(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def resnet20(num_classes: int = 10) -> CifarResNet:
    """ResNet-20 for CIFAR (0.27M parameters)."""
    return CifarResNet(20, num_classes)


def resnet56(num_classes: int = 10) -> CifarResNet:
    """ResNet-56 for CIFAR (0.85M parameters)."""
    return CifarResNet(56, num_classes)


def cifar_like(
    n: int, *, n_test: int = 0, seed: int = 0, batch_size: int = 1000, num_classes: int = 10
) -> DataSource:
    """Seeded CIFAR-shaped data (3×32×32 images, labels from a random linear teacher)."""
    g = torch.Generator().manual_seed(seed)
    total = n + n_test
    x = torch.randn(total, 3, 32, 32, generator=g)
    w = torch.randn(3 * 32 * 32, num_classes, generator=g) / 55.0
    y = (x.flatten(1) @ w + 0.5 * torch.randn(total, num_classes, generator=g)).argmax(1)
    return DataSource(
        f"cifar-like-{n}",
        x[:n],
        y[:n],
        x[n:] if n_test else None,
        y[n:] if n_test else None,
        batch_size=batch_size,
    )


def num_params(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
