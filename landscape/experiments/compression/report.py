"""The compression experiment's verdict as markdown (``verdict.md``)."""

from __future__ import annotations

import math

from landscape.experiments.compression.analysis import CompressionSummary, CorrelationTest
from landscape.experiments.compression.measures import NULL_MEASURES


def _fmt(x: float | None, spec: str = ".3g") -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return format(x, spec)


def _rp(t: CorrelationTest | None) -> tuple[str, str]:
    if t is None:
        return "—", "—"
    return _fmt(t.rho, ".2f"), _fmt(t.p_holm)


def verdict_table(summary: CompressionSummary) -> list[str]:
    """The verdict table's markdown lines.

    Example:
        >>> from landscape.experiments.compression.analysis import CompressionSummary
        >>> s = CompressionSummary(0, 0, (), (), (), (), (), (), (), 0.05, 10)
        >>> verdict_table(s)[0].startswith("| dataset")
        True
    """
    lines = [
        "| dataset | measure | ρ noise | Holm p | ρ partial | Holm p | ρ matched steps |"
        " ρ gap within noise | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in summary.verdicts:
        r, p = _rp(v.noise)
        pr, pp = _rp(v.partial)
        mr, _ = _rp(v.matched)
        gr, _ = _rp(v.gap)
        lines.append(
            f"| {v.dataset} | {v.measure} | {r} | {p} | {pr} | {pp} | {mr} | {gr} |"
            f" **{v.verdict}** |"
        )
    return lines


def verdict_markdown(summary: CompressionSummary) -> str:
    """The verdict table, null measures, control and caveats as markdown."""
    title = "negative control" if summary.negative_control else "verdict"
    lines = [
        f"# Compression / many-minima experiment: {title}",
        "",
        f"{summary.num_entering} of {summary.num_runs} networks enter the tests (the"
        " to-loss arm keeps the networks that reached the target loss). Units are label"
        " draws; p-values are permutation tests"
        f" ({summary.permutations} permutations), Holm-corrected over all tests.",
        "",
        *verdict_table(summary),
        "",
        "## In words",
        "",
    ]
    lines += [f"- *{v.dataset}*, {v.measure}: {v.text}" for v in summary.verdicts]
    if summary.null_tests:
        labels = dict(NULL_MEASURES)
        lines += [
            "",
            "## Null measures (confounds, not evidence)",
            "",
            "| dataset | arm | measure | ρ noise | Holm p |",
            "|---|---|---|---|---|",
        ]
        for t in summary.null_tests:
            lines.append(
                f"| {t.dataset} | {t.arm} | {labels.get(t.measure, t.measure)} |"
                f" {_fmt(t.rho, '.2f')} | {_fmt(t.p_holm)} |"
            )
    if summary.control:
        lines += [
            "",
            "## Function-preserving rescaling control",
            "",
            "| measure | median change | median relative change | invariant | canonicalized |",
            "|---|---|---|---|---|",
        ]
        for c in summary.control:
            lines.append(
                f"| {c.measure} | {_fmt(c.median_change)} |"
                f" {_fmt(100 * c.median_relative_change, '+.2f')}% | {c.invariant} |"
                f" {c.canonicalized} |"
            )
    if summary.notes:
        lines += ["", "## Caveats", ""] + [f"- {n}" for n in summary.notes]
    if summary.not_reached:
        lines += ["", "## Runs that did not reach the target loss", ""]
        lines += [
            f"- {rid}: train loss {_fmt(loss)} after {steps} steps"
            for rid, loss, steps in summary.not_reached
        ]
    return "\n".join(lines) + "\n"
