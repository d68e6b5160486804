"""Named presets: TOML files shipped in ``landscape.configs`` (or a user's TOML file)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from landscape.errors import ConfigError


def available_presets() -> list[str]:
    """Names of the shipped presets (file stems in ``landscape.configs``)."""
    root = resources.files("landscape.configs")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str, section: str | None = None) -> dict[str, Any]:
    """Load a preset by name (``quick``) or path (``my.toml``), optionally one table of it.

    Example:
        >>> "top_k" in load_preset("scan_quick", "scan")
        True
    """
    path = Path(name_or_path)
    try:
        if path.suffix == ".toml":
            if not path.is_file():
                raise ConfigError(f"preset file {name_or_path} does not exist; check the path.")
            text = path.read_text()
        else:
            res = resources.files("landscape.configs") / f"{name_or_path}.toml"
            if not res.is_file():
                raise ConfigError(
                    f"unknown preset {name_or_path!r}; use one of"
                    f" {', '.join(available_presets())} or a .toml file."
                )
            text = res.read_text()
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"preset {name_or_path} is not valid TOML ({exc}); fix the file."
        ) from exc
    if section is not None:
        if section not in data:
            raise ConfigError(f"preset {name_or_path} has no [{section}] table; add one.")
        data = data[section]
    return data


def checked_settings(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A copy of ``data`` after checking that every key is a field of dataclass ``cls``.

    Raises:
        ConfigError: naming the unknown keys and the table (``what``) they were found in.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class C:
        ...     a: int = 1
        >>> checked_settings(C, {"a": 2}, "c")
        {'a': 2}
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {what} settings {', '.join(unknown)}; remove them.")
    return dict(data)
