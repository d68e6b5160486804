"""Reading run directories back: the one reader for figures, reports and comparisons.

A run directory holds what ``landscape scan`` / ``landscape surface`` wrote:
``config.json`` (the resolved configuration), ``summary.json`` (scalars) and, when
present, ``results.nc`` (surfaces and spectral densities). This module returns those as
plain dicts and an ``xarray.Dataset``; the typed results are rebuilt from them by their
own layers (``Surface.from_results``).

Two ways in:

- :func:`open_run` / :func:`read_results`: any run directory (figures need only
  ``results.nc`` and, optionally, the summary);
- :func:`load_run` / :func:`load_runs`: a finished scan, validated for a comparison.
  Anything that would make a comparison silently wrong (a missing or broken summary, an
  older format, a scan that stopped before its Hessian stage) is refused.

Every failure is a one-line :class:`~landscape.errors.RunDirError` naming the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landscape.errors import RunDirError
from landscape.io.rundir import FORMAT_VERSION, RUN_FILES, RunDir

#: Summary sections a comparison needs: the evaluation scalars and the Hessian section.
REQUIRED_SECTIONS = ("loss", "hessian")

#: ``results.nc`` variables that hold a Hessian spectrum.
SPECTRUM_VARIABLES = (
    "slq_grid",
    "slq_density",
    "hessian_top_eigenvalues",
    "hessian_bottom_eigenvalues",
    "hessian_exact_spectrum",
)


def _check_dir(path: Path, missing: str, is_file: str) -> None:
    if not path.exists():
        raise RunDirError(f"{path} does not exist; {missing}.")
    if not path.is_dir():
        raise RunDirError(f"{path} is a file, not a run directory; {is_file}.")


def _load_arrays(nc: Path, fix: str) -> Any:
    try:
        return RunDir(nc.parent).read_arrays()
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same fault
        raise RunDirError(f"{nc} is unreadable ({type(exc).__name__}); {fix}.") from exc


def open_run(run_dir: str | Path) -> RunDir:
    """Check that ``run_dir`` is a run directory and return it.

    Raises:
        RunDirError: the path is missing, not a directory, or holds none of the run files.

    Example:
        >>> import tempfile
        >>> open_run(tempfile.mkdtemp())  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        landscape.errors.RunDirError: ... is not a run directory ...
    """
    path = Path(run_dir)
    _check_dir(path, "give the folder a scan wrote", "give the folder a scan wrote")
    if not any((path / name).exists() for name in RUN_FILES):
        raise RunDirError(
            f"{path} is not a run directory (no config.json, summary.json or results.nc);"
            " give the folder `landscape scan` or `landscape surface` wrote."
        )
    return RunDir(path)


def read_results(run_dir: str | Path) -> Any:
    """The run's ``results.nc`` as an ``xarray.Dataset`` (loaded into memory).

    Raises:
        RunDirError: the run directory is invalid (see :func:`open_run`), or its
            ``results.nc`` is missing or unreadable.
    """
    run = open_run(run_dir)
    if not run.results_path.exists():
        raise RunDirError(
            f"{run.results_path} is missing; compute the arrays first with `landscape scan`"
            " or `landscape surface`."
        )
    return _load_arrays(run.results_path, "rerun the scan")


def has_surface(ds: Any) -> bool:
    """Whether a results dataset holds a surface (``train_loss`` over alpha[, beta[, gamma]]).

    Example:
        >>> import xarray as xr
        >>> has_surface(xr.Dataset())
        False
    """
    return "train_loss" in ds and ds["train_loss"].dims[:1] == ("alpha",)


def has_spectrum(ds: Any, summary: Mapping[str, Any] | None = None) -> bool:
    """Whether there is a Hessian spectrum (SLQ density or eigenvalues) to plot.

    Example:
        >>> has_spectrum({}, {"hessian": {"top_eigenvalues": [2.0]}})
        True
    """
    if any(v in ds for v in SPECTRUM_VARIABLES):
        return True
    hess = (summary or {}).get("hessian") or {}
    return bool(hess.get("top_eigenvalues"))


def as_float(x: Any) -> float:
    """Read a JSON scalar as a float (``"nan"``/``"inf"`` strings and ``None`` → NaN/Inf).

    Example:
        >>> as_float("inf"), as_float(None) != as_float(None), as_float(2)
        (inf, True, 2.0)
    """
    if x is None or isinstance(x, bool):
        return math.nan
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return math.nan
    return math.nan


@dataclass(frozen=True)
class RunData:
    """One run directory, loaded and validated.

    Attributes:
        path: the run directory.
        name: a display name, unique within a comparison.
        config: the resolved configuration (``config.json``).
        summary: the scalar summary (``summary.json``).
        arrays: the ``results.nc`` dataset (surfaces, densities) or ``None`` when absent.
    """

    path: Path
    name: str
    config: Mapping[str, Any]
    summary: Mapping[str, Any]
    arrays: Any = field(default=None, repr=False, compare=False)

    @property
    def surface_dims(self) -> tuple[str, ...]:
        """The surface axes present in ``results.nc`` (``()``, ``("alpha",)``, …)."""
        ds = self.arrays
        if ds is None or "train_loss" not in ds:
            return ()
        return tuple(str(d) for d in ds["train_loss"].dims)

    @property
    def has_surface(self) -> bool:
        """Whether a 1D/2D/3D loss surface is stored."""
        return bool(self.surface_dims)

    @property
    def has_density(self) -> bool:
        """Whether an SLQ spectral density is stored."""
        ds = self.arrays
        return ds is not None and "slq_grid" in ds and "slq_density" in ds

    @property
    def has_test(self) -> bool:
        """Whether the scan measured test loss (so a generalization gap exists)."""
        return math.isfinite(as_float(self.summary.get("test_loss")))

    @property
    def architecture(self) -> tuple[str, int]:
        """``(factory, num_params)``: what fixes the parameter space of the model."""
        model = self.summary.get("model", {}) or {}
        factory = model.get("factory") or self.config.get("model") or model.get("format") or "?"
        kwargs = self.config.get("model_kwargs")
        if kwargs:
            factory = f"{factory}({json.dumps(kwargs, sort_keys=True)})"
        return str(factory), int(model.get("num_params") or 0)


def _fix_hint(path: Path, config: Mapping[str, Any] | None) -> str:
    ckpt = (config or {}).get("checkpoint")
    if ckpt:
        return f"rerun `landscape scan {ckpt} --out {path} --overwrite`"
    return f"rerun `landscape scan CHECKPOINT --out {path} --overwrite`"


def _read_json(path: Path, what: str, run: Path, config: Mapping[str, Any] | None) -> Any:
    if not path.is_file():
        raise RunDirError(f"{run} has no {what} (not a finished scan); {_fix_hint(run, config)}.")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = getattr(exc, "msg", "unreadable")
        raise RunDirError(f"{path} is broken ({msg}); {_fix_hint(run, config)}.") from exc


def load_run(
    path: str | Path,
    *,
    name: str | None = None,
    require: Sequence[str] = REQUIRED_SECTIONS,
    arrays: bool = True,
) -> RunData:
    """Load and validate one run directory written by ``landscape scan``.

    Args:
        path: the run directory.
        name: display name (default: the summary's name, else the directory name).
        require: summary sections that must be present.
        arrays: also load ``results.nc`` (surfaces, densities) when it exists.

    Returns:
        The loaded :class:`RunData`.

    Raises:
        RunDirError: if the directory is missing, its summary is missing or broken, it was
            written by an older format, or the scan lacks a required section.

    Example:
        >>> import tempfile
        >>> load_run(tempfile.mkdtemp())  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        landscape.errors.RunDirError: ... has no config.json ...
    """
    p = Path(path)
    _check_dir(
        p,
        "give a run directory written by `landscape scan` or a checkpoint file",
        "give the directory of a scan",
    )
    config = _read_json(p / "config.json", "config.json", p, None)
    if not isinstance(config, dict):
        raise RunDirError(f"{p / 'config.json'} is not a JSON object; {_fix_hint(p, None)}.")
    version = config.get("format_version")
    if not isinstance(version, int) or version < FORMAT_VERSION:
        raise RunDirError(
            f"{p} was written by an older landscape (format_version {version}, this reads"
            f" {FORMAT_VERSION}); {_fix_hint(p, config)}."
        )
    if version > FORMAT_VERSION:
        raise RunDirError(
            f"{p} was written by a newer landscape (format_version {version}, this reads"
            f" {FORMAT_VERSION}); upgrade landscape-geometry."
        )
    summary = _read_json(p / "summary.json", "summary.json", p, config)
    if not isinstance(summary, dict):
        raise RunDirError(f"{p / 'summary.json'} is not a JSON object; {_fix_hint(p, config)}.")
    missing = [s for s in require if s not in summary]
    hess = summary.get("hessian")
    if "hessian" in require and isinstance(hess, dict) and not hess.get("top_eigenvalues"):
        missing.append("hessian.top_eigenvalues")
    if missing:
        done = ", ".join(summary.get("stages_done", [])) or "none"
        ckpt = config.get("checkpoint") or "CHECKPOINT"
        raise RunDirError(
            f"{p} is a scan without its {', '.join(missing)} section (stages done: {done});"
            f" finish it with `landscape scan {ckpt} --out {p} --resume`."
        )
    nc = p / "results.nc"
    ds = _load_arrays(nc, _fix_hint(p, config)) if arrays and nc.exists() else None
    return RunData(
        path=p,
        name=name or str(summary.get("name") or p.name),
        config=config,
        summary=summary,
        arrays=ds,
    )


def unique_names(paths: Sequence[Path], names: Sequence[str]) -> list[str]:
    """Make display names unique by prefixing parent folders where they clash.

    Example:
        >>> unique_names([Path("a/run"), Path("b/run")], ["run", "run"])
        ['a/run', 'b/run']
    """
    out = list(names)
    for depth in range(1, 4):
        seen: dict[str, int] = {}
        for n in out:
            seen[n] = seen.get(n, 0) + 1
        if all(c == 1 for c in seen.values()):
            return out
        for i, n in enumerate(out):
            if seen[n] > 1:
                parts = Path(paths[i]).resolve().parts
                prefix = "/".join(parts[-1 - depth : -1])
                out[i] = f"{prefix}/{names[i]}" if prefix else names[i]
    return [f"{n} [{i + 1}]" for i, n in enumerate(out)]


def load_runs(
    paths: Iterable[str | Path],
    *,
    names: Sequence[str | None] | None = None,
    require: Sequence[str] = REQUIRED_SECTIONS,
    arrays: bool = True,
) -> list[RunData]:
    """Load several run directories (see :func:`load_run`) with unique display names.

    Args:
        paths: run directories.
        names: optional display names (``None`` entries use the default).
        require: summary sections that must be present in every run.
        arrays: also load ``results.nc``.

    Returns:
        The runs, in the order given.

    Raises:
        RunDirError: if any directory fails validation, or the same directory is given twice.

    Example:
        >>> load_runs([])
        []
    """
    ps = [Path(p) for p in paths]
    seen: dict[Path, Path] = {}
    for p in ps:
        key = p.resolve()
        if key in seen:
            raise RunDirError(f"{p} is given twice; list each run once.")
        seen[key] = p
    given = list(names) if names is not None else [None] * len(ps)
    runs = [
        load_run(p, name=n, require=require, arrays=arrays) for p, n in zip(ps, given, strict=True)
    ]
    unique = unique_names([r.path for r in runs], [r.name for r in runs])
    return [
        RunData(r.path, u, r.config, r.summary, r.arrays) if u != r.name else r
        for r, u in zip(runs, unique, strict=True)
    ]
