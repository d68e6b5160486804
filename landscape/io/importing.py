"""Resolve ``MODULE:NAME`` and ``path/to/file.py:NAME`` references to Python objects."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from landscape.errors import ConfigError


def resolve_object(ref: str, what: str) -> Any:
    """Import the object named by ``ref``.

    Args:
        ref: ``package.module:attr`` or ``path/to/file.py:attr`` (``attr`` may be dotted,
            like ``Class.method``).
        what: what the object is for, used in error messages (for example ``"--model"``).

    Returns:
        The attribute found.

    Raises:
        ConfigError: if the reference is malformed or cannot be imported.

    Example:
        >>> resolve_object("math:sqrt", "--loss")(4.0)
        2.0
    """
    if ":" not in ref:
        raise ConfigError(
            f"{what} {ref!r} is not of the form MODULE:NAME or path/to/file.py:NAME;"
            " add the function name after a colon."
        )
    mod_ref, _, attr = ref.rpartition(":")
    if not mod_ref or not attr:
        raise ConfigError(f"{what} {ref!r} is missing its module or name; use MODULE:NAME.")
    try:
        if mod_ref.endswith(".py") or "/" in mod_ref or "\\" in mod_ref:
            module = _import_file(mod_ref, what)
        else:
            module = importlib.import_module(mod_ref)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code can raise anything
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"{what}: cannot import {mod_ref!r} ({type(exc).__name__}: {first});"
            " check the module path and that it imports on its own."
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what}: {mod_ref!r} has no attribute {attr!r}; check the name.")
        obj = getattr(obj, part)
    return obj


def _import_file(mod_ref: str, what: str) -> Any:
    """Import a Python file by path (its folder is importable while it runs)."""
    path = Path(mod_ref).expanduser()
    if not path.is_file():
        raise ConfigError(f"{what}: file {mod_ref} does not exist; check the path.")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    name = f"_landscape_user_{resolved.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{what}: cannot import {mod_ref}; is it a Python file?")
    module = importlib.util.module_from_spec(spec)
    folder = str(resolved.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    return module
