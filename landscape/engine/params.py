"""``ParamSpace``: the model as a function of one flat parameter vector θ.

Loss values are exact means over the whole split: per-sample losses are summed chunk
by chunk and divided by the number of samples, so the chunk size never changes a value.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from landscape.io.model_bundle import ModelBundle

_NORM_TYPES = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


@dataclass(frozen=True)
class ParamInfo:
    """One named parameter tensor inside θ.

    Attributes:
        name: dotted name as in ``named_parameters``.
        shape: tensor shape.
        offset: start index in θ.
        numel: number of elements.
        role: ``weight`` (conv/linear-like, first dim = filters/rows), ``bias`` (1-D
            parameters of non-norm layers), or ``norm`` (normalization-layer parameters).
        module_type: class name of the owning module.
    """

    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int
    role: str
    module_type: str

    @property
    def slice(self) -> slice:
        """The slice of θ holding this tensor."""
        return slice(self.offset, self.offset + self.numel)


def _role(module: nn.Module | None, pname: str, shape: tuple[int, ...]) -> str:
    if module is not None and isinstance(module, _NORM_TYPES):
        return "norm"
    if len(shape) <= 1:
        return "bias"
    return "weight"


class ParamSpace:
    """The trainable parameters of a bundle's model as one flat vector.

    Args:
        bundle: the model, data and loss.

    Example:
        >>> from landscape.io.data import load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> space = ParamSpace(b)
        >>> space.dim, round(float(space.loss(space.theta0)), 3) > 0
        (33, True)
    """

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle
        module = bundle.module
        self.scripted = bundle.scripted
        modules = dict(module.named_modules())
        infos: list[ParamInfo] = []
        flat: list[torch.Tensor] = []
        frozen: dict[str, torch.Tensor] = {}
        offset = 0
        for name, p in module.named_parameters():
            if not p.requires_grad or not p.is_floating_point():
                frozen[name] = p.detach()
                continue
            owner = modules.get(name.rpartition(".")[0]) if "." in name else module
            shape = tuple(p.shape)
            infos.append(
                ParamInfo(
                    name,
                    shape,
                    offset,
                    p.numel(),
                    _role(owner, name, shape),
                    type(owner).__name__ if owner is not None else "",
                )
            )
            flat.append(p.detach().reshape(-1))
            offset += p.numel()
        self.infos: tuple[ParamInfo, ...] = tuple(infos)
        self.dim = offset
        self.device = bundle.device
        self.dtype = bundle.dtype
        self.theta0 = (
            torch.cat(flat).clone()
            if flat
            else torch.zeros(0, device=self.device, dtype=self.dtype)
        )
        self.buffers = {k: v.detach().clone() for k, v in module.named_buffers()}
        self.buffers.update(frozen)
        self._leaves: list[torch.Tensor] | None = None
        if self.scripted:
            named = dict(module.named_parameters())
            self._leaves = [named[i.name] for i in self.infos]
            for t in self._leaves:
                t.requires_grad_(True)

    # -- layout ---------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Names of the tensors in θ, in order."""
        return [i.name for i in self.infos]

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split θ into named tensors (views, differentiable)."""
        return {i.name: theta[i.slice].view(i.shape) for i in self.infos}

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate named tensors (same names and shapes as θ) into a flat vector."""
        return torch.cat([tensors[i.name].reshape(-1) for i in self.infos])

    # -- evaluation -----------------------------------------------------------
    def chunks(
        self, split: str = "train", batch_size: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` chunks of a split, on the model's device and dtype."""
        to = self.bundle.to_device
        for x, y in self.bundle.data.chunks(split, batch_size):
            yield to(x), to(y)

    def num_samples(self, split: str = "train") -> int:
        """Number of samples in a split."""
        d = self.bundle.data
        return d.num_train if split == "train" else d.num_test

    def _set_scripted(self, theta: torch.Tensor) -> None:
        assert self._leaves is not None
        with torch.no_grad():
            for leaf, info in zip(self._leaves, self.infos, strict=True):
                leaf.copy_(theta[info.slice].view(info.shape))

    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Model outputs at θ. Differentiable in θ except for TorchScript models."""
        if self.scripted:
            self._set_scripted(theta.detach())
            return self.bundle.module(x)
        params = self.unflatten(theta)
        params.update(self.buffers)
        return functional_call(self.bundle.module, params, (x,), strict=False)

    def chunk_loss_sum(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum of per-sample losses over one chunk at θ."""
        return self.bundle.loss.chunk_sum(self.forward(theta, x), y)

    def loss(self, theta: torch.Tensor | None = None, split: str = "train") -> torch.Tensor:
        """Mean loss over a split at θ (a 0-d tensor; differentiable unless TorchScript)."""
        theta = self.theta0 if theta is None else theta
        n = self.num_samples(split)
        total = torch.zeros((), device=self.device, dtype=self.dtype)
        for x, y in self.chunks(split):
            total = total + self.chunk_loss_sum(theta, x, y)
        return total / n

    @torch.no_grad()
    def evaluate(
        self, theta: torch.Tensor | None = None, split: str = "train"
    ) -> tuple[float, float]:
        """Return ``(mean loss, accuracy)`` at θ; accuracy is NaN for regression losses."""
        theta = self.theta0 if theta is None else theta
        n = self.num_samples(split)
        if n == 0:
            return float("nan"), float("nan")
        total = 0.0
        correct = 0
        classification = self.bundle.loss.classification
        for x, y in self.chunks(split):
            out = self.forward(theta, x)
            total += float(self.bundle.loss.chunk_sum(out, y))
            if classification and out.dim() >= 2 and not y.is_floating_point():
                correct += int((out.argmax(dim=-1) == y).sum())
        acc = correct / n if classification else float("nan")
        return total / n, acc

    def value_and_grad(
        self, theta: torch.Tensor | None = None, split: str = "train"
    ) -> tuple[float, torch.Tensor]:
        """Mean loss and its gradient with respect to θ, streamed over chunks."""
        theta = self.theta0 if theta is None else theta
        n = self.num_samples(split)
        total = 0.0
        grad = torch.zeros_like(theta)
        for x, y in self.chunks(split):
            loss, g, _ = self.grad_graph(theta, x, y, create_graph=False)
            total += float(loss)
            grad += g.detach()
        return total / n, grad / n

    def grad_graph(
        self,
        theta: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        create_graph: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Chunk loss sum, its flat gradient and the leaves it was taken against.

        With ``create_graph=True`` the gradient keeps its graph, so that
        ``torch.autograd.grad(g @ v, leaves)`` is the Hessian-vector product of the chunk.
        This is the path TorchScript models use.
        """
        if self.scripted:
            self._set_scripted(theta.detach())
            leaves = list(self._leaves or [])
            with torch.enable_grad():
                loss = self.bundle.loss.chunk_sum(self.bundle.module(x), y)
                gs = torch.autograd.grad(loss, leaves, create_graph=create_graph)
            return loss.detach(), torch.cat([g.reshape(-1) for g in gs]), leaves
        leaf = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = self.chunk_loss_sum(leaf, x, y)
            (g,) = torch.autograd.grad(loss, leaf, create_graph=create_graph)
        return loss.detach(), g, [leaf]
