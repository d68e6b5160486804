"""Run directories: resolved config, scalar summary, arrays, figures; atomic writes.

Layout::

    RUN/config.json     resolved configuration
    RUN/summary.json    scalars (nested sections: model, data, hessian, metrics, ...)
    RUN/results.nc      arrays as an xarray Dataset (NetCDF4 via h5netcdf)
    RUN/figures/        matplotlib figures
    RUN/vtk/            VTK files for ParaView
    RUN/report.html     self-contained report
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import RunDirError

RUN_FILES = ("config.json", "summary.json", "results.nc")
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers."""
    import torch

    import landscape

    return {
        "landscape": landscape.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return _jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if type(obj).__module__.startswith("torch") and hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())  # torch tensors
    if isinstance(obj, set | frozenset):
        return _jsonable(sorted(obj, key=str))
    return obj


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (NaN/Inf as strings)."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda p: p.write_text(text))


def read_json(path: Path) -> Any:
    """Read JSON, raising :class:`RunDirError` with the fix on failure."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise RunDirError(f"{path} is missing; rerun `landscape scan` for this run.") from exc
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path} is not valid JSON ({exc.msg}); rerun the scan.") from exc


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>`` (a suffix is added if it exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    return path


class RunDir:
    """A run directory with atomic JSON and NetCDF writes.

    Example:
        >>> import tempfile
        >>> run = RunDir.create(Path(tempfile.mkdtemp()) / "r", {"a": 1})
        >>> run.update_summary({"loss": 0.5})["loss"]
        0.5
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(
        cls,
        path: str | Path,
        config: dict[str, Any],
        *,
        overwrite: bool = False,
        resume: bool = False,
        compare_keys: Callable[[dict[str, Any]], Any] | None = None,
    ) -> RunDir:
        """Create (or reopen) a run directory for ``config``.

        An existing directory that holds a run with a different configuration is refused
        unless ``overwrite`` (start over) or ``resume`` (keep what is there) is given.
        Files that are not ours are never removed.

        Args:
            path: the directory.
            config: the resolved configuration (written to ``config.json``).
            overwrite: replace an existing run's results.
            resume: continue an existing run (its configuration must match).
            compare_keys: projection of a config used to decide whether two runs match.
        """
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise RunDirError(f"--out {p} is a file; give a directory.")
        run = cls(p)
        key = compare_keys or (lambda c: c)
        cfg = dict(config)
        cfg.setdefault("format_version", FORMAT_VERSION)
        cfg_path = p / "config.json"
        if cfg_path.exists():
            try:
                old = read_json(cfg_path)
            except RunDirError:
                if not overwrite:
                    raise RunDirError(
                        f"--out {p} holds a damaged config.json; pass --overwrite to start"
                        " this run over, or use a new --out."
                    ) from None
                old = None
            same = old is not None and key(_jsonable(old)) == key(_jsonable(cfg))
            if resume and not same and not overwrite:
                raise RunDirError(
                    f"--out {p} holds a run with a different configuration; use a new --out,"
                    " or --overwrite to replace it."
                )
            if not resume and not overwrite:
                raise RunDirError(
                    f"--out {p} already holds a run; pass --resume to continue it or"
                    " --overwrite to replace it."
                )
            if overwrite and not (resume and same):
                for name in RUN_FILES:
                    (p / name).unlink(missing_ok=True)
                sub = p / "progress"
                if sub.is_dir():
                    for f in sub.iterdir():
                        if f.is_file():
                            f.unlink()
        elif p.exists() and any(p.iterdir()) and not overwrite:
            raise RunDirError(
                f"--out {p} is a non-empty directory that is not a landscape run; choose an"
                " empty or new directory."
            )
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(
                f"cannot create --out {p} ({exc.strerror}); choose another path."
            ) from exc
        write_json(cfg_path, cfg)
        return run

    @property
    def config_path(self) -> Path:
        """Path of ``config.json``."""
        return self.path / "config.json"

    @property
    def summary_path(self) -> Path:
        """Path of ``summary.json``."""
        return self.path / "summary.json"

    @property
    def results_path(self) -> Path:
        """Path of ``results.nc``."""
        return self.path / "results.nc"

    def subdir(self, name: str) -> Path:
        """A subdirectory (created on demand), e.g. ``figures`` or ``vtk``."""
        d = self.path / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def config(self) -> dict[str, Any]:
        """The stored configuration."""
        return read_json(self.config_path)

    def summary(self) -> dict[str, Any]:
        """The stored summary (empty if none yet)."""
        return read_json(self.summary_path) if self.summary_path.exists() else {}

    def update_summary(self, section: dict[str, Any]) -> dict[str, Any]:
        """Merge ``section`` into ``summary.json`` (nested dicts merged) and write atomically."""
        summary = self.summary()
        _deep_merge(summary, _jsonable(section))
        write_json(self.summary_path, summary)
        return summary

    def write_arrays(self, dataset: Any) -> None:
        """Merge an ``xarray.Dataset`` into ``results.nc`` and write it atomically.

        Variables and coordinates of ``dataset`` replace those of the same name; other
        stored variables are kept. A stored variable is dropped only when it lives on a
        dimension whose size or coordinate values ``dataset`` changes. Attributes are
        merged, new values winning.
        """
        import xarray as xr

        if self.results_path.exists():
            with xr.open_dataset(self.results_path, engine="h5netcdf") as old:
                old = old.load()
            keep = old.drop_vars([v for v in dataset.variables if v in old.variables])
            changed = []
            for d in dataset.dims:
                if d not in old.dims:
                    continue
                if old.sizes[d] != dataset.sizes[d]:
                    changed.append(d)
                elif d in old.coords and d in dataset.coords:
                    if not np.array_equal(old[d].values, dataset[d].values):
                        changed.append(d)
            keep = keep.drop_dims([d for d in changed if d in keep.dims])
            merged = xr.merge(
                [keep, dataset], compat="override", join="outer", combine_attrs="override"
            )
            attrs = dict(old.attrs)
            attrs.update(dataset.attrs)
            merged.attrs = attrs
        else:
            merged = dataset
        atomic_write(
            self.results_path, lambda p: merged.to_netcdf(p, engine="h5netcdf", invalid_netcdf=True)
        )

    def read_arrays(self) -> Any:
        """Load ``results.nc`` fully into memory as an ``xarray.Dataset``."""
        import xarray as xr

        if not self.results_path.exists():
            raise RunDirError(f"{self.results_path} is missing; rerun the scan.")
        with xr.open_dataset(self.results_path, engine="h5netcdf") as ds:
            return ds.load()


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v
