"""Progress reporting without printing: the core reports, front ends display.

Long-running core routines accept a ``progress`` argument implementing :class:`Progress`.
The CLI passes a rich-backed implementation; the default does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Task(Protocol):
    """A unit of work with a known (or unknown) number of steps."""

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` more steps as done."""


class Progress(Protocol):
    """Factory of tasks; implemented by front ends."""

    def task(self, description: str, total: int | None) -> Task:
        """Start a task called ``description`` with ``total`` steps."""

    def finish(self, task: Task) -> None:
        """Mark ``task`` as complete and stop displaying it."""


class _NullTask:
    def advance(self, n: int = 1) -> None:
        pass


class NullProgress:
    """A :class:`Progress` that reports nothing."""

    def task(self, description: str, total: int | None) -> Task:
        """Return a task that ignores updates."""
        return _NullTask()

    def finish(self, task: Task) -> None:
        """Do nothing."""


NULL_PROGRESS = NullProgress()


@contextmanager
def tracked(progress: Progress | None, description: str, total: int | None) -> Iterator[Task]:
    """Open a task on ``progress`` (or a silent one) and finish it on exit.

    Example:
        >>> with tracked(None, "work", 3) as t:
        ...     t.advance()
    """
    p = progress if progress is not None else NULL_PROGRESS
    task = p.task(description, total)
    try:
        yield task
    finally:
        p.finish(task)
