"""Project exceptions: one-line messages that name the problem and the fix."""

from __future__ import annotations


class LandscapeError(Exception):
    """Base class of every error raised on bad input.

    The message is a single line that says what is wrong and how to fix it. The CLI
    prints it and exits with status 2, without a traceback.
    """

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class CheckpointError(LandscapeError):
    """A checkpoint that cannot be found, recognised or loaded safely."""


class DataError(LandscapeError):
    """Data that cannot be loaded or does not fit the model."""


class ConfigError(LandscapeError):
    """An option value or configuration that does not parse or is inconsistent."""


class RunDirError(LandscapeError):
    """A run directory that cannot be written or resumed as asked."""


class NotApplicable(ConfigError):
    """A measure or stage that does not apply to this model (e.g. no Linear layer).

    Pipelines that compute many measures (``compute_metrics``, ``run_scan``) catch exactly
    this type, record ``{"skipped": <message>}`` for that measure and go on with the rest;
    called on its own, the measure raises it like any :class:`ConfigError`.

    Example:
        >>> issubclass(NotApplicable, ConfigError)
        True
    """
