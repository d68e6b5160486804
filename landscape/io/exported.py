"""Load ``torch.export`` programs (``.pt2``) as ordinary modules.

Two things stand between ``torch.export.load(path).module()`` and the engine:

* ``torch.export.load`` falls back to unpickling (``torch.load(weights_only=False)``,
  ``pickle.loads``) for some payloads, which can run code from the file. Unless the
  caller trusts the file, :func:`load_exported` runs it with every unpickling path forced
  to ``weights_only`` and refuses the archive when that is not enough.
* A program exported without ``dynamic_shapes`` accepts exactly the batch size it was
  traced with. :class:`ExportedModule` then runs larger or smaller batches in pieces of
  that size (padding the last piece with copies of its first sample and dropping their
  outputs), which is exact for models whose samples do not interact (eval mode).
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.errors import CheckpointError

__all__ = ["ExportedModule", "load_exported"]


class _UntrustedPickle(pickle.UnpicklingError):
    """Raised instead of unpickling an arbitrary object from an untrusted archive."""


class ExportedModule(nn.Module):
    """A ``torch.export`` program's module that accepts any batch size.

    Args:
        program: ``ExportedProgram.module()``.
        batch_size: the static batch size the program was exported with, or ``None``
            when its batch dimension is dynamic.

    Example:
        >>> m = torch.nn.Linear(3, 2).eval()
        >>> ep = torch.export.export(m, (torch.zeros(2, 3),))
        >>> ExportedModule(ep.module(), 2)(torch.ones(5, 3)).shape
        torch.Size([5, 2])
    """

    def __init__(self, program: nn.Module, batch_size: int | None) -> None:
        super().__init__()
        self.program = program
        self.batch_size = batch_size

    def train(self, mode: bool = True) -> ExportedModule:
        """Record the mode only: an exported graph is fixed in the mode it was traced in."""
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the program, in pieces of its static batch size when it has one."""
        b = self.batch_size
        n = x.shape[0]
        if b is None or n == b:
            return self.program(x)
        outs = []
        for i in range(0, n, b):
            piece = x[i : i + b]
            k = piece.shape[0]
            if k < b:
                pad = piece[:1].expand(b - k, *piece.shape[1:])
                piece = torch.cat([piece, pad])
            outs.append(self.program(piece)[:k])
        return torch.cat(outs)


@contextmanager
def _no_unpickling() -> Iterator[None]:
    """Force ``torch.load`` to ``weights_only`` and block raw ``pickle`` while loading."""
    real_load = torch.load

    def weights_only_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        kwargs.pop("pickle_module", None)
        return real_load(*args, **kwargs)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise _UntrustedPickle("the archive holds pickled Python objects")

    class _Pickle:
        loads = staticmethod(refuse)
        load = staticmethod(refuse)
        dumps = staticmethod(pickle.dumps)
        dump = staticmethod(pickle.dump)
        HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL
        DEFAULT_PROTOCOL = pickle.DEFAULT_PROTOCOL
        UnpicklingError = pickle.UnpicklingError

    patched: list[tuple[Any, str, Any]] = [(torch, "load", weights_only_load)]
    if hasattr(torch._C, "_pickle_load_obj"):
        patched.append((torch._C, "_pickle_load_obj", refuse))
    for name in ("torch.export.pt2_archive._package", "torch._export.serde.serialize"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(mod, "pickle"):
            patched.append((mod, "pickle", _Pickle))
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patched]
    try:
        for obj, attr, new in patched:
            setattr(obj, attr, new)
        yield
    finally:
        for obj, attr, old in saved:
            setattr(obj, attr, old)


def _static_batch(program: Any) -> int | None:
    """The static batch size of the program's single tensor input (``None`` if dynamic)."""
    user_inputs = list(program.graph_signature.user_inputs)
    if len(user_inputs) != 1:
        raise CheckpointError(
            f"the exported program takes {len(user_inputs)} inputs; landscape runs models of"
            " one tensor input, so export a wrapper whose forward takes x only."
        )
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == user_inputs[0]:
            val = node.meta.get("val")
            shape = getattr(val, "shape", None)
            if shape is None or len(shape) == 0:
                return None
            first = shape[0]
            return int(first) if isinstance(first, int) else None
    return None


def load_exported(path: str | Path, *, trust: bool = False) -> ExportedModule:
    """Load a ``torch.export.save`` archive as a module that accepts any batch size.

    Args:
        path: the ``.pt2`` file.
        trust: allow the archive's pickled payloads to be unpickled (runs code from it).

    Returns:
        An :class:`ExportedModule`; its parameters are those of the program (names prefixed
        with ``program.``).

    Raises:
        CheckpointError: if the archive cannot be loaded, or needs unpickling without trust.

    Example:
        >>> import tempfile
        >>> p = tempfile.mktemp(suffix=".pt2")
        >>> m = torch.nn.Linear(3, 2).eval()
        >>> torch.export.save(torch.export.export(m, (torch.zeros(1, 3),)), p)
        >>> load_exported(p)(torch.ones(4, 3)).shape
        torch.Size([4, 2])
    """
    p = str(path)
    try:
        if trust:
            program = torch.export.load(p)
        else:
            with _no_unpickling():
                program = torch.export.load(p)
    except (pickle.UnpicklingError, _UntrustedPickle) as exc:
        if trust:
            raise CheckpointError(
                f"cannot unpickle a payload of the torch.export archive {path} ({exc});"
                " re-save it with torch.export.save using this torch version."
            ) from exc
        raise CheckpointError(
            f"the torch.export archive {path} holds pickled Python objects that would run code"
            " when loaded; pass --trust-checkpoint only if you trust its source."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds here
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"cannot load torch.export program {path} ({type(exc).__name__}: {first[:160]});"
            " re-save it with torch.export.save using this torch version."
        ) from exc
    batch = _static_batch(program)
    try:
        module = program.module()
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"cannot build a module from the torch.export program {path} ({exc});"
            " re-export the model."
        ) from exc
    return ExportedModule(module, batch)
