"""Compare run directories: load, check comparability, tabulate, and write the results."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landscape.compare.checks import Comparability, check_comparable
from landscape.compare.table import ComparisonTable, build_table
from landscape.io.rundir import FORMAT_VERSION, atomic_write, versions, write_json
from landscape.io.runs import RunData, load_runs

#: Files a comparison directory holds (besides ``figures/`` and ``report.html``).
TABLE_CSV = "table.csv"
TABLE_JSON = "table.json"
CORRELATIONS_CSV = "correlations.csv"


@dataclass(frozen=True)
class Comparison:
    """The comparison of several runs.

    Attributes:
        runs: the loaded runs (with their arrays, for figures).
        check: the comparability report.
        table: metrics, ranks and correlations.
    """

    runs: tuple[RunData, ...]
    check: Comparability
    table: ComparisonTable

    def run_info(self) -> list[dict[str, Any]]:
        """Per-run provenance: name, path, architecture, data, checkpoint, scan settings."""
        out = []
        for r in self.runs:
            model = r.summary.get("model", {}) or {}
            out.append(
                {
                    "name": r.name,
                    "path": str(r.path),
                    "checkpoint": r.config.get("checkpoint"),
                    "factory": model.get("factory"),
                    "num_params": model.get("num_params"),
                    "data": r.summary.get("data"),
                    "loss_function": r.summary.get("loss_function") or r.config.get("loss"),
                    "scan": r.config.get("scan"),
                    "has_surface": r.has_surface,
                    "has_density": r.has_density,
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the arrays are left out)."""
        table = self.table.to_dict()
        table.pop("runs")  # the names are in the run records below
        return {
            "format_version": FORMAT_VERSION,
            "kind": "comparison",
            "versions": versions(),
            "runs": self.run_info(),
            "check": self.check.to_dict(),
            **table,
        }


def compare_runs(
    runs: Sequence[str | Path | RunData],
    *,
    force: bool = False,
    surfaces: bool = True,
    n_boot: int = 2000,
    ci_level: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Load, check and tabulate runs.

    Args:
        runs: run directories (or already loaded :class:`RunData`).
        force: compare even when settings differ (the differences are recorded).
        surfaces: also compare surfaces (refused for mixed architectures).
        n_boot: bootstrap replicates for correlation intervals.
        ci_level: coverage of the intervals.
        seed: seed of the bootstrap.

    Returns:
        The :class:`Comparison`.

    Raises:
        RunDirError: for a missing, broken or older run directory.
        ConfigError: for fewer than two runs, incomparable settings (without ``force``),
            or mixed architectures with ``surfaces``.

    Example:
        >>> compare_runs([])  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        landscape.errors.ConfigError: a comparison needs at least two runs, got 0; ...
    """
    loaded = [r for r in runs if isinstance(r, RunData)]
    if loaded and len(loaded) != len(runs):
        paths = [r.path if isinstance(r, RunData) else Path(r) for r in runs]
        data = load_runs(paths)
    elif loaded:
        data = list(loaded)
    else:
        data = load_runs([Path(p) for p in runs])  # type: ignore[arg-type]
    check = check_comparable(data, force=force, surfaces=surfaces)
    table = build_table(data, n_boot=n_boot, ci_level=ci_level, seed=seed)
    return Comparison(runs=tuple(data), check=check, table=table)


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return repr(v)
    return "" if v is None else v


def table_csv(table: ComparisonTable) -> str:
    """The table as CSV text: one row per run, columns ``<metric>``, ``_stderr``, ``_rank``."""
    recs = table.records()
    buf = io.StringIO()
    if recs:
        w = csv.DictWriter(buf, fieldnames=list(recs[0]), lineterminator="\n")
        w.writeheader()
        for rec in recs:
            w.writerow({k: _cell(v) for k, v in rec.items()})
    return buf.getvalue()


def correlations_csv(table: ComparisonTable) -> str:
    """The correlations with the gap as CSV text (one row per metric)."""
    buf = io.StringIO()
    fields = ["metric", "against", "n", "kendall_tau", "kendall_ci_low", "kendall_ci_high",
              "kendall_p", "spearman_rho", "spearman_ci_low", "spearman_ci_high", "spearman_p",
              "ci_reliable", "expected_sign", "p_method", "note"]  # fmt: skip
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for c in table.correlations:
        w.writerow(
            {
                k: _cell(v)
                for k, v in {
                    "metric": c.metric,
                    "against": c.against,
                    "n": c.n,
                    "kendall_tau": c.kendall_tau,
                    "kendall_ci_low": c.kendall_ci[0],
                    "kendall_ci_high": c.kendall_ci[1],
                    "kendall_p": c.kendall_p,
                    "spearman_rho": c.spearman_rho,
                    "spearman_ci_low": c.spearman_ci[0],
                    "spearman_ci_high": c.spearman_ci[1],
                    "spearman_p": c.spearman_p,
                    "ci_reliable": c.ci_reliable,
                    "expected_sign": c.expected_sign,
                    "p_method": c.p_method,
                    "note": c.note,
                }.items()
            }
        )
    return buf.getvalue()


def write_table_csv(table: ComparisonTable, path: str | Path) -> Path:
    """Write :func:`table_csv` atomically to ``path``."""
    p = Path(path)
    text = table_csv(table)
    atomic_write(p, lambda t: t.write_text(text))
    return p


def write_comparison(comparison: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """Write ``table.csv``, ``correlations.csv`` and ``table.json`` into ``out_dir``.

    Args:
        comparison: the comparison.
        out_dir: the comparison directory (created if needed).

    Returns:
        ``{"table.csv": path, "correlations.csv": path, "table.json": path}``.

    Example:
        >>> write_comparison  # doctest: +ELLIPSIS
        <function write_comparison at ...>
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        TABLE_CSV: write_table_csv(comparison.table, out / TABLE_CSV),
        CORRELATIONS_CSV: out / CORRELATIONS_CSV,
        TABLE_JSON: out / TABLE_JSON,
    }
    text = correlations_csv(comparison.table)
    atomic_write(paths[CORRELATIONS_CSV], lambda t: t.write_text(text))
    write_json(paths[TABLE_JSON], comparison.to_dict())
    return paths
