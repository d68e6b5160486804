"""Attention kernels that support higher-order derivatives.

PyTorch's fused scaled-dot-product attention kernels (flash, memory-efficient, cuDNN and
the CPU flash kernel) have no double backward and no forward-mode derivative, so a
Hessian-vector product through ``F.scaled_dot_product_attention`` (and through
``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer``, which call it) fails inside
them. The math backend computes the same function from differentiable primitives.
:func:`math_attention` selects it, and turns off ``nn.MultiheadAttention``'s fused
inference fast path, for the duration of a block; the caller's settings come back after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from landscape.errors import ConfigError

_MARKERS = ("derivative for", "forward ad", "forward-mode ad", "not implemented for forward")


def _fastpath_get() -> bool | None:
    mha = getattr(torch.backends, "mha", None)
    getter = getattr(mha, "get_fastpath_enabled", None)
    return bool(getter()) if getter is not None else None


def _fastpath_set(value: bool) -> None:
    mha = getattr(torch.backends, "mha", None)
    setter = getattr(mha, "set_fastpath_enabled", None)
    if setter is not None:
        setter(value)


@contextmanager
def math_attention() -> Iterator[None]:
    """Run a block with the math SDPA backend and without the MHA fast path.

    The math backend is the one with double backward and forward-mode AD, on CPUs and
    GPUs alike; the values agree with the fused kernels to rounding. The caller's SDPA
    backend choice and fast-path flag are restored on exit, also after an exception.
    Re-entrant.

    Example:
        >>> import torch.nn.functional as F
        >>> q = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
        >>> with math_attention():
        ...     (g,) = torch.autograd.grad(
        ...         F.scaled_dot_product_attention(q, q, q).sum(), q, create_graph=True)
        ...     _ = torch.autograd.grad(g.sum(), q)
        >>> torch.backends.mha.get_fastpath_enabled()
        True
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fast = _fastpath_get()
    try:
        if fast is not None:
            _fastpath_set(False)
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        if fast is not None:
            _fastpath_set(fast)


def is_missing_derivative(exc: BaseException) -> bool:
    """Whether an error says an operator lacks the derivative a product needs.

    Example:
        >>> is_missing_derivative(RuntimeError("derivative for aten::foo is not implemented"))
        True
    """
    if not isinstance(exc, RuntimeError | NotImplementedError):
        return False
    msg = str(exc).lower()
    return any(m in msg for m in _MARKERS)


def _op_name(msg: str) -> str:
    for token in msg.replace("`", " ").replace("'", " ").split():
        if "aten::" in token or token.startswith("_") or "::" in token:
            return token.strip(".,:;()")
    return msg.splitlines()[0][:80] if msg else "an operator"


def derivative_error(exc: BaseException, strategy: str, kind: str = "hessian") -> ConfigError:
    """A one-line :class:`ConfigError` for an operator without the needed derivative.

    Args:
        exc: the error raised inside the product.
        strategy: the HVP strategy in use.
        kind: the curvature in use.

    Returns:
        The error to raise (``raise derivative_error(exc, ...) from exc``).

    Example:
        >>> e = derivative_error(
        ...     NotImplementedError("Trying to use forward AD with aten::foo"), "forward")
        >>> "aten::foo" in str(e) and "--strategy reverse" in str(e)
        True
    """
    msg = str(exc)
    op = _op_name(msg)
    forward = "forward ad" in msg.lower() or strategy == "forward" or kind == "ggn"
    if forward and kind == "hessian":
        fix = "use --strategy reverse (reverse-over-reverse)"
    elif forward:
        fix = "use the Hessian (kind 'hessian') with --strategy reverse"
    else:
        fix = "use --strategy forward (forward-over-reverse)"
    return ConfigError(
        f"the model uses {op}, which has no {'forward-mode' if forward else 'second'}"
        f" derivative in this PyTorch ({kind}, strategy {strategy}); {fix}, or replace"
        " that operation with a differentiable one."
    )
