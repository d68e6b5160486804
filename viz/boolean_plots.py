"""Figures of the Boolean simplicity-bias experiment (matplotlib, imported lazily)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from landscape.viz.style import check_formats, new_figure, save_figure, style_context, width


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _f(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def boolean_figures(
    out_dir: str | Path, *, style: str = "paper", formats: str | Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Draw the Boolean experiment's figures into ``out_dir/figures``.

    ``boolean_prior_lz``: ``log10 P(f)`` against LZ complexity for every function the prior
    sample met (grey), with ``log10 P_SGD(f)`` of the functions SGD found overlaid.
    ``boolean_sgd_bayes``: ``log10 P_SGD(f)`` against ``log10 P_B(f|S)`` (EP on the NNGP),
    with the diagonal.

    Args:
        out_dir: the experiment's run directory.
        style: ``paper`` or ``talk``.
        formats: file formats.

    Returns:
        The paths written.

    Example:
        >>> boolean_figures("runs/boolean-quick")  # doctest: +SKIP
        [PosixPath('runs/boolean-quick/figures/boolean_prior_lz.png'), ...]
    """
    out = Path(out_dir)
    fmts = check_formats(formats)
    summary = json.loads((out / "summary.json").read_text())["boolean"]
    prior = _read_csv(out / "prior_functions.csv")
    sgd = _read_csv(out / "sgd_functions.csv")
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    rp, rs = summary["rho_logp_lz"], summary["rho_psgd_pbayes"]
    with style_context(style):
        w = width(style, 1)
        fig = new_figure((w, 0.8 * w))
        ax = fig.add_subplot(1, 1, 1)
        ax.scatter(
            [_f(r["lz"]) for r in prior],
            [_f(r["log10_p"]) for r in prior],
            s=4,
            c="0.55",
            alpha=0.5,
            linewidths=0,
            label=f"prior ($N$={summary['prior']['num_samples']:,})",
            rasterized=True,
        )
        if sgd:
            ax.scatter(
                [_f(r["lz"]) for r in sgd],
                [_f(r["log10_p_sgd"]) for r in sgd],
                s=10,
                marker="^",
                c="C3",
                linewidths=0,
                label=rf"$P_{{SGD}}(f)$ ({summary['sgd']['converged']} runs)",
            )
        ax.set_xlabel("Lempel–Ziv complexity")
        ax.set_ylabel(r"$\log_{10} P(f)$")
        ax.set_title(rf"prior: Spearman $\rho$ = {_f(rp['rho']):.2f} (n = {rp['n']})")
        ax.legend(loc="upper right")
        paths += save_figure(fig, fig_dir / "boolean_prior_lz", fmts)

        fig = new_figure((w, 0.8 * w))
        ax = fig.add_subplot(1, 1, 1)
        xs = [_f(r["log10_p_bayes"]) for r in sgd]
        ys = [_f(r["log10_p_sgd"]) for r in sgd]
        pts = [(a, b) for a, b in zip(xs, ys, strict=True) if math.isfinite(a) and math.isfinite(b)]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=10, c="C0", linewidths=0)
            lo = min(min(p) for p in pts) - 0.2
            hi = max(max(p) for p in pts) + 0.2
            ax.plot([lo, hi], [lo, hi], c="0.3", lw=0.6, ls="--", label="$P_{SGD} = P_B$")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.legend(loc="upper left")
        else:
            ax.text(0.5, 0.5, "no P_B (nngp off or no SGD functions)", ha="center",
                    va="center", transform=ax.transAxes)  # fmt: skip
        floor = -math.log10(max(1, summary["sgd"]["converged"]))
        ax.axhline(floor, c="0.7", lw=0.5)
        ax.set_xlabel(r"$\log_{10} P_B(f\,|\,S)$ (EP on the NNGP)")
        ax.set_ylabel(r"$\log_{10} P_{SGD}(f)$")
        ax.set_title(rf"Spearman $\rho$ = {_f(rs['rho']):.2f} (n = {rs['n']})")
        paths += save_figure(fig, fig_dir / "boolean_sgd_bayes", fmts)
    return paths
