"""``ParamSpace``: the model as a function of one flat parameter vector θ.

Loss values are exact means over the whole split: per-sample losses are summed chunk
by chunk and divided by the number of averaging units (samples; predicted tokens for a
language-model loss), so the chunk size never changes a value.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from landscape.engine.attention import math_attention
from landscape.errors import ConfigError, DataError
from landscape.io.model_bundle import ModelBundle, set_eval

_NORM_TYPES: tuple[type, ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
_NORM_NAMES = {t.__name__ for t in _NORM_TYPES} | {
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "SyncBatchNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
}


def _differentiated(theta: torch.Tensor) -> bool:
    """Whether a forward pass at θ may be differentiated (grad mode, torch.func transform)."""
    if torch.is_grad_enabled():
        return True
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return bool(wrapped(theta)) if wrapped is not None else True


def _type_name(module: nn.Module | None) -> str:
    """Class name of a module; TorchScript modules report their original class."""
    if module is None:
        return ""
    return str(getattr(module, "original_name", None) or type(module).__name__)


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


def select_names(names: Sequence[str], globs: Sequence[str]) -> list[str]:
    """The names matching any of ``globs``, in their order.

    A glob matches a dotted parameter name (``fnmatch``, case-sensitive; ``*`` also
    crosses dots) or a module prefix of it: ``enc.layers.0`` selects every parameter
    under that module, like ``enc.layers.0.*``.

    Raises:
        ConfigError: if a glob matches no name (the message lists a few names).

    Example:
        >>> select_names(["0.weight", "0.bias", "2.weight"], ["*.weight"])
        ['0.weight', '2.weight']
        >>> select_names(["0.weight", "0.bias", "2.weight"], ["0"])
        ['0.weight', '0.bias']
    """

    def hit(name: str, glob: str) -> bool:
        return fnmatch.fnmatchcase(name, glob) or fnmatch.fnmatchcase(name, glob + ".*")

    for glob in globs:
        if not any(hit(n, glob) for n in names):
            shown = ", ".join(names[:6]) + (f", … ({len(names)} in all)" if len(names) > 6 else "")
            raise ConfigError(
                f"--params {glob!r} matches no trainable parameter; available: {shown}."
            )
    return [n for n in names if any(hit(n, g) for g in globs)]


def _role(module: nn.Module | None, pname: str, shape: tuple[int, ...]) -> str:
    if module is not None and (
        isinstance(module, _NORM_TYPES) or _type_name(module) in _NORM_NAMES
    ):
        return "norm"
    if len(shape) <= 1:
        return "bias"
    return "weight"


class ParamSpace:
    """The trainable parameters of a bundle's model as one flat vector.

    Parameters with ``requires_grad=False`` are not part of θ: they are passed to the
    model as constants, like buffers. Buffers (BatchNorm running statistics) are explicit
    copies and the model runs in eval mode, so a loss never depends on how the data is
    chunked. Nothing here changes the bundle's module or the caller's model.

    TorchScript models (which ``torch.func.functional_call`` rejects) take a separate
    path: for each evaluation the private copy's parameters are set to views of θ, so
    ``forward``, ``loss`` and ``grad_graph`` are differentiable in θ all the same and
    Hessian-vector products are reverse-over-reverse.

    ``params`` restricts θ to the parameters matching any of its globs (see
    :func:`select_names`); the others are constants too, so every operator, metric,
    surface and basin measure built on the space is the restriction to the selection
    (the Hessian is the principal submatrix of the full one).

    Args:
        bundle: the model, data and loss.
        params: globs over dotted parameter names (``None``: every trainable parameter).

    Raises:
        ConfigError: if the model has no trainable floating-point parameters, or a glob
            of ``params`` matches none of them.

    Example:
        >>> from landscape.io.data import load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> space = ParamSpace(b)
        >>> space.dim, round(float(space.loss(space.theta0)), 3) > 0
        (33, True)
        >>> ParamSpace(b, params=["bias"]).dim
        3
    """

    def __init__(self, bundle: ModelBundle, params: Sequence[str] | None = None) -> None:
        self.bundle = bundle
        module = bundle.module
        set_eval(module)
        self.scripted = bundle.scripted or isinstance(module, torch.jit.ScriptModule)
        modules = dict(module.named_modules())
        if isinstance(params, str):
            params = [params]
        self.params: tuple[str, ...] | None = None if params is None else tuple(params)
        selected: set[str] | None = None
        if self.params is not None:
            trainable = [
                n for n, p in module.named_parameters() if p.requires_grad and p.is_floating_point()
            ]
            if not self.params:
                raise ConfigError("params is empty; give at least one glob or None for all.")
            selected = set(select_names(trainable, self.params)) if trainable else set()
        infos: list[ParamInfo] = []
        flat: list[torch.Tensor] = []
        frozen: dict[str, torch.Tensor] = {}
        offset = 0
        for name, p in module.named_parameters():
            if (
                not p.requires_grad
                or not p.is_floating_point()
                or (selected is not None and name not in selected)
            ):
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
                    _type_name(owner),
                )
            )
            flat.append(p.detach().reshape(-1))
            offset += p.numel()
        if offset == 0:
            raise ConfigError(
                "the model has no trainable floating-point parameters (all frozen or none);"
                " set requires_grad=True on the parameters to analyse."
            )
        self.infos: tuple[ParamInfo, ...] = tuple(infos)
        self.dim = offset
        self.device = bundle.device
        self.dtype = bundle.dtype
        self.theta0 = torch.cat(flat).detach().clone()
        self.buffers = {k: v.detach().clone() for k, v in module.named_buffers()}
        self.buffers.update(frozen)
        self._units: dict[str, int] = {}
        self._scripted_slots: list[tuple[nn.Module, str, torch.Tensor]] = []
        if self.scripted:
            for info in self.infos:
                path, _, leaf = info.name.rpartition(".")
                owner = module
                for part in path.split(".") if path else []:
                    owner = getattr(owner, part)
                self._scripted_slots.append((owner, leaf, getattr(owner, leaf)))

    # -- layout ---------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Names of the tensors in θ, in order."""
        return [i.name for i in self.infos]

    def indices(self, globs: Sequence[str]) -> torch.Tensor:
        """Indices into θ of the tensors matching ``globs`` (see :func:`select_names`).

        Example:
            >>> from landscape.io.data import load_data
            >>> s = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
            >>> s.indices(["bias"]).tolist()
            [30, 31, 32]
        """
        chosen = set(select_names(self.names, list(globs)))
        parts = [torch.arange(i.offset, i.offset + i.numel) for i in self.infos if i.name in chosen]
        return torch.cat(parts)

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split θ into named tensors (views, differentiable)."""
        self._check_theta(theta)
        return {i.name: theta[i.slice].view(i.shape) for i in self.infos}

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate named tensors (same names and shapes as θ) into a flat vector."""
        return torch.cat([tensors[i.name].reshape(-1) for i in self.infos])

    def _check_theta(self, theta: torch.Tensor) -> None:
        if theta.dim() != 1 or theta.shape[0] != self.dim:
            raise ConfigError(
                f"θ must be a vector of {self.dim} parameters, got shape {tuple(theta.shape)}."
            )

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
        if split not in ("train", "test"):
            raise ConfigError(f"unknown split {split!r}; use 'train' or 'test'.")
        d = self.bundle.data
        return d.num_train if split == "train" else d.num_test

    def num_units(self, split: str = "train") -> int:
        """Number of averaging units of a split: the divisor of every mean.

        The number of samples, unless the loss counts other units (``LossSpec.units``:
        the predicted tokens of a language-model loss). Counted once per split.
        """
        if split not in self._units:
            n = self.num_samples(split)
            spec = self.bundle.loss
            if spec.units is None:
                self._units[split] = n
            else:
                self._units[split] = sum(
                    spec.chunk_units(y) for _, y in self.bundle.data.chunks(split)
                )
        return self._units[split]

    def _nonempty(self, split: str) -> int:
        """The split's unit count, or a DataError when it has no samples or units."""
        n = self.num_samples(split)
        if n == 0:
            raise DataError(
                f"the {split} split is empty; give data with a {split} split"
                " (e.g. --test-fraction 0.2)."
            )
        units = self.num_units(split)
        if units == 0:
            raise DataError(
                f"the {split} split has no tokens to predict (every label is -100 or"
                " padding); check labels and attention_mask."
            )
        return units

    @contextmanager
    def _scripted_params(self, theta: torch.Tensor) -> Iterator[None]:
        """Set the scripted copy's parameters to views of θ for the duration of a call."""
        try:
            for (owner, leaf, _), info in zip(self._scripted_slots, self.infos, strict=True):
                setattr(owner, leaf, theta[info.slice].view(info.shape))
            yield
        finally:
            for owner, leaf, original in self._scripted_slots:
                setattr(owner, leaf, original)

    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Model outputs at θ, differentiable in θ.

        Whenever the call may be differentiated (grad mode on, or θ inside a
        ``torch.func`` transform) attention runs on the math SDPA backend
        (:func:`~landscape.engine.attention.math_attention`), the one with higher-order
        and forward-mode derivatives.
        """
        self._check_theta(theta)
        with math_attention() if _differentiated(theta) else nullcontext():
            if self.scripted:
                with self._scripted_params(theta):
                    return self.bundle.module(x)
            params = self.unflatten(theta)
            params.update(self.buffers)
            return functional_call(self.bundle.module, params, (x,), strict=False)

    def chunk_loss_sum(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum of per-sample losses over one chunk at θ."""
        return self.bundle.loss.chunk_sum(self.forward(theta, x), y)

    def loss(self, theta: torch.Tensor | None = None, split: str = "train") -> torch.Tensor:
        """Mean loss over a split at θ (a 0-d tensor, differentiable in θ).

        The mean is over :meth:`num_units` (samples, or tokens for a per-token loss).
        """
        theta = self.theta0 if theta is None else theta
        n = self._nonempty(split)
        total = torch.zeros((), device=self.device, dtype=self.dtype)
        for x, y in self.chunks(split):
            total = total + self.chunk_loss_sum(theta, x, y)
        return total / n

    @torch.no_grad()
    def evaluate(
        self, theta: torch.Tensor | None = None, split: str = "train"
    ) -> tuple[float, float]:
        """Return ``(mean loss, accuracy)`` at θ.

        Accuracy is NaN for regression losses or non-integer targets; both are NaN for an
        empty split. For a language-model loss it is the fraction of predicted tokens.
        """
        theta = self.theta0 if theta is None else theta
        if self.num_samples(split) == 0 or self.num_units(split) == 0:
            return float("nan"), float("nan")
        n = self.num_units(split)
        spec = self.bundle.loss
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = 0
        counted = spec.classification or spec.correct is not None
        for x, y in self.chunks(split):
            out = self.forward(theta, x)
            total += spec.chunk_sum(out, y).to(torch.float64)
            if spec.correct is not None:
                correct += int(spec.correct(out, y))
            elif counted and out.dim() >= 2 and not y.is_floating_point():
                correct += int((out.argmax(dim=-1) == y).sum())
            else:
                counted = False
        acc = correct / n if counted else float("nan")
        return float(total) / n, acc

    def value_and_grad(
        self, theta: torch.Tensor | None = None, split: str = "train"
    ) -> tuple[float, torch.Tensor]:
        """Mean loss and its gradient with respect to θ, streamed over chunks."""
        theta = self.theta0 if theta is None else theta
        n = self._nonempty(split)
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        grad = torch.zeros_like(theta, dtype=self.dtype)
        for x, y in self.chunks(split):
            loss, g, _ = self.grad_graph(theta, x, y, create_graph=False)
            total += loss.to(torch.float64)
            grad += g.detach()
        return float(total) / n, grad / n

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
        ``torch.autograd.grad(g, leaves, grad_outputs=v)`` is the Hessian-vector product of
        the chunk (reverse-over-reverse; also for TorchScript models). The leaf is a fresh
        detached copy of θ, so cached graphs never see later changes.
        """
        leaf = theta.detach().clone().requires_grad_(True)
        with torch.enable_grad(), math_attention():
            loss = self.chunk_loss_sum(leaf, x, y)
            (g,) = torch.autograd.grad(loss, leaf, create_graph=create_graph)
        return loss.detach(), g, [leaf]
