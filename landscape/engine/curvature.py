"""Matrix-free curvature operators: Hessian, generalized Gauss-Newton, empirical Fisher.

Every estimator in ``hessian``, ``metrics`` and ``basins`` takes an :class:`Operator`:
something with ``dim``, ``device``, ``dtype``, ``matvec`` and ``matmat``. Products are
exact sums over data chunks, divided by the number of averaging units (samples, or
predicted tokens for a per-token loss: the loss is a mean).

Hessian-vector product strategies (``strategy=``):

* ``cached``: reverse-over-reverse on gradient graphs kept from the first product
  (fastest on CPU when the graphs fit in memory);
* ``reverse``: reverse-over-reverse, recomputing each chunk's graph per product;
* ``forward``: forward-over-reverse (``jvp`` of ``grad``), vmapped over probes in
  ``matmat`` (fastest on GPUs);
* ``auto``: ``forward`` on accelerators, ``cached`` on the CPU when the data is at most
  a few chunks, else ``reverse``. TorchScript models always use a reverse strategy.

Every product runs with eval-mode BatchNorm written as its per-channel affine map
(:func:`~landscape.engine.affine_norm.affine_eval_batchnorm`): the same function and
derivatives, with a cheaper double backward than PyTorch's batch-norm kernels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, Protocol, runtime_checkable

import torch
from torch.func import grad, jvp, vjp, vmap

from landscape.engine.affine_norm import affine_eval_batchnorm
from landscape.engine.attention import derivative_error, is_missing_derivative, math_attention
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError

KINDS = ("hessian", "ggn", "fisher")
STRATEGIES = ("auto", "cached", "reverse", "forward")
CACHE_MAX_CHUNKS = 8


@runtime_checkable
class Operator(Protocol):
    """A symmetric linear operator on R^dim."""

    dim: int
    device: torch.device
    dtype: torch.dtype
    matvecs: int

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Return ``A v`` for a vector of shape ``(dim,)``."""

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """Return ``A v_i`` for each row of ``vs`` of shape ``(k, dim)``."""


class DenseOperator:
    """An explicit symmetric matrix as an :class:`Operator` (for tests and references).

    Example:
        >>> op = DenseOperator(torch.diag(torch.tensor([1.0, 2.0])))
        >>> op.matvec(torch.ones(2)).tolist()
        [1.0, 2.0]
    """

    def __init__(self, matrix: torch.Tensor) -> None:
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ConfigError("DenseOperator needs a square matrix.")
        self.matrix = matrix
        self.dim = int(matrix.shape[0])
        self.device = matrix.device
        self.dtype = matrix.dtype
        self.matvecs = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Return ``A v``."""
        self.matvecs += 1
        return self.matrix @ v

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """Return ``(A V^T)^T`` for probes stacked as rows."""
        self.matvecs += vs.shape[0]
        return vs @ self.matrix.T


def _accumulate(out: torch.Tensor | None, parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``out + concat(parts)``, flattened; never in place (a part may alias the probe)."""
    flat = parts[0].reshape(-1) if len(parts) == 1 else torch.cat([h.reshape(-1) for h in parts])
    return flat if out is None else out + flat


class CurvatureOperator:
    """Curvature of the mean training loss at θ, applied matrix-free.

    Args:
        space: the parameter space (model, data, loss).
        theta: the point (default ``space.theta0``); copied, never modified.
        kind: ``hessian``, ``ggn`` (generalized Gauss-Newton ``JᵀH_ℓJ``) or ``fisher``
            (empirical Fisher ``(1/N) Σ gᵢgᵢᵀ`` over per-sample gradients; ``N`` is the
            unit count, so for a per-token loss ``gᵢ`` is a sequence's summed gradient).
        strategy: Hessian-vector product strategy (see module docstring).
        split: ``train`` or ``test``.

    Example:
        >>> from landscape.io import ModelBundle, load_data
        >>> from torch import nn
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> op = CurvatureOperator(ParamSpace(b))
        >>> op.matvec(torch.ones(op.dim)).shape
        torch.Size([33])
    """

    def __init__(
        self,
        space: ParamSpace,
        theta: torch.Tensor | None = None,
        *,
        kind: str = "hessian",
        strategy: str = "auto",
        split: str = "train",
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"unknown curvature {kind!r}; use one of {', '.join(KINDS)}.")
        if strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown HVP strategy {strategy!r}; use one of {', '.join(STRATEGIES)}."
            )
        if space.scripted and (kind != "hessian" or strategy == "forward"):
            raise ConfigError(
                "TorchScript models support only the Hessian with a reverse strategy; re-export"
                " with torch.export or give a state_dict and --model for GGN/Fisher."
            )
        self.space = space
        self.theta = (space.theta0 if theta is None else theta).detach().clone()
        self.kind = kind
        self.split = split
        self.dim = space.dim
        self.device = space.device
        self.dtype = space.dtype
        # the affine BatchNorm mode intercepts every torch call: only where it has work
        self._has_batchnorm = any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for m in space.bundle.module.modules()
        )
        self.num_samples = space.num_samples(split)
        if self.num_samples == 0:
            raise ConfigError(f"the {split} split is empty; give data for it.")
        # the divisor of the mean: samples, or predicted tokens for a per-token loss
        self.n = space.num_units(split)
        if self.n == 0:
            raise ConfigError(f"the {split} split has no units (tokens) to average over.")
        self.strategy = self._pick(strategy)
        self.matvecs = 0
        self._cache: list[tuple[torch.Tensor, list[torch.Tensor]]] | None = None
        self._fisher_cache: list[torch.Tensor] | None = None

    def _pick(self, strategy: str) -> str:
        if strategy != "auto":
            return strategy
        if self.space.scripted:
            return "cached" if self._num_chunks() <= CACHE_MAX_CHUNKS else "reverse"
        if self.device.type != "cpu":
            return "forward"
        return "cached" if self._num_chunks() <= CACHE_MAX_CHUNKS else "reverse"

    def _num_chunks(self) -> int:
        bs = self.space.bundle.data.batch_size
        return -(-self.num_samples // bs)

    # -- Hessian --------------------------------------------------------------
    def _hvp_reverse(self, v: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor | None = None
        if self.strategy == "cached":
            if self._cache is None:
                self._cache = []
                for x, y in self.space.chunks(self.split):
                    _, g, leaves = self.space.grad_graph(self.theta, x, y, create_graph=True)
                    self._cache.append((g, leaves))
            for g, leaves in self._cache:
                hv = torch.autograd.grad(g, leaves, grad_outputs=v, retain_graph=True)
                out = _accumulate(out, hv)
        else:
            for x, y in self.space.chunks(self.split):
                _, g, leaves = self.space.grad_graph(self.theta, x, y, create_graph=True)
                out = _accumulate(out, torch.autograd.grad(g, leaves, grad_outputs=v))
        assert out is not None  # the split is not empty
        return out / self.n

    def _chunk_hvp_forward(self, x: torch.Tensor, y: torch.Tensor):  # noqa: ANN202
        space = self.space

        def f(th: torch.Tensor) -> torch.Tensor:
            return space.chunk_loss_sum(th, x, y)

        g = grad(f)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            return jvp(g, (self.theta,), (v,))[1]

        return hvp

    # -- GGN ------------------------------------------------------------------
    def _chunk_ggn(self, x: torch.Tensor, y: torch.Tensor):  # noqa: ANN202
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

    # -- empirical Fisher -----------------------------------------------------
    def _per_sample_grads(self) -> list[torch.Tensor]:
        if self._fisher_cache is not None:
            return self._fisher_cache
        space = self.space

        def single(th: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return space.chunk_loss_sum(th, x.unsqueeze(0), y.unsqueeze(0))

        psg = vmap(grad(single), in_dims=(None, 0, 0))
        cache = [psg(self.theta, x, y).detach() for x, y in space.chunks(self.split)]
        if self.num_samples * self.dim <= 50_000_000:
            self._fisher_cache = cache
        return cache

    # -- public ---------------------------------------------------------------
    @contextmanager
    def _differentiable(self) -> Iterator[None]:
        """Math attention for every traced product; missing derivatives as ConfigError."""
        try:
            with math_attention():
                yield
        except (RuntimeError, NotImplementedError) as exc:
            if is_missing_derivative(exc):
                raise derivative_error(exc, self.strategy, self.kind) from exc
            raise

    def _batchnorm_mode(self, traced: bool) -> Any:
        """Eval-mode BatchNorm as its affine map while tracing, where the model has one."""
        return affine_eval_batchnorm() if traced and self._has_batchnorm else nullcontext()

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Apply the operator to one vector of shape ``(dim,)``."""
        # once the graphs are cached nothing is traced, so no function mode is needed
        traced = self._cache is None or self.kind != "hessian"
        with self._differentiable(), self._batchnorm_mode(traced):
            return self._matvec(v)

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        v = v.to(device=self.device, dtype=self.dtype)
        self.matvecs += 1
        if self.kind == "fisher":
            out = torch.zeros_like(self.theta)
            for gs in self._per_sample_grads():
                out += gs.T @ (gs @ v)
            return out / self.n
        if self.kind == "hessian" and self.strategy in ("cached", "reverse"):
            return self._hvp_reverse(v)
        out = torch.zeros_like(self.theta)
        make = self._chunk_ggn if self.kind == "ggn" else self._chunk_hvp_forward
        for x, y in self.space.chunks(self.split):
            out += make(x, y)(v).detach()
        return out / self.n

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """Apply the operator to each row of ``vs`` (shape ``(k, dim)``).

        With the ``forward`` strategy the probes are vmapped (one batched pass per chunk);
        otherwise they are applied one by one, which is faster on CPUs.
        """
        with self._differentiable(), self._batchnorm_mode(True):
            return self._matmat(vs)

    def _matmat(self, vs: torch.Tensor) -> torch.Tensor:
        vs = vs.to(device=self.device, dtype=self.dtype)
        if vs.dim() == 1:
            return self._matvec(vs)
        if self.kind == "fisher":
            self.matvecs += vs.shape[0]
            out = torch.zeros_like(vs)
            for gs in self._per_sample_grads():
                out += (vs @ gs.T) @ gs
            return out / self.n
        if self.strategy == "forward" or self.kind == "ggn":
            self.matvecs += vs.shape[0]
            out = torch.zeros_like(vs)
            make = self._chunk_ggn if self.kind == "ggn" else self._chunk_hvp_forward
            for x, y in self.space.chunks(self.split):
                out += vmap(make(x, y))(vs).detach()
            return out / self.n
        return torch.stack([self._matvec(v) for v in vs])

    def release(self) -> None:
        """Free cached graphs and per-sample gradients."""
        self._cache = None
        self._fisher_cache = None
