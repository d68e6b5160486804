"""Whether runs can be compared: the settings that make their numbers commensurable.

Two scans are only comparable when they measured the same thing: the same data (and the
same subset of it), the same loss, the same surface grid, range, normalization and
direction seed, and the same probe budgets of the stochastic estimators. Runs of
different architectures may be compared on scalar metrics (a number per run), but not on
surfaces, which live in one parameter space.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from landscape.errors import ConfigError
from landscape.io.runs import RunData


def _get(d: Mapping[str, Any] | None, *keys: str) -> Any:
    cur: Any = d
    for k in keys:
        if not isinstance(cur, Mapping) or k not in cur:
            return None
        cur = cur[k]
    return cur


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _surface_attr(run: RunData, key: str) -> Any:
    ds = run.arrays
    if ds is None or not run.has_surface:
        return None
    v = ds.attrs.get(f"surface_{key}")
    if hasattr(v, "tolist"):
        v = v.tolist()
    return v


def _surface_setting(run: RunData, key: str) -> Any:
    return _first(_get(run.summary, "surface", key), _surface_attr(run, key))


#: Metric settings that do not change what a number means (or that legitimately differ
#: between architectures), left out of the comparability check.
_METRIC_SETTINGS_IGNORED = frozenset(
    {"names", "layer", "strategy", "exact_max_params", "max_iter", "relative_exact", "tol"}
)


def _metric_settings(run: RunData) -> Any:
    m = run.summary.get("metrics")
    if not isinstance(m, Mapping):
        return None
    settings = m.get("settings") if isinstance(m.get("settings"), Mapping) else m.get("config")
    if not isinstance(settings, Mapping):
        return None
    return {k: v for k, v in settings.items() if k not in _METRIC_SETTINGS_IGNORED}


def _scan(run: RunData, key: str) -> Any:
    return _get(run.config, "scan", key)


@dataclass(frozen=True)
class Setting:
    """A configuration value that must agree across compared runs.

    Attributes:
        key: short identifier.
        label: what to call it in messages (an option name where there is one).
        read: how to read it from a run (``None`` when the run does not record it).
        surfaces_only: only matters when surfaces are compared.
    """

    key: str
    label: str
    read: Callable[[RunData], Any]
    surfaces_only: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data",
        "data (--data)",
        lambda r: _first(r.config.get("data"), _get(r.summary, "data", "name")),
    ),
    Setting("max_samples", "--max-samples", lambda r: r.config.get("max_samples")),
    Setting("num_samples", "number of samples", lambda r: _get(r.summary, "data", "num_samples")),
    Setting(
        "num_test_samples",
        "number of test samples",
        lambda r: _get(r.summary, "data", "num_test_samples"),
    ),
    Setting("test_fraction", "--test-fraction", lambda r: r.config.get("test_fraction")),
    Setting(
        "loss",
        "loss (--loss)",
        lambda r: _first(r.config.get("loss"), r.summary.get("loss_function")),
    ),
    Setting(
        "seed",
        "seed (data split and directions, --seed)",
        lambda r: _first(_scan(r, "seed"), r.config.get("seed"), r.summary.get("seed")),
    ),
    Setting("trace_matvecs", "probe count --trace-matvecs", lambda r: _scan(r, "trace_matvecs")),
    Setting("frobenius_probes", "Frobenius probe count", lambda r: _scan(r, "frobenius_probes")),
    Setting("slq_runs", "SLQ probe count (slq_runs)", lambda r: _scan(r, "slq_runs")),
    Setting("slq_steps", "SLQ Lanczos steps (slq_steps)", lambda r: _scan(r, "slq_steps")),
    Setting("metrics_settings", "metric settings (radius, σ, samples)", _metric_settings),
    Setting(
        "metrics_canonicalized",
        "metric canonicalization",
        lambda r: _get(r.summary, "metrics", "canonicalized"),
    ),
    Setting(
        "surface_normalization",
        "surface normalization",
        lambda r: _surface_setting(r, "normalization"),
        surfaces_only=True,
    ),
    Setting(
        "surface_grid",
        "surface grid (--grid)",
        lambda r: _first(_surface_setting(r, "grid"), _scan(r, "surface_grid")),
        surfaces_only=True,
    ),
    Setting(
        "surface_range",
        "surface range",
        lambda r: _first(_get(r.summary, "surface", "range"), _scan(r, "surface_range")),
        surfaces_only=True,
    ),
    Setting(
        "surface_seed",
        "directions seed",
        lambda r: _surface_attr(r, "seed"),
        surfaces_only=True,
    ),
    Setting(
        "surface_ignore",
        "surface bias/BN handling",
        lambda r: _surface_attr(r, "ignore"),
        surfaces_only=True,
    ),
)


def _canon(v: Any) -> str:
    """A hashable, order-stable form of a JSON-like value (grids "21x21" == [21, 21])."""
    if isinstance(v, str) and "x" in v and all(p.isdigit() for p in v.split("x")):
        v = [int(p) for p in v.split("x")]
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return json.dumps(v, sort_keys=True, default=str)


@dataclass(frozen=True)
class Difference:
    """A setting on which runs disagree.

    Attributes:
        key: the setting's identifier.
        label: its name in messages.
        values: ``{run name: value}``.
    """

    key: str
    label: str
    values: dict[str, Any]

    def describe(self) -> str:
        """One-line description: ``--max-samples differs (a: 300, b: 500)``."""
        vals = ", ".join(f"{k}: {v}" for k, v in self.values.items())
        return f"{self.label} differs ({vals})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"key": self.key, "label": self.label, "values": dict(self.values)}


@dataclass(frozen=True)
class Comparability:
    """What the comparability check found.

    Attributes:
        differences: settings that differ between runs (kept when forced).
        same_architecture: whether every run has the same factory and parameter count.
        architectures: ``{run name: "factory, N params"}``.
        surfaces: whether surfaces may be compared (same parameter space, at least two
            runs with a surface).
        forced: whether differences were overridden with ``force=True``.
        notes: human-readable remarks (skipped settings, runs without surfaces).
    """

    differences: tuple[Difference, ...]
    same_architecture: bool
    architectures: dict[str, str]
    surfaces: bool
    forced: bool
    notes: tuple[str, ...] = ()

    @property
    def comparable(self) -> bool:
        """Whether the runs agree on every setting checked."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "comparable": self.comparable,
            "differences": [d.to_dict() for d in self.differences],
            "same_architecture": self.same_architecture,
            "architectures": dict(self.architectures),
            "surfaces": self.surfaces,
            "forced": self.forced,
            "notes": list(self.notes),
        }


def check_comparable(
    runs: Sequence[RunData], *, force: bool = False, surfaces: bool = True
) -> Comparability:
    """Check that ``runs`` measured the same thing, so their numbers can be compared.

    Args:
        runs: the loaded runs (at least two).
        force: report differing settings instead of refusing them.
        surfaces: whether surfaces will be compared; mixed architectures are refused
            then, because a surface needs one parameter space.

    Returns:
        A :class:`Comparability` report.

    Raises:
        ConfigError: with fewer than two runs; on a differing setting unless ``force``;
            on mixed architectures when ``surfaces`` is asked for.

    Example:
        >>> check_comparable([])  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        landscape.errors.ConfigError: a comparison needs at least two runs ...
    """
    if len(runs) < 2:
        raise ConfigError(
            f"a comparison needs at least two runs, got {len(runs)}; give two or more run"
            " directories or checkpoints."
        )
    notes: list[str] = []
    archs = {r.name: r.architecture for r in runs}
    same_arch = len(set(archs.values())) == 1
    arch_text = {k: f"{f}, {n} params" for k, (f, n) in archs.items()}
    with_surface = [r for r in runs if r.has_surface]
    if surfaces and not same_arch:
        listing = "; ".join(f"{k}: {v}" for k, v in arch_text.items())
        raise ConfigError(
            f"the runs have different architectures ({listing}); surfaces need one parameter"
            " space (same factory and parameter count), so compare scalar metrics only with"
            " --no-surfaces (surfaces=False)."
        )
    compare_surfaces = surfaces and same_arch and len(with_surface) >= 2
    if surfaces and len(with_surface) < len(runs):
        missing = [r.name for r in runs if not r.has_surface]
        notes.append(f"no surface stored for {', '.join(missing)}; surface plots leave them out")
    if surfaces and with_surface:
        dims = {r.name: "x".join(map(str, r.surface_dims)) for r in with_surface}
        if len(set(dims.values())) > 1:
            raise ConfigError(
                "the runs' surfaces have different axes ("
                + ", ".join(f"{k}: {v}" for k, v in dims.items())
                + "); rescan with the same --grid, or pass --no-surfaces."
            )
    diffs: list[Difference] = []
    for s in SETTINGS:
        subset = with_surface if s.surfaces_only else list(runs)
        if s.surfaces_only and not compare_surfaces:
            continue
        values = {r.name: s.read(r) for r in subset}
        if len({_canon(v) for v in values.values()}) > 1:
            diffs.append(Difference(s.key, s.label, values))
    if diffs and not force:
        first = diffs[0]
        more = f" (and {len(diffs) - 1} more setting(s))" if len(diffs) > 1 else ""
        raise ConfigError(
            f"the runs are not comparable: {first.describe()}{more}; rescan them with one"
            " shared configuration, or pass --force (force=True) to compare anyway."
        )
    if diffs:
        notes.append("forced despite: " + "; ".join(d.describe() for d in diffs))
    if not same_arch:
        notes.append("architectures differ: only scalar metrics are compared, not surfaces")
    return Comparability(
        differences=tuple(diffs),
        same_architecture=same_arch,
        architectures=arch_text,
        surfaces=compare_surfaces,
        forced=bool(diffs) and force,
        notes=tuple(notes),
    )
