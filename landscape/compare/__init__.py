"""Cross-run comparison: which minima are flatter, and does flatness track generalization.

Load run directories written by ``landscape scan`` (:func:`load_runs`), check that they
measured the same thing (:func:`check_comparable`), tabulate every scalar metric with its
error and rank (:func:`build_table`), and correlate the metrics with the generalization
gap (:func:`rank_correlation`). :func:`compare_runs` does all of it.

Example:
    >>> from landscape.compare import rank_correlation
    >>> rank_correlation([1, 2, 3], [1, 2, 3]).kendall_tau
    1.0
"""

from landscape.compare.arrays import Curve, Density, Grid, curve, density, grid2d
from landscape.compare.checks import Comparability, Difference, check_comparable
from landscape.compare.comparison import (
    Comparison,
    compare_runs,
    correlations_csv,
    table_csv,
    write_comparison,
    write_table_csv,
)
from landscape.compare.table import (
    GAP_KEY,
    ComparisonTable,
    MetricRow,
    build_table,
    format_value,
    metric_label,
    run_metrics,
    short_label,
)
from landscape.io.runs import RunData, load_run, load_runs
from landscape.stats import RankCorrelation, kendall_tau_b, rank_correlation, spearman_rho

__all__ = [
    "GAP_KEY",
    "Comparability",
    "Comparison",
    "ComparisonTable",
    "Curve",
    "Density",
    "Difference",
    "Grid",
    "MetricRow",
    "RankCorrelation",
    "RunData",
    "build_table",
    "check_comparable",
    "compare_runs",
    "correlations_csv",
    "curve",
    "density",
    "format_value",
    "grid2d",
    "kendall_tau_b",
    "load_run",
    "load_runs",
    "metric_label",
    "rank_correlation",
    "run_metrics",
    "short_label",
    "spearman_rho",
    "table_csv",
    "write_comparison",
    "write_table_csv",
]
