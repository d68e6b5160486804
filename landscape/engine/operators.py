"""Symmetric linear operators on R^dim: the protocol, their algebra and the chunk-summing base.

Every estimator in ``hessian``, ``metrics`` and ``basins`` takes an :class:`Operator`:
something with ``dim``, ``device``, ``dtype``, ``matvec`` and ``matmat`` (probes stacked as
rows). :class:`LinearOperatorBase` adds, on top of those two products, ``op @ v`` (a vector
or a matrix of row vectors), sums ``A + B``, scalar multiples ``c * A``, the principal
submatrix ``A.restrict(indices)`` and a :mod:`scipy.sparse.linalg` view
(:meth:`~LinearOperatorBase.to_scipy`).

:class:`ChunkSumOperator` is the base of the curvature operators (curvlinops' shape): a
subclass defines the product of one data chunk and the base streams the chunks, sums them
exactly, divides by the number of averaging units, counts products and turns missing
derivatives into one-line errors.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from landscape.engine.affine_norm import affine_eval_batchnorm
from landscape.engine.attention import derivative_error, is_missing_derivative, math_attention
from landscape.errors import ConfigError

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator

    from landscape.engine.params import ParamSpace
    from landscape.engine.restrict import RestrictedOperator


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


class LinearOperatorBase:
    """``@``, ``+``, scalar ``*``, ``restrict`` and ``to_scipy`` from ``matvec``/``matmat``.

    A subclass sets ``dim``, ``device``, ``dtype`` and ``matvecs`` and defines ``matvec``
    and ``matmat`` (probes as rows).

    Example:
        >>> a = DenseOperator(torch.diag(torch.tensor([1.0, 2.0])))
        >>> ((a + 2 * a) @ torch.ones(2)).tolist()
        [3.0, 6.0]
    """

    dim: int
    device: torch.device
    dtype: torch.dtype
    matvecs: int

    def matvec(self, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Return ``A v`` for a vector of shape ``(dim,)``."""
        raise NotImplementedError

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Return ``A v_i`` for each row of ``vs`` of shape ``(k, dim)``."""
        raise NotImplementedError

    # -- algebra --------------------------------------------------------------
    def __matmul__(self, vs: torch.Tensor) -> torch.Tensor:
        """``A v`` for a vector, or ``A v_i`` for each row of a ``(k, dim)`` matrix."""
        if not isinstance(vs, torch.Tensor):
            return NotImplemented
        if vs.dim() == 1:
            return self.matvec(vs)
        if vs.dim() == 2:
            return self.matmat(vs)
        raise ConfigError(
            f"an operator applies to a vector or (k, dim) rows, got {tuple(vs.shape)}."
        )

    def __add__(self, other: object) -> SumOperator:
        if not isinstance(other, Operator):
            return NotImplemented
        return SumOperator(self, other)

    def __radd__(self, other: object) -> SumOperator:
        if not isinstance(other, Operator):
            return NotImplemented
        return SumOperator(other, self)

    def __sub__(self, other: object) -> SumOperator:
        if not isinstance(other, Operator):
            return NotImplemented
        return SumOperator(self, ScaledOperator(other, -1.0))

    def __mul__(self, scale: object) -> ScaledOperator:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            return NotImplemented
        return ScaledOperator(self, float(scale))

    def __rmul__(self, scale: object) -> ScaledOperator:
        return self.__mul__(scale)

    def __neg__(self) -> ScaledOperator:
        return ScaledOperator(self, -1.0)

    # -- restriction ----------------------------------------------------------
    def _glob_indices(self, globs: Sequence[str]) -> torch.Tensor:
        """Indices of the parameter tensors matching ``globs``; needs a parameter space."""
        raise ConfigError(
            "this operator has no parameter names to match globs against; give indices."
        )

    def restrict(
        self, selection: str | Sequence[str] | Sequence[int] | torch.Tensor
    ) -> RestrictedOperator:
        """The principal submatrix on some coordinates (see :class:`RestrictedOperator`).

        Args:
            selection: coordinates (a 1-D index tensor or list of ints), or parameter
                name globs (a string or list of strings, see
                :func:`~landscape.engine.params.select_names`) where the operator lives on
                a parameter space.

        Returns:
            The restricted operator ``Pᵀ A P``.

        Raises:
            ConfigError: for an empty, repeated or out-of-range selection, or globs on an
                operator without parameter names.

        Example:
            >>> a = torch.arange(9.0).reshape(3, 3)
            >>> DenseOperator(a + a.T).restrict([0, 2]).matvec(torch.tensor([1.0, 0.0])).tolist()
            [0.0, 8.0]
        """
        from landscape.engine.restrict import RestrictedOperator

        if isinstance(selection, str):
            selection = [selection]
        if not isinstance(selection, torch.Tensor):
            items = list(selection)
            if items and all(isinstance(s, str) for s in items):
                return RestrictedOperator(self, self._glob_indices(items))  # type: ignore[arg-type]
            if any(isinstance(s, str) for s in items):
                raise ConfigError("a restriction takes indices or parameter globs, not both.")
            selection = items  # type: ignore[assignment]
        return RestrictedOperator(self, selection)  # type: ignore[arg-type]

    # -- scipy ----------------------------------------------------------------
    def to_scipy(self) -> LinearOperator:
        """A :class:`scipy.sparse.linalg.LinearOperator` view (float64 numpy in and out).

        The view is symmetric (its adjoint is itself), so ``scipy.sparse.linalg.eigsh``
        and ``cg`` apply. Each scipy product is a product of this operator (counted in
        ``matvecs``); a block of columns is one ``matmat``.

        Example:
            >>> from scipy.sparse.linalg import eigsh
            >>> a = DenseOperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
            >>> [round(float(x), 6) for x in eigsh(a.to_scipy(), k=2)[0]]
            [4.0, 5.0]
        """
        return _scipy_view(self)


def _scipy_view(op: LinearOperatorBase) -> LinearOperator:
    from scipy.sparse.linalg import LinearOperator

    def to_torch(x: np.ndarray) -> torch.Tensor:
        arr = np.ascontiguousarray(np.real_if_close(x), dtype=np.float64)
        return torch.from_numpy(arr).to(device=op.device, dtype=op.dtype)

    def to_numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().to(device="cpu", dtype=torch.float64).numpy()

    class _View(LinearOperator):
        def __init__(self) -> None:
            super().__init__(dtype=np.float64, shape=(op.dim, op.dim))

        def _matvec(self, x: np.ndarray) -> np.ndarray:
            return to_numpy(op.matvec(to_torch(x).reshape(-1)))

        def _matmat(self, x: np.ndarray) -> np.ndarray:
            return to_numpy(op.matmat(to_torch(x.T))).T

        _rmatvec = _matvec
        _rmatmat = _matmat

        def _adjoint(self) -> LinearOperator:
            return self

        _transpose = _adjoint

    return _View()


class DenseOperator(LinearOperatorBase):
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


class SumOperator(LinearOperatorBase):
    """``A + B`` for two operators of the same size (each product costs one of each).

    Args:
        a: the first operator (its device and dtype are the sum's).
        b: the second operator.

    Raises:
        ConfigError: if the sizes differ.
    """

    def __init__(self, a: Operator, b: Operator) -> None:
        if int(a.dim) != int(b.dim):
            raise ConfigError(f"cannot add operators of sizes {int(a.dim)} and {int(b.dim)}.")
        self.terms = (a, b)
        self.dim = int(a.dim)
        self.device = a.device
        self.dtype = a.dtype
        self.matvecs = 0

    def _glob_indices(self, globs: Sequence[str]) -> torch.Tensor:
        for term in self.terms:
            if isinstance(term, LinearOperatorBase):
                try:
                    return term._glob_indices(globs)
                except ConfigError:
                    continue
        return super()._glob_indices(globs)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Return ``A v + B v``."""
        self.matvecs += 1
        a, b = self.terms
        return a.matvec(v) + b.matvec(v)

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """Return ``A v_i + B v_i`` for each row of ``vs``."""
        if vs.dim() == 1:
            return self.matvec(vs)
        self.matvecs += vs.shape[0]
        a, b = self.terms
        return a.matmat(vs) + b.matmat(vs)


class ScaledOperator(LinearOperatorBase):
    """``c · A`` for a real scalar ``c``.

    Args:
        op: the operator.
        scale: the real factor.
    """

    def __init__(self, op: Operator, scale: float) -> None:
        self.op = op
        self.scale = float(scale)
        self.dim = int(op.dim)
        self.device = op.device
        self.dtype = op.dtype
        self.matvecs = 0

    def _glob_indices(self, globs: Sequence[str]) -> torch.Tensor:
        if isinstance(self.op, LinearOperatorBase):
            return self.op._glob_indices(globs)
        return super()._glob_indices(globs)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Return ``c A v``."""
        self.matvecs += 1
        return self.scale * self.op.matvec(v)

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """Return ``c A v_i`` for each row of ``vs``."""
        if vs.dim() == 1:
            return self.matvec(vs)
        self.matvecs += vs.shape[0]
        return self.scale * self.op.matmat(vs)


class ChunkSumOperator(LinearOperatorBase):
    """A mean over the data of per-chunk symmetric products, at a point θ.

    A subclass defines :meth:`_chunk_matvec` (and :meth:`_chunk_matmat` where probes are
    batched differently); the base streams the chunks (:meth:`_chunks`, by default the
    split's ``(x, y)`` chunks), sums the per-chunk products exactly in chunk order and
    divides by the split's averaging units (``space.num_units(split)``: samples, or
    predicted tokens for a per-token loss). Every traced product runs on the math
    attention backend, with eval-mode BatchNorm as its affine map where the model has
    BatchNorm; a missing derivative is raised as a one-line :class:`ConfigError`.

    Args:
        space: the parameter space (model, data, loss).
        theta: the point (default ``space.theta0``); copied, never modified.
        split: ``train`` or ``test``.
        dim: the operator's size (default ``space.dim``; smaller for an operator on a
            block of θ).

    Raises:
        ConfigError: if the split is empty or has no units to average over.
    """

    kind: ClassVar[str] = "operator"
    #: write eval-mode BatchNorm as its affine map while tracing products
    affine_batchnorm: ClassVar[bool] = True
    strategy: str = "reverse"

    def __init__(
        self,
        space: ParamSpace,
        theta: torch.Tensor | None = None,
        *,
        split: str = "train",
        dim: int | None = None,
    ) -> None:
        self.space = space
        self.theta = (space.theta0 if theta is None else theta).detach().clone()
        self.split = split
        self.dim = space.dim if dim is None else int(dim)
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
        self.matvecs = 0

    # -- what a subclass defines ---------------------------------------------
    def _chunks(self) -> Iterable[Any]:
        """The per-chunk states the products are summed over (default: ``(x, y)``)."""
        return self.space.chunks(self.split)

    def _chunk_matvec(self, chunk: Any, v: torch.Tensor) -> torch.Tensor:
        """The unnormalized product of one chunk with a vector ``(dim,)``."""
        raise NotImplementedError

    def _chunk_matmat(self, chunk: Any, vs: torch.Tensor) -> torch.Tensor:
        """The unnormalized product of one chunk with each row of ``vs`` (default: rows)."""
        return torch.stack([self._chunk_matvec(chunk, v) for v in vs])

    def _traced(self) -> bool:
        """Whether a matvec records new graphs (then the function modes are needed)."""
        return True

    def release(self) -> None:
        """Free whatever the products cached (graphs, per-sample gradients)."""

    # -- the base -------------------------------------------------------------
    def _num_chunks(self) -> int:
        bs = self.space.bundle.data.batch_size
        return -(-self.num_samples // bs)

    def _glob_indices(self, globs: Sequence[str]) -> torch.Tensor:
        if self.dim != self.space.dim:
            return super()._glob_indices(globs)
        return self.space.indices(globs)

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
        if traced and self.affine_batchnorm and self._has_batchnorm:
            return affine_eval_batchnorm()
        return nullcontext()

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Apply the operator to one vector of shape ``(dim,)``."""
        # once graphs are cached nothing is traced, so no function mode is needed
        with self._differentiable(), self._batchnorm_mode(self._traced()):
            return self._matvec(v)

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        v = v.to(device=self.device, dtype=self.dtype)
        self.matvecs += 1
        out = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        for chunk in self._chunks():
            out += self._chunk_matvec(chunk, v)
        return out / self.n

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """Apply the operator to each row of ``vs`` (shape ``(k, dim)``)."""
        with self._differentiable(), self._batchnorm_mode(True):
            vs = vs.to(device=self.device, dtype=self.dtype)
            if vs.dim() == 1:
                return self._matvec(vs)
            self.matvecs += vs.shape[0]
            out = torch.zeros_like(vs)
            for chunk in self._chunks():
                out += self._chunk_matmat(chunk, vs)
            return out / self.n
