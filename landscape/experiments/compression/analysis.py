"""Analysis of the compression experiment: cell intervals, controlled tests and verdicts.

**Unit.** Networks that share a label draw are not independent samples of the label noise,
so the tests use the label draw as their unit: the mean over its networks.

**Tests**, per dataset, training arm and measure, stratified by width:

* ``noise``: Spearman ρ of the measure with the label-noise fraction;
* ``partial``: the same, controlling for log optimizer steps and the parameter norm
  (Kennedy's permutation of residuals) — random-label networks train longer and grow
  larger, and a measure that only tracks those is not evidence for the claim;
* ``gap_within_noise``: ρ with the generalization gap *within* each noise level and width
  (so it does not restate the noise), with networks as units, i.e. whether the measure
  tracks generalization beyond what label noise explains.

Permutation p-values (``1/(1+permutations)`` is their floor) are Holm-corrected over every
test of the experiment.

**Verdict** per dataset and measure, from the ``to_loss`` arm's tests with the
``matched_steps`` arm as a check:

* *inconclusive*: the noise test is not significant (or the measure is undefined);
* *confounded*: significant, but the partial test is not (or flips sign), the matched-
  steps arm moves the other way, or the function-preserving control moves the measure;
* *supports* / *contradicts*: significant in / against the predicted direction, and
  none of the above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.experiments.compression.config import CompressionConfig
from landscape.experiments.compression.measures import (
    CELL_SPECS,
    MEASURE_SPECS,
    NULL_MEASURES,
    MeasureSpec,
)
from landscape.results import _json_float
from landscape.stats import bootstrap_mean_ci, cohens_d, holm, partial_spearman, stratified_spearman

if TYPE_CHECKING:
    from landscape.experiments.compression.runner import GroupCount, RunRecord

COVARIATES = ("log_steps", "param_norm")


def _jf(x: float) -> Any:
    return _json_float(float(x))


@dataclass(frozen=True)
class CorrelationTest:
    """One rank-correlation test.

    Attributes:
        dataset, arm, measure: what was tested.
        kind: ``noise``, ``partial`` or ``gap_within_noise``.
        against: the variable (and covariates) in words.
        predicted_sign: the claim's direction (0 for null measures).
        rho: Spearman ρ (size-weighted over strata); ``p``: permutation p-value;
            ``p_holm``: Holm-corrected; ``n``: units; ``min_p``: the p-value floor.
        cohens_d: effect size from the lowest to the highest noise (``noise`` tests).
    """

    dataset: str
    arm: str
    measure: str
    kind: str
    against: str
    predicted_sign: int
    rho: float
    p: float
    n: int
    min_p: float
    cohens_d: float = math.nan
    p_holm: float = math.nan

    def significant(self, alpha: float) -> bool:
        """Whether the Holm-corrected p is below ``alpha``."""
        return bool(np.isfinite(self.p_holm) and self.p_holm < alpha)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "dataset": self.dataset,
            "arm": self.arm,
            "measure": self.measure,
            "kind": self.kind,
            "against": self.against,
            "predicted_sign": self.predicted_sign,
            "rho": _jf(self.rho),
            "p": _jf(self.p),
            "p_holm": _jf(self.p_holm),
            "n": self.n,
            "min_p": _jf(self.min_p),
            "cohens_d": _jf(self.cohens_d),
        }


@dataclass(frozen=True)
class ControlEffect:
    """How a measure changes under the function-preserving rescaling.

    Attributes:
        measure: the measure.
        median_change, median_relative_change, max_abs_change: over networks.
        invariant: every change within ``control_tol`` (relative).
        canonicalized: whether the measure was taken at the canonical representative.
    """

    measure: str
    median_change: float
    median_relative_change: float
    max_abs_change: float
    invariant: bool
    canonicalized: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "measure": self.measure,
            "median_change": _jf(self.median_change),
            "median_relative_change": _jf(self.median_relative_change),
            "max_abs_change": _jf(self.max_abs_change),
            "invariant": self.invariant,
            "canonicalized": self.canonicalized,
        }


@dataclass(frozen=True)
class Verdict:
    """The plain-language verdict on one measure of one dataset.

    Attributes:
        dataset, measure: what it is about.
        verdict: ``supports``, ``contradicts``, ``confounded`` or ``inconclusive``.
        noise, partial, matched, gap: the tests it rests on (``None`` where absent).
        reasons: why, in words.
        text: one paragraph.
    """

    dataset: str
    measure: str
    verdict: str
    noise: CorrelationTest | None
    partial: CorrelationTest | None
    matched: CorrelationTest | None
    gap: CorrelationTest | None
    reasons: tuple[str, ...]
    text: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the tests' ρ and Holm p inline)."""

        def part(t: CorrelationTest | None) -> dict[str, Any] | None:
            return None if t is None else {"rho": _jf(t.rho), "p_holm": _jf(t.p_holm), "n": t.n}

        return {
            "dataset": self.dataset,
            "measure": self.measure,
            "verdict": self.verdict,
            "noise": part(self.noise),
            "partial": part(self.partial),
            "matched_steps": part(self.matched),
            "gap_within_noise": part(self.gap),
            "cohens_d": _jf(self.noise.cohens_d) if self.noise else None,
            "reasons": list(self.reasons),
            "text": self.text,
        }


@dataclass(frozen=True)
class CellStats:
    """Mean and bootstrap 95% interval of every measure in one cell.

    Attributes:
        dataset, arm, noise, width: the cell.
        n: networks entering the tests; ``n_total``: networks trained.
        values: ``name → (mean, low, high)``.
        num_basins, mean_barrier: basin counting (mean over label draws).
    """

    dataset: str
    arm: str
    noise: float
    width: int
    n: int
    n_total: int
    values: dict[str, tuple[float, float, float]]
    num_basins: float = math.nan
    mean_barrier: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (each value as ``{mean, ci}``)."""
        d: dict[str, Any] = {
            "dataset": self.dataset,
            "arm": self.arm,
            "noise": self.noise,
            "width": self.width,
            "n": self.n,
            "n_total": self.n_total,
        }
        for k, (m, lo, hi) in self.values.items():
            d[k] = {"mean": _jf(m), "ci": [_jf(lo), _jf(hi)]}
        d["num_basins"] = _jf(self.num_basins)
        d["mean_barrier"] = _jf(self.mean_barrier)
        return d


@dataclass(frozen=True)
class CompressionSummary:
    """Everything the experiment concludes (the ``compression`` section of the summary).

    Attributes:
        num_runs: networks trained; ``num_entering``: networks entering the tests.
        not_reached: ``to_loss`` runs that missed the target (``run_id, train_loss, steps``).
        cells: per-cell statistics.
        groups: basin counts per label draw.
        tests: every correlation test.
        null_tests: the same tests for the null measures (confounds, not evidence).
        control: effects of the function-preserving rescaling.
        verdicts: one per dataset and measure.
        alpha: family-wise level; ``permutations``: per test.
        notes: caveats that apply to the whole experiment.
        runs_computed, runs_reused, groups_computed, seconds: bookkeeping.
    """

    num_runs: int
    num_entering: int
    not_reached: tuple[tuple[str, float, int], ...]
    cells: tuple[CellStats, ...]
    groups: tuple[GroupCount, ...]
    tests: tuple[CorrelationTest, ...]
    null_tests: tuple[CorrelationTest, ...]
    control: tuple[ControlEffect, ...]
    verdicts: tuple[Verdict, ...]
    alpha: float
    permutations: int
    negative_control: bool = False
    notes: tuple[str, ...] = ()
    runs_computed: int = 0
    runs_reused: int = 0
    groups_computed: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "num_runs": self.num_runs,
            "num_entering": self.num_entering,
            "not_reached": [
                {"run_id": r, "train_loss": _jf(loss), "steps": s}
                for r, loss, s in self.not_reached
            ],
            "cells": [c.to_dict() for c in self.cells],
            "counting": [g.to_dict() for g in self.groups],
            "tests": [t.to_dict() for t in self.tests],
            "null_tests": [t.to_dict() for t in self.null_tests],
            "control": [c.to_dict() for c in self.control],
            "verdict": [v.to_dict() for v in self.verdicts],
            "alpha": self.alpha,
            "permutations": self.permutations,
            "min_p": 1.0 / (1 + self.permutations),
            "negative_control": self.negative_control,
            "notes": list(self.notes),
            "runs_computed": self.runs_computed,
            "runs_reused": self.runs_reused,
            "groups_computed": self.groups_computed,
            "seconds": self.seconds,
        }


# -- units ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Unit:
    dataset: str
    arm: str
    noise: float
    width: int
    values: dict[str, float]


def _units(
    records: Sequence[RunRecord],
    groups: Sequence[GroupCount],
    names: Sequence[str],
    *,
    per_network: bool = False,
) -> list[_Unit]:
    """Mean of every value over the networks of each label draw (or each network alone)."""
    by: dict[tuple[str, str, float, int, int, int], list[RunRecord]] = {}
    for r in records:
        s = r.spec
        sub = s.seed_index if per_network else 0
        by.setdefault((s.dataset, s.arm, s.noise, s.width, s.label_draw, sub), []).append(r)
    counts = {(g.dataset, g.arm, g.noise, g.width, g.label_draw): g for g in groups}
    units = []
    for key, rs in sorted(by.items()):
        vals = {}
        for n in names:
            v = np.array([r.value(n) for r in rs], dtype=float)
            vals[n] = float(np.mean(v[np.isfinite(v)])) if np.isfinite(v).any() else math.nan
        g = counts.get(key[:5])
        vals["num_basins"] = float(g.num_basins) if g else math.nan
        vals["mean_barrier"] = float(g.mean_barrier) if g else math.nan
        units.append(_Unit(key[0], key[1], key[2], key[3], vals))
    return units


def _noise_test(
    config: CompressionConfig, us: list[_Unit], spec: MeasureSpec | tuple[str, str], sign: int
) -> list[CorrelationTest]:
    name = spec.name if isinstance(spec, MeasureSpec) else spec[0]
    ds, arm = us[0].dataset, us[0].arm
    x = np.array([u.noise for u in us])
    y = np.array([u.values.get(name, math.nan) for u in us])
    strata = [u.width for u in us]
    floor = 1.0 / (1 + config.permutations)
    seed = config.seed
    lo, hi = min(config.label_noise), max(config.label_noise)
    dvals = []
    for w in config.widths:
        a = [v for v, u in zip(y, us, strict=True) if u.width == w and u.noise == lo]
        b = [v for v, u in zip(y, us, strict=True) if u.width == w and u.noise == hi]
        dvals.append(cohens_d(a, b))
    d = [v for v in dvals if np.isfinite(v)]
    rho, p, n = stratified_spearman(x, y, strata, permutations=config.permutations, seed=seed)
    out = [
        CorrelationTest(
            ds, arm, name, "noise", "label noise", sign, rho, p, n, floor,
            float(np.mean(d)) if d else math.nan,
        )
    ]  # fmt: skip
    if name in COVARIATES or name in ("num_basins", "mean_barrier"):
        return out
    cov = [[u.values[c] for u in us] for c in COVARIATES]
    prho, pp, pn = partial_spearman(
        x, y, cov, strata, permutations=config.permutations, seed=seed + 1
    )
    out.append(
        CorrelationTest(
            ds, arm, name, "partial", "label noise | log steps, ‖θ‖", sign, prho, pp, pn, floor
        )
    )
    return out


def _gap_test(config: CompressionConfig, nets: list[_Unit], spec: MeasureSpec) -> CorrelationTest:
    """ρ of a measure with the generalization gap within each (width, noise) stratum.

    Networks are the units here: within a stratum the noise is fixed, so the test asks
    whether the measure tracks generalization beyond what the label noise explains.
    """
    y = np.array([u.values.get(spec.name, math.nan) for u in nets])
    gap = np.array([u.values["generalization_gap"] for u in nets])
    strata = [f"{u.width}:{u.noise}" for u in nets]
    rho, p, n = stratified_spearman(
        gap, y, strata, permutations=config.permutations, seed=config.seed + 2
    )
    return CorrelationTest(
        nets[0].dataset, nets[0].arm, spec.name, "gap_within_noise",
        "generalization gap within noise level", spec.sign, rho, p, n,
        1.0 / (1 + config.permutations),
    )  # fmt: skip


def control_effects(
    config: CompressionConfig, records: Sequence[RunRecord]
) -> tuple[ControlEffect, ...]:
    """How each measure moves under the function-preserving rescaling (median over runs)."""
    out = []
    with_control = [r for r in records if r.control is not None]
    if not with_control:
        return ()
    for spec in MEASURE_SPECS:
        a = np.array([r.measures.value(spec.name) for r in with_control])
        b = np.array([r.control.value(spec.name) for r in with_control])  # type: ignore[union-attr]
        ok = np.isfinite(a) & np.isfinite(b)
        if not ok.any():
            continue
        delta = b[ok] - a[ok]
        rel = delta / np.maximum(np.abs(a[ok]), 1e-12)
        tol = config.control_tol * np.maximum(np.abs(a[ok]), 1e-12)
        out.append(
            ControlEffect(
                spec.name,
                float(np.median(delta)),
                float(np.median(rel)),
                float(np.max(np.abs(delta))),
                bool(np.all(np.abs(delta) <= tol)),
                config.canonicalize,
            )
        )
    return tuple(out)


def _verdict(
    config: CompressionConfig,
    spec: MeasureSpec,
    dataset: str,
    tests: Sequence[CorrelationTest],
    control: dict[str, ControlEffect],
    records: Sequence[RunRecord],
) -> Verdict:
    primary_arm = "to_loss" if "to_loss" in config.arms else config.arms[0]

    def pick(arm: str, kind: str) -> CorrelationTest | None:
        return next(
            (
                t
                for t in tests
                if t.dataset == dataset and t.measure == spec.name and t.arm == arm
                and t.kind == kind
            ),
            None,
        )  # fmt: skip

    noise = pick(primary_arm, "noise")
    partial = pick(primary_arm, "partial")
    gap = pick(primary_arm, "gap_within_noise")
    other = [a for a in config.arms if a != primary_arm]
    matched = pick(other[0], "noise") if other else None
    alpha = config.alpha
    pred = "rise" if spec.sign > 0 else "fall"
    reasons: list[str] = []
    mine = [r for r in records if r.spec.dataset == dataset]
    why = [w for r in mine if (w := r.measures.unreliable(spec.name)) is not None]
    if noise is None or not np.isfinite(noise.rho):
        word = "inconclusive"
        reasons.append("no variation to test (undefined, saturated or constant within widths)")
    elif not noise.significant(alpha):
        word = "inconclusive"
        reasons.append(f"not significant (Holm p = {noise.p_holm:.3g} ≥ {alpha:g})")
    elif mine and 2 * len(why) > len(mine):
        word = "inconclusive"
        reasons.append(f"{why[0]} in {len(why)} of {len(mine)} networks")
    else:
        along = int(np.sign(noise.rho)) == spec.sign
        eff = control.get(spec.name)
        if eff is not None and not eff.invariant:
            reasons.append(
                "the function-preserving rescaling moves it (median"
                f" {100 * eff.median_relative_change:+.1f}%)"
            )
        has_partial = spec.source != "counting"  # cell measures have no per-network covariates
        if has_partial and (partial is None or not partial.significant(alpha)):
            reasons.append("not significant once log steps and ‖θ‖ are controlled for")
        elif has_partial and np.sign(partial.rho) != np.sign(noise.rho):  # type: ignore[union-attr]
            reasons.append("the partial correlation has the opposite sign")
        if (
            matched is not None
            and np.isfinite(matched.rho)
            and np.sign(matched.rho) != np.sign(noise.rho)
        ):
            reasons.append(f"the matched-steps arm moves the other way (ρ = {matched.rho:.2f})")
        if reasons:
            word = "confounded"
        else:
            word = "supports" if along else "contradicts"
    if noise is not None and np.isfinite(noise.rho):
        text = (
            f"{spec.label} {'rises' if noise.rho > 0 else 'falls'} with label noise"
            f" (ρ = {noise.rho:.2f}, Holm p = {noise.p_holm:.3g}, n = {noise.n} label draws"
        )
        if np.isfinite(noise.cohens_d):
            text += f", d = {noise.cohens_d:.2f}"
        text += f"); the claim predicts it should {pred}."
        if partial is not None and np.isfinite(partial.rho):
            text += (
                f" Controlling for log steps and ‖θ‖: ρ = {partial.rho:.2f}"
                f" (Holm p = {partial.p_holm:.3g})."
            )
        if matched is not None and np.isfinite(matched.rho):
            text += f" Matched steps: ρ = {matched.rho:.2f} (Holm p = {matched.p_holm:.3g})."
        if gap is not None and np.isfinite(gap.rho):
            text += f" Within noise levels, ρ with the generalization gap = {gap.rho:.2f}."
    else:
        text = f"{spec.label}: no variation to test; the claim predicts it should {pred}."
    if reasons:
        text += " " + word.capitalize() + ": " + "; ".join(reasons) + "."
    return Verdict(dataset, spec.name, word, noise, partial, matched, gap, tuple(reasons), text)


def analyze(
    config: CompressionConfig, records: Sequence[RunRecord], groups: Sequence[GroupCount]
) -> CompressionSummary:
    """Cell intervals, controlled tests with Holm-corrected p-values, and verdicts."""
    entering = [r for r in records if r.enters_tests]
    not_reached = tuple(
        (r.spec.run_id, r.train_loss, r.steps) for r in records if not r.enters_tests
    )
    names = [s.name for s in MEASURE_SPECS] + [n for n, _ in NULL_MEASURES]
    names += ["generalization_gap", "test_accuracy"]
    cells = []
    keys = sorted({(r.spec.dataset, r.spec.arm, r.spec.noise, r.spec.width) for r in records})
    for key in keys:
        members = [
            r for r in entering if (r.spec.dataset, r.spec.arm, r.spec.noise, r.spec.width) == key
        ]
        total = sum(
            1 for r in records if (r.spec.dataset, r.spec.arm, r.spec.noise, r.spec.width) == key
        )
        vals = {
            n: bootstrap_mean_ci(
                [r.value(n) for r in members], resamples=config.bootstrap, seed=config.seed
            )
            for n in names
        }
        gs = [g for g in groups if (g.dataset, g.arm, g.noise, g.width) == key]
        cells.append(
            CellStats(
                key[0], key[1], key[2], key[3], len(members), total, vals,
                float(np.mean([g.num_basins for g in gs])) if gs else math.nan,
                float(np.mean([g.mean_barrier for g in gs])) if gs else math.nan,
            )
        )  # fmt: skip
    units = _units(entering, groups, names)
    nets = _units(entering, groups, names, per_network=True)
    tests: list[CorrelationTest] = []
    null_tests: list[CorrelationTest] = []
    for ds in config.datasets:
        for arm in config.arms:
            us = [u for u in units if u.dataset == ds and u.arm == arm]
            if not us:
                continue
            for spec in MEASURE_SPECS + CELL_SPECS:
                tests += _noise_test(config, us, spec, spec.sign)
            ns = [u for u in nets if u.dataset == ds and u.arm == arm]
            if not config.negative_control:
                tests += [_gap_test(config, ns, spec) for spec in MEASURE_SPECS]
            for nm in NULL_MEASURES:
                null_tests += _noise_test(config, us, nm, 0)[:1]
    adj = holm([t.p for t in tests])
    tests = [_with_holm(t, a) for t, a in zip(tests, adj, strict=True)]
    nadj = holm([t.p for t in null_tests])
    null_tests = [_with_holm(t, a) for t, a in zip(null_tests, nadj, strict=True)]
    control = control_effects(config, entering)
    ctl = {c.measure: c for c in control}
    verdicts = tuple(
        _verdict(config, spec, ds, tests, ctl, entering)
        for ds in config.datasets
        for spec in MEASURE_SPECS + CELL_SPECS
    )
    notes = []
    floor = 1.0 / (1 + config.permutations)
    m = sum(1 for t in tests if np.isfinite(t.p))
    if m and floor * m >= config.alpha:
        notes.append(
            f"with {config.permutations} permutations and {m} tests, even the smallest p-value"
            f" is {floor * m:.3g} after Holm's correction: raise permutations"
        )
    if any(r.measures.rank_saturated for r in entering):
        notes.append(
            "the functional dimension was capped by the number of inputs in some networks;"
            " those values are left out"
        )
    for spec in MEASURE_SPECS:
        bad = [r for r in entering if r.measures.unreliable(spec.name)]
        if bad and np.isfinite([r.measures.value(spec.name) for r in entering]).any():
            notes.append(
                f"{spec.name}: {bad[0].measures.unreliable(spec.name)} in {len(bad)} of"
                f" {len(entering)} networks"
            )
    if entering and not any(r.measures.rank_plateau for r in entering):
        notes.append(
            "functional_rank: the rank had not stopped growing when the inputs ran out, so it"
            " is the rank on the dataset's inputs, a lower bound on the plateau"
        )
    if config.seeds_per_label_draw < 2:
        notes.append("one network per label draw: basins were not counted")
    return CompressionSummary(
        num_runs=len(records),
        num_entering=len(entering),
        not_reached=not_reached,
        cells=tuple(cells),
        groups=tuple(groups),
        tests=tuple(tests),
        null_tests=tuple(null_tests),
        control=control,
        verdicts=verdicts,
        alpha=config.alpha,
        permutations=config.permutations,
        negative_control=config.negative_control,
        notes=tuple(notes),
    )


def _with_holm(t: CorrelationTest, p: float) -> CorrelationTest:
    from dataclasses import replace

    return replace(t, p_holm=float(p))
