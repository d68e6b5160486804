"""Figures of the compression experiment (matplotlib, imported lazily)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MEASURE_TITLES = {
    "llc": "LLC λ̂",
    "log_prior_mass": "log prior mass of the basin",
    "functional_rank": "functional dimension",
    "excess_deficit": "deficit beyond symmetries",
    "effective_rank": "Jacobian effective rank",
    "prunable_fraction": "prunable fraction",
    "quant_bits": "quantization bits",
    "description_bits": "description length (bits)",
    "lambda_max": "Hessian λ_max",
    "trace": "Hessian trace",
    "test_accuracy": "test accuracy",
    "generalization_gap": "generalization gap",
    "log_steps": "log optimizer steps (null)",
    "param_norm": "‖θ‖ canonical (null)",
    "margin": "mean margin (null)",
}


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def experiment_figures(out_dir: str | Path) -> list[Path]:
    """Draw the compression experiment's figures into ``out_dir/figures``.

    One figure per dataset and training arm with every measure against label noise (one
    line per width, bootstrap 95% intervals as error bars), and one of basin counts
    against width.

    Args:
        out_dir: the experiment's run directory (with ``summary.json``).

    Returns:
        The paths written.

    Example:
        >>> experiment_figures("runs/compression-quick")  # doctest: +SKIP
        [PosixPath('runs/compression-quick/figures/compression_digits_to_loss.png'), ...]
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    summary = json.loads((out / "summary.json").read_text())["compression"]
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    cells = summary["cells"]
    paths: list[Path] = []
    datasets = sorted({c["dataset"] for c in cells})
    arms = list(dict.fromkeys(c["arm"] for c in cells))
    measures = [m for m in MEASURE_TITLES if cells and m in cells[0]]
    for ds, arm in [(d, a) for d in datasets for a in arms]:
        cs = [c for c in cells if c["dataset"] == ds and c["arm"] == arm]
        widths = sorted({c["width"] for c in cs})
        ncol = 4
        nrow = -(-len(measures) // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
        for ax, m in zip(axes.flat, measures, strict=False):
            for w in widths:
                pts = sorted((c["noise"], c[m]) for c in cs if c["width"] == w)
                x = [p[0] for p in pts]
                y = [_num(p[1]["mean"]) for p in pts]
                lo = [max(0.0, yy - _num(p[1]["ci"][0])) for yy, p in zip(y, pts, strict=True)]
                hi = [max(0.0, _num(p[1]["ci"][1]) - yy) for yy, p in zip(y, pts, strict=True)]
                ax.errorbar(x, y, yerr=[lo, hi], marker="o", ms=3, capsize=2, label=f"w={w}")
            ax.set_title(MEASURE_TITLES[m], fontsize=9)
            ax.set_xlabel("label noise", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(measures) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(
            f"compression experiment · {ds} · {arm.replace('_', ' ')} (mean, bootstrap 95% CI)",
            fontsize=10,
        )
        fig.tight_layout()
        p = fig_dir / f"compression_{ds}_{arm}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    counting = [
        c for c in cells if c["arm"] == arms[0] and math.isfinite(_num(c.get("num_basins")))
    ]
    if counting:
        fig, axes = plt.subplots(
            1, len(datasets), figsize=(4.0 * len(datasets), 3.0), squeeze=False
        )
        for ax, ds in zip(axes.flat, datasets, strict=True):
            cs = [c for c in counting if c["dataset"] == ds]
            for noise in sorted({c["noise"] for c in cs}):
                pts = sorted((c["width"], _num(c["num_basins"])) for c in cs if c["noise"] == noise)
                ax.plot(
                    [p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"noise {noise:g}"
                )
            ax.set_xscale("log", base=2)
            ax.set_xlabel("width")
            ax.set_ylabel("basins per label draw (mean)")
            ax.set_title(ds, fontsize=10)
            ax.legend(fontsize=7)
        fig.tight_layout()
        p = fig_dir / "basin_counts.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths
