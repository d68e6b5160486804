"""Progress files of surface evaluations: one format for every evaluator, checked on load.

A progress file holds a fingerprint of what is being evaluated (directions, grid, options),
a ``done`` mask over the points and one array per quantity. It is written atomically; on
load, an unreadable file or one whose fingerprint or size differs is a one-line
:class:`~landscape.errors.RunDirError` naming the file and the fix, never silently
ignored (a silent mismatch would mix two surfaces).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import RunDirError
from landscape.io.rundir import atomic_write


def save_progress(
    path: Path, fingerprint: str, done: np.ndarray, arrays: dict[str, np.ndarray]
) -> None:
    """Write ``fingerprint``, the ``done`` mask and ``arrays`` to ``path`` atomically.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "p.npz"
        >>> save_progress(p, "abc", np.array([True, False]), {"loss": np.array([1.0, np.nan])})
        >>> load_progress(p, "abc", 2, ["loss"])[0].tolist()
        [True, False]
    """

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            payload: dict[str, Any] = {"fingerprint": np.array(fingerprint), "done": done}
            payload.update(arrays)
            np.savez(f, **payload)

    atomic_write(path, write)


def load_progress(
    path: Path, fingerprint: str, size: int, keys: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """``(done, arrays)`` from a progress file, ``None`` when there is none.

    Raises:
        RunDirError: when the file is unreadable, or belongs to another evaluation
            (fingerprint or number of points differ).

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "p.npz"
        >>> save_progress(p, "abc", np.array([True]), {"loss": np.array([1.0])})
        >>> load_progress(p, "other", 1, ["loss"])
        Traceback (most recent call last):
        ...
        landscape.errors.RunDirError: progress file ... belongs to a different surface ...
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            fp = str(z["fingerprint"])
            done = z["done"].astype(bool)
            arrays = {k: z[k].astype(np.float64) for k in keys}
    except Exception as exc:  # noqa: BLE001
        raise RunDirError(
            f"progress file {path} is unreadable ({type(exc).__name__}); delete it or use"
            " --overwrite to start over."
        ) from exc
    if fp != fingerprint or done.shape != (size,):
        raise RunDirError(
            f"progress file {path} belongs to a different surface (directions, grid or"
            " options changed); use --overwrite to start over or a new --out."
        )
    return done, arrays
