"""The comparison table: every scalar metric per run, with its error, ranks and correlations.

Each metric has a *role*: ``sharpness`` (smaller means flatter: λmax, trace, Frobenius,
ε-sharpness, …), ``flatness`` (larger means flatter: a PAC-Bayes σ, a basin volume),
``gap`` (the generalization gap; smaller ranks first), ``performance`` (loss, accuracy;
reported, not ranked) or ``info`` (reported, not ranked). Ranks put the flattest run
first (rank 1); ties share the smaller rank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from landscape.io.runs import RunData, as_float
from landscape.results import Estimate, _json_float
from landscape.stats import RankCorrelation, rank_correlation

ROLES = ("performance", "gap", "sharpness", "flatness", "info")
GAP_KEY = "generalization_gap"

#: Metrics (keys under the summary's ``metrics`` section) for which larger means flatter.
HIGHER_IS_FLATTER = frozenset(
    {
        "pac_bayes_sigma",
        "pac_bayes",
        "sigma",
        "basin_volume",
        "volume",
        "flat_radius",
        "radius",
        "local_entropy",
    }
)

#: Summary entries under ``metrics`` that are settings or flags, not measurements.
NOT_METRICS = frozenset(
    {"canonicalized", "invariant", "config", "settings", "timing", "seed", "stages", "notes",
     "warnings", "details", "skipped"}
)  # fmt: skip

#: Entries of the ``metrics`` section that repeat the run's top-level evaluation numbers.
EVALUATION_KEYS = frozenset(
    {"loss", "accuracy", "test_loss", "test_accuracy", "generalization_gap", "accuracy_gap"}
)

#: Spectral metrics the metrics section recomputes (at the canonical point when it
#: canonicalizes): they repeat the Hessian section's numbers otherwise.
CANONICAL_SPECTRAL = frozenset({"metrics.lambda_max", "metrics.trace", "metrics.frobenius"})

_LABELS = {
    "loss": "train loss",
    "accuracy": "train accuracy",
    "test_loss": "test loss",
    "test_accuracy": "test accuracy",
    "generalization_gap": "generalization gap (test − train loss)",
    "accuracy_gap": "accuracy gap (train − test)",
    "lambda_max": "λmax (top Hessian eigenvalue)",
    "lambda_min": "λmin (most negative eigenvalue)",
    "trace": "Hessian trace",
    "frobenius": "Hessian Frobenius norm",
    "weights.alpha": "mean ESD α over weight layers",
    "weights.weighted_alpha": "mean weighted α (α·log10 λmax)",
}


_SHORT = {
    "loss": "train loss",
    "accuracy": "train acc",
    "test_loss": "test loss",
    "test_accuracy": "test acc",
    "generalization_gap": "gap (loss)",
    "accuracy_gap": "gap (acc)",
    "lambda_max": "λmax",
    "lambda_min": "λmin",
    "trace": "trace",
    "frobenius": "Frobenius",
    "weights.alpha": "α (weights)",
    "weights.weighted_alpha": "weighted α",
}


def short_label(key: str) -> str:
    """A compact label for narrow tables (``generalization_gap`` → ``gap (loss)``).

    Example:
        >>> short_label("lambda_max"), short_label("metrics.eps_sharpness")
        ('λmax', 'ε-sharpness')
    """
    if key in _SHORT:
        return _SHORT[key]
    return metric_label(key).split(" (")[0]


def metric_label(key: str) -> str:
    """A readable label for a metric key (``metrics.eps_sharpness`` → ``eps sharpness``).

    Example:
        >>> metric_label("metrics.pac_bayes_sigma")
        'PAC-Bayes σ'
    """
    if key in _LABELS:
        return _LABELS[key]
    tail = key.split(".", 1)[1] if key.startswith("metrics.") else key
    special = {
        "pac_bayes_sigma": "PAC-Bayes σ",
        "pac_bayes_bound": "PAC-Bayes bound",
        "lambda_max": "λmax (metrics section)",
        "trace": "trace (metrics section)",
        "frobenius": "Frobenius (metrics section)",
        "effective_rank": "effective rank",
        "adaptive_sharpness": "adaptive sharpness",
        "average_sharpness": "average sharpness",
        "relative_flatness": "relative flatness",
        "eps_sharpness": "ε-sharpness",
        "fisher_rao": "Fisher–Rao norm",
        "fisher_rao_norm": "Fisher–Rao norm",
    }
    return special.get(tail, tail.replace("_", " ").replace(".", " "))


@dataclass(frozen=True)
class MetricRow:
    """One metric across the compared runs.

    Attributes:
        key: identifier (``lambda_max``, ``trace``, ``metrics.eps_sharpness``, …).
        label: readable name.
        role: see the module docstring.
        values: one :class:`~landscape.results.Estimate` per run (``None`` when the run
            lacks the metric); ``stderr`` is NaN where no error is known.
        ranks: rank per run (1 = flattest, or smallest gap), ``None`` where not ranked.
    """

    key: str
    label: str
    role: str
    values: tuple[Estimate | None, ...]
    ranks: tuple[int | None, ...]

    @property
    def means(self) -> np.ndarray:
        """The values as an array (NaN where missing)."""
        return np.array([math.nan if v is None else v.mean for v in self.values], dtype=float)

    @property
    def stderrs(self) -> np.ndarray:
        """The standard errors as an array (NaN where unknown)."""
        return np.array([math.nan if v is None else v.stderr for v in self.values], dtype=float)

    @property
    def ranked(self) -> bool:
        """Whether this row carries ranks."""
        return self.role in ("sharpness", "flatness", "gap")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "key": self.key,
            "label": self.label,
            "role": self.role,
            "values": [None if v is None else v.to_dict() for v in self.values],
            "ranks": list(self.ranks),
        }


@dataclass(frozen=True)
class ComparisonTable:
    """Every scalar metric of every run, with ranks and correlations with the gap.

    Attributes:
        runs: run display names (column order).
        rows: one :class:`MetricRow` per metric.
        correlations: rank correlation of each sharpness/flatness metric with the
            generalization gap (empty when fewer than three runs have test data).
        n_boot: bootstrap replicates behind the intervals.
        ci_level: coverage of the intervals.
        seed: seed of the bootstrap.
        notes: one line per metric some runs lack (shown as ``—``), naming those runs and,
            where the scan recorded it, why the metric was skipped.
    """

    runs: tuple[str, ...]
    rows: tuple[MetricRow, ...]
    correlations: tuple[RankCorrelation, ...]
    n_boot: int
    ci_level: float
    seed: int
    notes: tuple[str, ...] = ()

    def row(self, key: str) -> MetricRow:
        """The row of metric ``key`` (KeyError if absent)."""
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(key)

    def correlation(self, key: str) -> RankCorrelation | None:
        """The correlation of metric ``key`` with the gap, if computed."""
        for c in self.correlations:
            if c.metric == key:
                return c
        return None

    @property
    def keys(self) -> tuple[str, ...]:
        """Metric keys in row order."""
        return tuple(r.key for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "runs": list(self.runs),
            "metrics": [r.to_dict() for r in self.rows],
            "correlations": [c.to_dict() for c in self.correlations],
            "bootstrap": {"n_boot": self.n_boot, "ci_level": self.ci_level, "seed": self.seed},
            "notes": list(self.notes),
        }

    def records(self) -> list[dict[str, Any]]:
        """One flat record per run: ``{run, <key>, <key>_stderr, <key>_rank, …}`` (for CSV)."""
        out: list[dict[str, Any]] = []
        for i, name in enumerate(self.runs):
            rec: dict[str, Any] = {"run": name}
            for r in self.rows:
                v = r.values[i]
                rec[r.key] = math.nan if v is None else v.mean
                rec[f"{r.key}_stderr"] = math.nan if v is None else v.stderr
                if r.ranked:
                    rec[f"{r.key}_rank"] = r.ranks[i]
            out.append(rec)
        return out


def _estimate(v: Any, method: str = "") -> Estimate | None:
    """An Estimate from a summary entry: ``{mean, stderr, n, method}`` or a bare number."""
    if isinstance(v, Mapping):
        if "mean" not in v:
            return None
        mean = as_float(v.get("mean"))
        se = as_float(v.get("stderr"))
        n = v.get("n")
        return Estimate(
            mean, se, int(n) if isinstance(n, int | float) else 0, str(v.get("method", method))
        )
    if isinstance(v, bool) or v is None:
        return None
    f = as_float(v)
    if isinstance(v, str) and math.isnan(f) and v.lower() != "nan":
        return None
    return Estimate(f, math.nan, 1, method)


def _metric_role(key: str, entry: Any) -> str:
    if isinstance(entry, Mapping):
        if isinstance(entry.get("higher_is_flatter"), bool):
            return "flatness" if entry["higher_is_flatter"] else "sharpness"
        direction = entry.get("direction")
        if direction in ("higher_is_flatter", "higher", "flatness"):
            return "flatness"
        if direction in ("lower_is_flatter", "lower", "sharpness"):
            return "sharpness"
    leaf = key.split(".")[-1]
    parts = set(key.split("."))
    if leaf in HIGHER_IS_FLATTER or parts & HIGHER_IS_FLATTER:
        return "flatness"
    return "sharpness"


def _flatten_metrics(section: Mapping[str, Any], prefix: str = "metrics", depth: int = 0):
    for k, v in section.items():
        if k in NOT_METRICS or k.endswith("_config") or (depth == 0 and k in EVALUATION_KEYS):
            continue
        key = f"{prefix}.{k}"
        est = _estimate(v)
        if est is not None:
            yield key, est, _metric_role(key, v)
        elif isinstance(v, Mapping) and depth < 1:
            yield from _flatten_metrics(v, key, depth + 1)


def _binomial(p: float, n: Any) -> Estimate:
    if not math.isfinite(p):
        return Estimate(math.nan, math.nan, 0, "")
    nn = int(n) if isinstance(n, int | float) and n else 0
    se = math.sqrt(max(p * (1 - p), 0.0) / nn) if nn > 0 else math.nan
    return Estimate(p, se, nn, "binomial")


def run_metrics(run: RunData) -> dict[str, tuple[Estimate, str]]:
    """Every scalar metric of one run: ``{key: (estimate, role)}`` in table order.

    Exact (dense) Hessian values are preferred to estimates when the scan computed them.

    Example:
        >>> from pathlib import Path
        >>> r = RunData(Path("r"), "r", {}, {"loss": 0.1, "hessian": {"top_eigenvalues": [3.0]}})
        >>> run_metrics(r)["lambda_max"][0].mean
        3.0
    """
    s = run.summary
    data = s.get("data", {}) or {}
    out: dict[str, tuple[Estimate, str]] = {}
    loss = as_float(s.get("loss"))
    test_loss = as_float(s.get("test_loss"))
    acc = as_float(s.get("accuracy"))
    test_acc = as_float(s.get("test_accuracy"))
    out["loss"] = (
        Estimate(loss, math.nan, int(data.get("num_samples") or 0), "mean"),
        "performance",
    )
    if math.isfinite(acc):
        out["accuracy"] = (_binomial(acc, data.get("num_samples")), "performance")
    if math.isfinite(test_loss):
        out["test_loss"] = (
            Estimate(test_loss, math.nan, int(data.get("num_test_samples") or 0), "mean"),
            "performance",
        )
        if math.isfinite(test_acc):
            out["test_accuracy"] = (
                _binomial(test_acc, data.get("num_test_samples")),
                "performance",
            )
        gap = as_float(s.get("generalization_gap"))
        if not math.isfinite(gap):
            gap = test_loss - loss
        out[GAP_KEY] = (Estimate(gap, math.nan, 1, "test − train"), "gap")
        if math.isfinite(acc) and math.isfinite(test_acc):
            out["accuracy_gap"] = (Estimate(acc - test_acc, math.nan, 1, "train − test"), "gap")
    h = s.get("hessian", {}) or {}
    exact = bool(h.get("exact"))
    top = h.get("exact_top_eigenvalues") if exact else None
    if top:
        out["lambda_max"] = (Estimate(as_float(top[0]), 0.0, 1, "exact"), "sharpness")
    elif h.get("top_eigenvalues"):
        res = h.get("top_residuals") or [math.nan]
        out["lambda_max"] = (
            Estimate(
                as_float(h["top_eigenvalues"][0]), abs(as_float(res[0])), 1, "lanczos residual"
            ),
            "sharpness",
        )
    if exact and h.get("exact_trace") is not None:
        out["trace"] = (Estimate(as_float(h["exact_trace"]), 0.0, 1, "exact"), "sharpness")
    elif (e := _estimate(h.get("trace"))) is not None:
        out["trace"] = (e, "sharpness")
    if exact and h.get("exact_frobenius") is not None:
        out["frobenius"] = (Estimate(as_float(h["exact_frobenius"]), 0.0, 1, "exact"), "sharpness")
    elif (e := _estimate(h.get("frobenius"))) is not None:
        out["frobenius"] = (e, "sharpness")
    bottom = (h.get("exact_bottom_eigenvalues") if exact else None) or h.get("bottom_eigenvalues")
    if bottom:
        out["lambda_min"] = (Estimate(as_float(bottom[0]), math.nan, 1, ""), "info")
    metrics = s.get("metrics")
    if isinstance(metrics, Mapping):
        for key, est, role in _flatten_metrics(metrics):
            out[key] = (est, role)
    weights = s.get("weights")
    averages = weights.get("averages") if isinstance(weights, Mapping) else None
    if isinstance(weights, Mapping) and isinstance(averages, Mapping):
        n_fit = int(weights.get("num_fit") or 0)
        for name in ("alpha", "weighted_alpha"):
            value = as_float(averages.get(name))
            if math.isfinite(value):
                out[f"weights.{name}"] = (
                    Estimate(value, math.nan, n_fit, "mean over fitted layers"),
                    "info",
                )
    return out


def _skip_reason(run: RunData, key: str) -> str | None:
    """Why the scan of ``run`` skipped metric ``key`` (``metrics.x`` or a stage's value)."""
    s = run.summary
    metrics = s.get("metrics")
    name = key.split(".", 1)[1] if key.startswith("metrics.") else key
    if isinstance(metrics, Mapping):
        skipped = metrics.get("skipped")
        if isinstance(skipped, Mapping) and name in skipped:
            return str(skipped[name])
        if isinstance(metrics.get("skipped"), str) and key.startswith("metrics."):
            return str(metrics["skipped"])
    weights = s.get("weights")
    if key.startswith("weights."):
        if isinstance(weights, Mapping) and isinstance(weights.get("skipped"), str):
            return str(weights["skipped"])
        if isinstance(weights, Mapping) and not weights.get("num_fit"):
            return "no layer has enough eigenvalues for a power-law fit"
        return None
    hess = s.get("hessian")
    if (
        not key.startswith("metrics.")
        and isinstance(hess, Mapping)
        and isinstance(hess.get("skipped"), str)
    ):
        return str(hess["skipped"])
    return None


def missing_notes(runs: Sequence[RunData], rows: Sequence[MetricRow]) -> tuple[str, ...]:
    """One note per metric that some runs lack: which runs, and why when recorded.

    Example:
        >>> from pathlib import Path
        >>> a = RunData(Path("a"), "a", {}, {"metrics": {"x": 1.0}})
        >>> b = RunData(Path("b"), "b", {}, {"metrics": {"skipped": {"x": "no Linear layer"}}})
        >>> row = MetricRow("metrics.x", "x", "info", (Estimate(1.0, 0.0, 1), None), (None, None))
        >>> missing_notes([a, b], [row])
        ('metrics.x: — for b (skipped: no Linear layer)',)
    """
    notes: list[str] = []
    for row in rows:
        absent = [i for i, v in enumerate(row.values) if v is None]
        if not absent or len(absent) == len(runs):
            continue
        parts = []
        for i in absent:
            why = _skip_reason(runs[i], row.key)
            parts.append(
                f"{runs[i].name} (skipped: {why})" if why else f"{runs[i].name} (not measured)"
            )
        notes.append(f"{row.key}: — for {', '.join(parts)}")
    return tuple(notes)


def _ranks(means: np.ndarray, role: str) -> tuple[int | None, ...]:
    if role not in ("sharpness", "flatness", "gap"):
        return tuple(None for _ in means)
    vals = -means if role == "flatness" else means
    finite = np.isfinite(vals)
    out: list[int | None] = []
    for i, v in enumerate(vals):
        if not finite[i]:
            out.append(None)
        else:
            out.append(1 + int(np.sum(vals[finite] < v)))
    return tuple(out)


def build_table(
    runs: Sequence[RunData],
    *,
    n_boot: int = 2000,
    ci_level: float = 0.95,
    seed: int = 0,
) -> ComparisonTable:
    """Build the comparison table of ``runs`` (see :class:`ComparisonTable`).

    Args:
        runs: loaded runs.
        n_boot: bootstrap replicates for the correlation intervals.
        ci_level: coverage of the intervals.
        seed: seed of the bootstrap and permutation tests.

    Returns:
        The table.

    Example:
        >>> from pathlib import Path
        >>> mk = lambda n, lam: RunData(Path(n), n, {}, {"loss": 0.1,
        ...     "hessian": {"top_eigenvalues": [lam]}})
        >>> t = build_table([mk("a", 5.0), mk("b", 2.0)])
        >>> t.row("lambda_max").ranks
        (2, 1)
    """
    per_run = [run_metrics(r) for r in runs]
    keys: list[str] = []
    roles: dict[str, str] = {}
    for m in per_run:
        for k, (_, role) in m.items():
            if k not in roles:
                keys.append(k)
                roles[k] = role
    order = {r: i for i, r in enumerate(ROLES)}
    fixed = ["loss", "accuracy", "test_loss", "test_accuracy", GAP_KEY, "accuracy_gap",
             "lambda_max", "trace", "frobenius", "lambda_min"]  # fmt: skip
    keys.sort(key=lambda k: (fixed.index(k) if k in fixed else len(fixed), order[roles[k]]))
    canon = all(bool((r.summary.get("metrics") or {}).get("canonicalized")) for r in runs)
    rows = []
    for k in keys:
        values = tuple(m[k][0] if k in m else None for m in per_run)
        means = np.array([math.nan if v is None else v.mean for v in values])
        label = metric_label(k)
        if canon and k in CANONICAL_SPECTRAL:
            label = label.replace("(metrics section)", "(canonicalized)")
        rows.append(MetricRow(k, label, roles[k], values, _ranks(means, roles[k])))
    correlations: list[RankCorrelation] = []
    gap_row = next((r for r in rows if r.key == GAP_KEY), None)
    if gap_row is not None and int(np.isfinite(gap_row.means).sum()) >= 2:
        for r in rows:
            if r.role not in ("sharpness", "flatness"):
                continue
            correlations.append(
                rank_correlation(
                    r.means,
                    gap_row.means,
                    x_err=r.stderrs,
                    y_err=gap_row.stderrs,
                    metric=r.key,
                    against=GAP_KEY,
                    expected_sign=1 if r.role == "sharpness" else -1,
                    n_boot=n_boot,
                    ci_level=ci_level,
                    seed=seed,
                )
            )
    return ComparisonTable(
        runs=tuple(r.name for r in runs),
        rows=tuple(rows),
        correlations=tuple(correlations),
        n_boot=n_boot,
        ci_level=ci_level,
        seed=seed,
        notes=missing_notes(runs, rows),
    )


def format_value(est: Estimate | None, digits: int = 4) -> str:
    """``1.234 ± 0.05`` (or ``1.234`` when no error is known, ``—`` when missing).

    Example:
        >>> format_value(Estimate(1.23456, 0.012, 10))
        '1.235 ± 0.012'
    """
    if est is None or not math.isfinite(est.mean):
        return "—" if est is None else str(_json_float(est.mean))
    text = f"{est.mean:.{digits}g}"
    if math.isfinite(est.stderr) and est.stderr > 0:
        text += f" ± {est.stderr:.2g}"
    return text
