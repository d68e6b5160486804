"""The compression / many-minima experiment.

**Claim tested.** A network with more parameters than it needs has exponentially more
parameterizations that reach low loss by *compressing* than by *memorizing*; those
solutions form large, degenerate basins, so training lands in them. With random labels
the network must memorize, and its basin should then hold less prior mass, be sharper and
less degenerate.

**Design.** Small ReLU MLPs are trained on a fixed training subset with a fraction of
labels replaced by random ones (label noise 0 … 1, a fresh label draw for every
``seeds_per_label_draw`` seeds), for several widths and seeds, in two arms: to the same
training loss, and for the same number of optimizer steps. Every network is measured at
the canonical representative of its ReLU-rescaling orbit (LLC, log prior mass of its
function-space basin, functional dimension, compressibility, λ_max, trace) together with
null measures (steps, ‖θ‖, margin, final loss), and again as a function-preserving
rescaled copy (the control). Networks of one label draw are aligned and counted as basins
by loss barriers. The analysis is in :mod:`.analysis`, the report in :mod:`.report`.
"""

from landscape.experiments.compression.analysis import (
    CellStats,
    CompressionSummary,
    ControlEffect,
    CorrelationTest,
    Verdict,
    analyze,
)
from landscape.experiments.compression.config import (
    ARMS,
    PRESETS,
    CompressionConfig,
    RunSpec,
    TrainSettings,
    label_seed,
    load_config,
    run_seed,
    run_specs,
)
from landscape.experiments.compression.measures import (
    CELL_SPECS,
    MEASURE_SPECS,
    NULL_MEASURES,
    BasinMeasures,
    MeasureSpec,
)
from landscape.experiments.compression.report import verdict_markdown, verdict_table
from landscape.experiments.compression.runner import (
    GroupCount,
    RunRecord,
    default_out_dir,
    init_mlp,
    noisy_labels,
    run_compression,
    run_one,
)

__all__ = [
    "ARMS",
    "CELL_SPECS",
    "MEASURE_SPECS",
    "NULL_MEASURES",
    "PRESETS",
    "BasinMeasures",
    "CellStats",
    "CompressionConfig",
    "CompressionSummary",
    "ControlEffect",
    "CorrelationTest",
    "GroupCount",
    "MeasureSpec",
    "RunRecord",
    "RunSpec",
    "TrainSettings",
    "Verdict",
    "analyze",
    "default_out_dir",
    "init_mlp",
    "label_seed",
    "load_config",
    "noisy_labels",
    "run_compression",
    "run_one",
    "run_seed",
    "run_specs",
    "verdict_markdown",
    "verdict_table",
]
