"""Matrix-free curvature operators: Hessian, generalized Gauss-Newton, empirical Fisher.

One class per curvature over the chunk-summing base
:class:`~landscape.engine.operators.ChunkSumOperator` (curvlinops' shape): each defines the
product of one data chunk, and the base streams the chunks, sums them exactly and divides
by the number of averaging units (samples, or predicted tokens for a per-token loss: the
loss is a mean). :class:`CurvatureOperator` ``(space, theta, kind=..., strategy=...)``
returns the class of ``kind``: :class:`HessianOperator`, :class:`GGNOperator` or
:class:`EmpiricalFisherOperator`.

Hessian-vector product strategies (``strategy=``, an :class:`HVPStrategy` object):

* ``cached`` (:class:`CachedReverse`): reverse-over-reverse on gradient graphs kept from
  the first product (fastest on CPU when the graphs fit in memory);
* ``reverse`` (:class:`Reverse`): reverse-over-reverse, recomputing each chunk's graph per
  product (once per chunk for a block of probes);
* ``forward`` (:class:`ForwardOverReverse`): forward-over-reverse (``jvp`` of ``grad``),
  vmapped over probes in ``matmat`` (fastest on GPUs);
* ``auto``: ``forward`` on accelerators, ``cached`` on the CPU when the data is at most
  a few chunks, else ``reverse``. TorchScript models always use a reverse strategy.

Every product runs with eval-mode BatchNorm written as its per-channel affine map
(:func:`~landscape.engine.affine_norm.affine_eval_batchnorm`): the same function and
derivatives, with a cheaper double backward than PyTorch's batch-norm kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import torch
from torch.func import grad, jvp, vjp, vmap

from landscape.engine.operators import ChunkSumOperator, DenseOperator, Operator
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError

__all__ = [
    "CACHE_MAX_CHUNKS",
    "KINDS",
    "STRATEGIES",
    "CachedReverse",
    "CurvatureOperator",
    "DenseOperator",
    "EmpiricalFisherOperator",
    "ForwardOverReverse",
    "GGNOperator",
    "HVPStrategy",
    "HessianOperator",
    "Operator",
    "Reverse",
    "pick_strategy",
]

KINDS = ("hessian", "ggn", "fisher")
STRATEGIES = ("auto", "cached", "reverse", "forward")
CACHE_MAX_CHUNKS = 8

Chunk = tuple[torch.Tensor, torch.Tensor]
#: ``(x, y) -> (flat gradient with its graph, the leaves it was taken against)``
GraphFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]


def _flat(parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return parts[0].reshape(-1) if len(parts) == 1 else torch.cat([h.reshape(-1) for h in parts])


def pick_strategy(space: ParamSpace, num_chunks: int, strategy: str = "auto") -> str:
    """The HVP strategy ``auto`` resolves to (any other name is returned as given).

    ``forward`` on accelerators; on the CPU, and for TorchScript models everywhere,
    ``cached`` when the data has at most :data:`CACHE_MAX_CHUNKS` chunks, else ``reverse``.

    Args:
        space: the parameter space (its device, and whether it is scripted).
        num_chunks: the number of data chunks a product sums over.
        strategy: a name from :data:`STRATEGIES`.

    Returns:
        ``cached``, ``reverse`` or ``forward``.
    """
    if strategy != "auto":
        return strategy
    if space.device.type != "cpu" and not space.scripted:
        return "forward"
    return "cached" if num_chunks <= CACHE_MAX_CHUNKS else "reverse"


class HVPStrategy:
    """How a chunk's Hessian-vector products are formed.

    :meth:`chunks` turns the data chunks into per-chunk states (a gradient graph, a
    product function), :meth:`matvec` / :meth:`matmat` apply one chunk's Hessian to a
    vector / to rows. ``traced`` says whether the next pass records new graphs.
    """

    name: ClassVar[str]
    traced: bool = True

    def chunks(self, data: Iterable[Chunk]) -> Iterable[Any]:
        """Per-chunk states for one pass over ``data``."""
        return data

    def matvec(self, state: Any, v: torch.Tensor) -> torch.Tensor:
        """The chunk's (unnormalized) Hessian applied to ``v``."""
        raise NotImplementedError

    def matmat(self, state: Any, vs: torch.Tensor) -> torch.Tensor:
        """The chunk's (unnormalized) Hessian applied to each row of ``vs``."""
        return torch.stack([self.matvec(state, v) for v in vs])

    def release(self) -> None:
        """Free cached graphs."""


class Reverse(HVPStrategy):
    """Reverse-over-reverse, building each chunk's gradient graph anew in every pass.

    Args:
        graph: ``(x, y) -> (g, leaves)``, the chunk's gradient with its graph.
    """

    name = "reverse"

    def __init__(self, graph: GraphFn) -> None:
        self.graph = graph

    def matvec(self, state: Chunk, v: torch.Tensor) -> torch.Tensor:
        """Double backward through a fresh graph of the chunk."""
        g, leaves = self.graph(*state)
        return _flat(torch.autograd.grad(g, leaves, grad_outputs=v))

    def matmat(self, state: Chunk, vs: torch.Tensor) -> torch.Tensor:
        """One graph of the chunk, one double backward per row."""
        g, leaves = self.graph(*state)
        return torch.stack(
            [_flat(torch.autograd.grad(g, leaves, grad_outputs=v, retain_graph=True)) for v in vs]
        )


class CachedReverse(HVPStrategy):
    """Reverse-over-reverse on the gradient graphs kept from the first pass.

    Args:
        graph: ``(x, y) -> (g, leaves)``, the chunk's gradient with its graph.
    """

    name = "cached"

    def __init__(self, graph: GraphFn) -> None:
        self.graph = graph
        self._cache: list[tuple[torch.Tensor, list[torch.Tensor]]] | None = None

    @property
    def traced(self) -> bool:  # type: ignore[override]
        """Whether the next pass builds the graphs (none are cached yet)."""
        return self._cache is None

    def chunks(self, data: Iterable[Chunk]) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
        """The cached graphs, or the graphs of ``data``, kept once the pass completes."""
        if self._cache is not None:
            yield from self._cache
            return
        built = []
        for x, y in data:
            built.append(self.graph(x, y))
            yield built[-1]
        self._cache = built

    def matvec(
        self, state: tuple[torch.Tensor, list[torch.Tensor]], v: torch.Tensor
    ) -> torch.Tensor:
        """Double backward through the kept graph."""
        g, leaves = state
        return _flat(torch.autograd.grad(g, leaves, grad_outputs=v, retain_graph=True))

    def release(self) -> None:
        """Drop the kept graphs."""
        self._cache = None


class ForwardOverReverse(HVPStrategy):
    """Forward-over-reverse: ``jvp`` of ``grad`` of the chunk loss, vmapped over rows.

    Args:
        loss_sum: ``(θ, x, y) -> `` the chunk's summed loss.
        theta: the point.
    """

    name = "forward"

    def __init__(
        self,
        loss_sum: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        theta: torch.Tensor,
    ) -> None:
        self.loss_sum = loss_sum
        self.theta = theta

    def chunks(self, data: Iterable[Chunk]) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
        """One Hessian-vector product function per chunk."""
        for x, y in data:
            yield self._hvp(x, y)

    def _hvp(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        loss_sum = self.loss_sum

        def f(th: torch.Tensor) -> torch.Tensor:
            return loss_sum(th, x, y)

        g = grad(f)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            return jvp(g, (self.theta,), (v,))[1]

        return hvp

    def matvec(
        self, state: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor
    ) -> torch.Tensor:
        """``jvp(grad)`` at one probe."""
        return state(v).detach()

    def matmat(
        self, state: Callable[[torch.Tensor], torch.Tensor], vs: torch.Tensor
    ) -> torch.Tensor:
        """``jvp(grad)`` vmapped over the rows."""
        return vmap(state)(vs).detach()


class CurvatureOperator(ChunkSumOperator):
    """Curvature of the mean training loss at θ, applied matrix-free.

    ``CurvatureOperator(space, theta, kind=...)`` returns an instance of the class of
    ``kind``: :class:`HessianOperator`, :class:`GGNOperator` or
    :class:`EmpiricalFisherOperator` (each is also a :class:`CurvatureOperator`).

    Args:
        space: the parameter space (model, data, loss).
        theta: the point (default ``space.theta0``); copied, never modified.
        kind: ``hessian`` (the default), ``ggn`` (generalized Gauss-Newton ``JᵀH_ℓJ``) or
            ``fisher`` (empirical Fisher ``(1/N) Σ gᵢgᵢᵀ`` over per-sample gradients;
            ``N`` is the unit count, so for a per-token loss ``gᵢ`` is a sequence's summed
            gradient). A subclass takes only its own kind.
        strategy: Hessian-vector product strategy (see the module docstring); the name it
            resolves to is ``.strategy``.
        split: ``train`` or ``test``.

    Raises:
        ConfigError: for an unknown kind or strategy, a TorchScript model with anything
            but a reverse Hessian, or an empty split.

    Example:
        >>> from landscape.io import ModelBundle, load_data
        >>> from torch import nn
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> op = CurvatureOperator(ParamSpace(b))
        >>> type(op).__name__, op.matvec(torch.ones(op.dim)).shape
        ('HessianOperator', torch.Size([33]))
    """

    kind: ClassVar[str] = "hessian"

    def __new__(
        cls,
        space: ParamSpace,
        theta: torch.Tensor | None = None,
        *,
        kind: str | None = None,
        strategy: str = "auto",
        split: str = "train",
    ) -> CurvatureOperator:
        """An instance of the class of ``kind`` when called as ``CurvatureOperator``."""
        if cls is CurvatureOperator:
            name = "hessian" if kind is None else kind
            if name not in _CLASSES:
                raise ConfigError(f"unknown curvature {name!r}; use one of {', '.join(KINDS)}.")
            return super().__new__(_CLASSES[name])
        return super().__new__(cls)

    def __init__(
        self,
        space: ParamSpace,
        theta: torch.Tensor | None = None,
        *,
        kind: str | None = None,
        strategy: str = "auto",
        split: str = "train",
    ) -> None:
        if kind is not None and kind != self.kind:
            if kind not in KINDS:
                raise ConfigError(f"unknown curvature {kind!r}; use one of {', '.join(KINDS)}.")
            raise ConfigError(f"{type(self).__name__} is the {self.kind}, not {kind!r}.")
        if strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown HVP strategy {strategy!r}; use one of {', '.join(STRATEGIES)}."
            )
        if space.scripted and (self.kind != "hessian" or strategy == "forward"):
            raise ConfigError(
                "TorchScript models support only the Hessian with a reverse strategy; re-export"
                " with torch.export or give a state_dict and --model for GGN/Fisher."
            )
        super().__init__(space, theta, split=split)
        self.strategy = pick_strategy(space, self._num_chunks(), strategy)


class HessianOperator(CurvatureOperator):
    """The Hessian of the mean loss, through an :class:`HVPStrategy` (``.hvp``).

    Example:
        >>> from landscape.io import ModelBundle, load_data
        >>> from torch import nn
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> HessianOperator(ParamSpace(b), strategy="reverse").hvp.name
        'reverse'
    """

    kind = "hessian"

    def __init__(
        self,
        space: ParamSpace,
        theta: torch.Tensor | None = None,
        *,
        kind: str | None = None,
        strategy: str = "auto",
        split: str = "train",
    ) -> None:
        super().__init__(space, theta, kind=kind, strategy=strategy, split=split)
        self.hvp: HVPStrategy
        if self.strategy == "forward":
            self.hvp = ForwardOverReverse(space.chunk_loss_sum, self.theta)
        elif self.strategy == "cached":
            self.hvp = CachedReverse(self._graph)
        else:
            self.hvp = Reverse(self._graph)

    def _graph(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        _, g, leaves = self.space.grad_graph(self.theta, x, y, create_graph=True)
        return g, leaves

    def _chunks(self) -> Iterable[Any]:
        return self.hvp.chunks(self.space.chunks(self.split))

    def _chunk_matvec(self, chunk: Any, v: torch.Tensor) -> torch.Tensor:
        return self.hvp.matvec(chunk, v)

    def _chunk_matmat(self, chunk: Any, vs: torch.Tensor) -> torch.Tensor:
        return self.hvp.matmat(chunk, vs)

    def _traced(self) -> bool:
        return self.hvp.traced

    def release(self) -> None:
        """Free cached gradient graphs."""
        self.hvp.release()


class GGNOperator(CurvatureOperator):
    """The generalized Gauss-Newton ``(1/N) Σ Jᵀ H_ℓ J`` (``jvp``, ``jvp`` of ``grad``, ``vjp``).

    Products of a block of probes are vmapped. Not for TorchScript models.
    """

    kind = "ggn"

    def _chunk_gvp(self, chunk: Chunk) -> Callable[[torch.Tensor], torch.Tensor]:
        x, y = chunk
        space = self.space
        loss = space.bundle.loss

        def f(th: torch.Tensor) -> torch.Tensor:
            return space.forward(th, x)

        def lo(out: torch.Tensor) -> torch.Tensor:
            return loss.chunk_sum(out, y)

        out0, vjp_fn = vjp(f, self.theta)[:2]
        gl = grad(lo)

        def gvp(v: torch.Tensor) -> torch.Tensor:
            jv = jvp(f, (self.theta,), (v,))[1]
            hjv = jvp(gl, (out0.detach(),), (jv,))[1]
            return vjp_fn(hjv)[0]

        return gvp

    def _chunk_matvec(self, chunk: Chunk, v: torch.Tensor) -> torch.Tensor:
        return self._chunk_gvp(chunk)(v).detach()

    def _chunk_matmat(self, chunk: Chunk, vs: torch.Tensor) -> torch.Tensor:
        return vmap(self._chunk_gvp(chunk))(vs).detach()


class EmpiricalFisherOperator(CurvatureOperator):
    """The empirical Fisher ``(1/N) Σ gᵢgᵢᵀ`` from per-sample gradients (vmapped ``grad``).

    The per-sample gradients are kept after the first pass when they hold at most
    50 million numbers. Not for TorchScript models.
    """

    kind = "fisher"
    KEEP_MAX_NUMBERS: ClassVar[int] = 50_000_000

    def __init__(
        self,
        space: ParamSpace,
        theta: torch.Tensor | None = None,
        *,
        kind: str | None = None,
        strategy: str = "auto",
        split: str = "train",
    ) -> None:
        super().__init__(space, theta, kind=kind, strategy=strategy, split=split)
        self._grads: list[torch.Tensor] | None = None

    def _chunks(self) -> Iterator[torch.Tensor]:
        """Per-chunk per-sample gradients ``(b, dim)``."""
        if self._grads is not None:
            yield from self._grads
            return
        space = self.space

        def single(th: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return space.chunk_loss_sum(th, x.unsqueeze(0), y.unsqueeze(0))

        psg = vmap(grad(single), in_dims=(None, 0, 0))
        kept = []
        for x, y in space.chunks(self.split):
            kept.append(psg(self.theta, x, y).detach())
            yield kept[-1]
        if self.num_samples * self.dim <= self.KEEP_MAX_NUMBERS:
            self._grads = kept

    def _chunk_matvec(self, chunk: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return chunk.T @ (chunk @ v)

    def _chunk_matmat(self, chunk: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
        return (vs @ chunk.T) @ chunk

    def release(self) -> None:
        """Free the kept per-sample gradients."""
        self._grads = None


_CLASSES: dict[str, type[CurvatureOperator]] = {
    "hessian": HessianOperator,
    "ggn": GGNOperator,
    "fisher": EmpiricalFisherOperator,
}
