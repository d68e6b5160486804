"""Read the tensors out of a pickled checkpoint without running anything from it.

``torch.load(weights_only=True)`` refuses a whole checkpoint as soon as it meets one class
it does not know, which is common: Lightning checkpoints keep loss modules, optimizer
classes, callbacks or numpy arrays among their hyper-parameters. :func:`inert_load` reads
such a file with an unpickler that builds only what ``weights_only`` would build (tensors,
containers, dtypes) and replaces every other class or function by an inert stand-in that
records its name and arguments. No class, function or ``__reduce__`` named by the file is
imported or called, so nothing in the file executes; the caller can then pick the
state_dict out of the result, and refuse when what remains is a pickled object.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import types
from pathlib import Path
from typing import Any

import torch

__all__ = ["InertObject", "find_inert", "inert_load"]

# Always allowed, even if torch's private allowlist moves: what a state_dict needs.
_MINIMAL = {
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch.Size",
}


class InertObject:
    """Stand-in for an object whose class the file named but that was not imported.

    Attributes:
        qualname: ``module.name`` of the class or function the file named.
    """

    qualname: str = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None
        self.items: list[Any] = []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        """Record an appended item (pickles of list subclasses)."""
        self.items.append(value)

    def extend(self, values: Any) -> None:
        """Record appended items (pickles of list subclasses)."""
        self.items.extend(values)

    def __reduce__(self) -> Any:
        raise TypeError("inert stand-ins cannot be pickled")

    def __repr__(self) -> str:
        return f"<inert {self.qualname}>"


def _allowed_globals() -> dict[str, Any]:
    allowed: dict[str, Any] = {}
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed.update(_get_allowed_globals())
    except Exception:  # noqa: BLE001 - private API; fall back to the minimal set
        pass
    for name in _MINIMAL:
        if name not in allowed:
            mod, _, attr = name.rpartition(".")
            obj: Any = __import__(mod, fromlist=[attr])
            allowed[name] = getattr(obj, attr)
    return allowed


def _make_pickle_module(skipped: set[str]) -> types.ModuleType:
    allowed = _allowed_globals()
    stubs: dict[str, type] = {}

    def stub(full: str) -> type:
        if full not in stubs:
            short = full.rpartition(".")[2] or "Inert"
            stubs[full] = type(short, (InertObject,), {"qualname": full})
        return stubs[full]

    class InertUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            # Python 2 names used by pickle protocols < 3 (``__builtin__.set``)
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
            full = f"{module}.{name}"
            if full in allowed:
                return allowed[full]
            skipped.add(full)
            return stub(full)

    def load(file: Any, **kwargs: Any) -> Any:
        return InertUnpickler(file, **kwargs).load()

    mod = types.ModuleType("landscape_inert_pickle")
    mod.Unpickler = InertUnpickler  # type: ignore[attr-defined]
    mod.load = load  # type: ignore[attr-defined]
    mod.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
    return mod


def inert_load(path: str | Path) -> tuple[Any, list[str]]:
    """Unpickle a torch file on the CPU without importing or calling anything it names.

    Args:
        path: a ``torch.save`` file (zip or legacy format).

    Returns:
        The loaded object (tensors are real; unknown objects are :class:`InertObject`) and
        the sorted names of the classes and functions that were replaced.

    Example:
        >>> import tempfile
        >>> p = tempfile.mktemp(suffix=".pt")
        >>> torch.save({"w": torch.ones(2), "cls": torch.nn.Linear}, p)
        >>> obj, skipped = inert_load(p)
        >>> obj["w"].tolist(), skipped
        ([1.0, 1.0], ['torch.nn.modules.linear.Linear'])
    """
    skipped: set[str] = set()
    obj = torch.load(
        str(path),
        map_location="cpu",
        weights_only=False,
        pickle_module=_make_pickle_module(skipped),
    )
    return obj, sorted(skipped)


def find_inert(obj: Any, limit: int = 5) -> list[str]:
    """Names of inert stand-ins found in ``obj`` (dicts, lists and tuples are searched)."""
    found: list[str] = []
    stack = [obj]
    seen: set[int] = set()
    while stack and len(found) < limit:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, InertObject):
            if cur.qualname not in found:
                found.append(cur.qualname)
        elif isinstance(cur, dict):
            stack.extend(cur.values())
        elif isinstance(cur, list | tuple):
            stack.extend(cur)
    return found
