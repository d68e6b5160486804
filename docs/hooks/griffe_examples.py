"""A griffe extension: read ``Example:`` docstring sections as Google ``Examples:``.

The docstrings use the singular heading; griffe's Google parser only recognizes the plural
as an examples section, so the runnable ``>>>`` examples would otherwise render as prose.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` headings to ``Examples:`` before the docstrings are parsed."""

    def on_instance(self, *, obj: griffe.Object, **_: Any) -> None:
        """Rewrite the heading on each loaded object's docstring."""
        if obj.docstring is not None:
            obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
