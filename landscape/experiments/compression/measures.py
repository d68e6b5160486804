"""What the compression experiment measures on each network, as flat typed scalars.

Each measure has a predicted direction: as label noise grows, a network has to memorize,
and the claim predicts a larger LLC, less prior mass in its basin, a higher functional
dimension, lower compressibility and higher curvature. *Null measures* (training steps,
parameter norm, margin, final loss) are recorded beside them: they are the confounds the
analysis controls for, not tests of the claim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from landscape.experiments.basins_run import MeasureSet
from landscape.results import _json_float


@dataclass(frozen=True)
class MeasureSpec:
    """One measure of the experiment.

    Attributes:
        name: its column in the per-run table.
        sign: direction the claim predicts as label noise grows (+1 rises, −1 falls).
        label: what it is, in words.
        source: the basin measure it comes from (``llc``, ``mass``, ...).
    """

    name: str
    sign: int
    label: str
    source: str


MEASURE_SPECS: tuple[MeasureSpec, ...] = (
    MeasureSpec("llc", +1, "local learning coefficient λ̂ (SGLD)", "llc"),
    MeasureSpec(
        "log_prior_mass",
        -1,
        "log prior mass of the basin (output-KL basin, Gaussian prior)",
        "mass",
    ),
    MeasureSpec(
        "functional_rank", +1, "functional dimension (Jacobian rank at a plateau)", "jacobian"
    ),
    MeasureSpec("excess_deficit", -1, "rank deficit beyond the known symmetries", "jacobian"),
    MeasureSpec("effective_rank", +1, "Jacobian effective rank", "jacobian"),
    MeasureSpec("prunable_fraction", -1, "prunable fraction (magnitude, retrain-free)", "compress"),
    MeasureSpec("quant_bits", +1, "uniform quantization bits", "compress"),
    MeasureSpec("description_bits", +1, "description length (bits)", "compress"),
    MeasureSpec("lambda_max", +1, "Hessian λ_max", "curvature"),
    MeasureSpec("trace", +1, "Hessian trace", "curvature"),
)

#: Measures of a label draw's networks together (basin counting).
CELL_SPECS: tuple[MeasureSpec, ...] = (
    MeasureSpec("mean_barrier", +1, "mean loss barrier between aligned minima", "counting"),
    MeasureSpec("num_basins", +1, "basins among the networks of a label draw", "counting"),
)

#: Confounds recorded for every network and used as covariates.
NULL_MEASURES: tuple[tuple[str, str], ...] = (
    ("log_steps", "log optimizer steps"),
    ("param_norm", "parameter norm ‖θ‖ (canonical representative)"),
    ("margin", "mean logit margin on the training set"),
    ("train_loss", "final training loss"),
)


def _f(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


@dataclass(frozen=True)
class BasinMeasures:
    """The experiment's scalars of one network.

    Values are NaN where a measure did not run or is undefined; the flags say why.

    Attributes:
        llc: λ̂; ``llc_stderr`` its standard error across kept chains.
        llc_trustworthy: the estimator's own statement that λ̂ is in its calibrated regime.
        log_prior_mass: natural log of the basin's prior mass.
        prior_mass_ess: effective number of rays carrying that estimate.
        prior_mass_flat_rays: rays along which the basin never ends.
        prior_mass_dominated: the estimate is carried by very few rays (ESS < 5 or one ray
            holding most of it), so it is a lower-bound-like value with no real interval.
        functional_rank: Jacobian rank at the plateau (NaN when capped by the inputs).
        excess_deficit: deficit beyond the known symmetries (NaN when unknown or capped).
        effective_rank: Roy–Vetterli effective rank of the Jacobian.
        rank_saturated: the rank was capped by the number of inputs.
        rank_plateau: the rank stopped growing with more inputs.
        prunable_fraction, quant_bits, description_bits: compressibility.
        lambda_max, trace, trace_stderr: curvature.
    """

    llc: float = math.nan
    llc_stderr: float = math.nan
    llc_trustworthy: bool = False
    log_prior_mass: float = math.nan
    prior_mass_ess: float = math.nan
    prior_mass_flat_rays: float = math.nan
    prior_mass_dominated: bool = False
    functional_rank: float = math.nan
    excess_deficit: float = math.nan
    effective_rank: float = math.nan
    rank_saturated: bool = False
    rank_plateau: bool = False
    prunable_fraction: float = math.nan
    quant_bits: float = math.nan
    description_bits: float = math.nan
    lambda_max: float = math.nan
    trace: float = math.nan
    trace_stderr: float = math.nan

    @classmethod
    def from_set(cls, ms: MeasureSet) -> BasinMeasures:
        """The scalars of a :class:`MeasureSet`."""
        kw: dict[str, Any] = {}
        if ms.llc is not None:
            kw.update(
                llc=ms.llc.llc.mean,
                llc_stderr=ms.llc.llc.stderr,
                llc_trustworthy=bool(getattr(ms.llc, "trustworthy", ms.llc.stable)),
            )
        if ms.mass is not None:
            kw.update(
                log_prior_mass=ms.mass.log_mass,
                prior_mass_ess=ms.mass.ess,
                prior_mass_flat_rays=ms.mass.flat_rays,
                prior_mass_dominated=bool(ms.mass.dominated),
            )
        if ms.jacobian is not None:
            j = ms.jacobian
            capped = bool(j.saturated)
            kw.update(
                functional_rank=math.nan if capped else j.rank,
                excess_deficit=(
                    math.nan if capped or j.excess_deficit is None else j.excess_deficit
                ),
                effective_rank=j.effective_rank,
                rank_saturated=capped,
                rank_plateau=bool(j.plateau),
            )
        if ms.compress is not None:
            c = ms.compress
            kw.update(
                prunable_fraction=c.prunable_fraction,
                quant_bits=c.quant_bits,
                description_bits=c.description_bits,
            )
        if ms.curvature is not None:
            kw.update(
                lambda_max=ms.curvature.lambda_max,
                trace=ms.curvature.trace.mean,
                trace_stderr=ms.curvature.trace.stderr,
            )
        return cls(**kw)

    def unreliable(self, name: str) -> str | None:
        """Why the value of measure ``name`` cannot mean what its name says, if it cannot."""
        if name == "llc" and not self.llc_trustworthy:
            return "λ̂ outside its calibrated regime"
        if name == "log_prior_mass" and self.prior_mass_dominated:
            return "prior mass carried by fewer than 5 effective rays"
        return None

    def value(self, name: str) -> float:
        """The value of measure ``name`` as a float."""
        return _f(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scalars."""
        return {
            f.name: (
                getattr(self, f.name)
                if isinstance(getattr(self, f.name), bool)
                else _json_float(getattr(self, f.name))
            )
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BasinMeasures:
        """Read back :meth:`to_dict`."""
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            v = data[f.name]
            kw[f.name] = bool(v) if f.type in ("bool", bool) else _f(v)
        return cls(**kw)
