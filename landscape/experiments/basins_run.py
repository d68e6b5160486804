"""Basin measures of one network: LLC, prior mass, functional dimension, P(f), compressibility.

This is what ``landscape basins`` runs on a checkpoint and what the compression experiment
runs on each trained network. It lives in ``experiments`` because it combines ``basins``
with the Hessian routines of ``hessian`` (top eigenpairs for λ_max and the preconditioned
volume, Hutch++ for the trace).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from landscape.basins.compress import Compressibility, compressibility
from landscape.basins.jacobian_rank import FunctionalDimension, functional_dimension
from landscape.basins.llc import LLCConfig, LLCResult, estimate_llc
from landscape.basins.prior_function import PriorProbability, prior_probability
from landscape.basins.prior_mass import PriorMassResult, basin_prior_mass
from landscape.basins.volume import (
    VolumeResult,
    basin_volume,
    diagonal_preconditioner,
    eigen_preconditioner,
    hutchinson_diagonal,
)
from landscape.engine import CurvatureOperator, ParamSpace
from landscape.errors import ConfigError, NotApplicable
from landscape.hessian import hutchpp_trace, top_eigenpairs
from landscape.io.model_bundle import ModelBundle
from landscape.io.presets import checked_settings
from landscape.io.rundir import RunDir, versions
from landscape.progress import Progress, tracked
from landscape.results import Estimate, _json_float

#: Measures ``landscape basins`` and the experiment can run. ``prior`` (sampling
#: initializations) and ``volume`` (Lebesgue volume, finite only without flat directions)
#: run only when asked for.
MEASURES = ("llc", "mass", "jacobian", "compress", "curvature", "prior", "volume")
DEFAULT_MEASURES = ("llc", "mass", "jacobian", "compress", "curvature")
PRECONDITIONERS = ("none", "eigen", "diagonal")


@dataclass(frozen=True)
class BasinsConfig:
    """What to measure and how.

    Attributes:
        measures: any of :data:`MEASURES`.
        llc: SGLD settings.
        mass_definition: ``kl`` (function space: mean output KL on held-out inputs) or
            ``loss`` (training loss rise) for the basin whose prior mass is measured.
        mass_cutoff: the KL cutoff ε (nats) or loss rise Δ bounding that basin (``None``:
            the estimator's default).
        mass_rays: rays of the prior-mass estimate.
        mass_prior: ``init`` (σ of the model's default initialization) or ``rms``.
        mass_preconditioner: ``none`` or ``eigen`` (top-k Hessian, importance-corrected).
        volume_delta: Δ bounding the Lebesgue volume's basin ``{L ≤ L(θ) + Δ}``.
        volume_rays: rays per volume estimate.
        volume_preconditioners: ``none`` (plain rays), ``eigen`` (top-k Hessian), ``diagonal``.
        eigen_k: Hessian eigenpairs for λ_max and the eigen preconditioner.
        diag_probes: Hutchinson probes for the diagonal preconditioner.
        jacobian_samples: largest number of inputs the functional dimension may use
            (``None``: every training and test input); it grows the inputs until the rank
            plateaus.
        jacobian_rtol: relative threshold (``None``: the eps-based default).
        jacobian_max_params: largest model whose functional dimension is computed (its
            dense Gram matrix costs ``8·d²`` bytes and ``d²·N·k`` operations); larger models
            skip the measure with that reason.
        prior_samples: initializations sampled for the prior probability ``P(f)``.
        prior_inputs: inputs on which the learned function is compared.
        compress_delta: loss budget for pruning and quantization.
        trace_matvecs: Hessian-vector products for Hutch++.
        seed: seed of every random choice.
    """

    measures: tuple[str, ...] = DEFAULT_MEASURES
    llc: LLCConfig = field(default_factory=LLCConfig)
    mass_definition: str = "kl"
    mass_cutoff: float | None = None
    mass_rays: int = 64
    mass_prior: str = "init"
    mass_preconditioner: str = "none"
    volume_delta: float = 0.1
    volume_rays: int = 64
    volume_preconditioners: tuple[str, ...] = ("none", "eigen")
    eigen_k: int = 10
    diag_probes: int = 16
    jacobian_samples: int | None = 2048
    jacobian_rtol: float | None = None
    jacobian_max_params: int = 6000
    prior_samples: int = 100_000
    prior_inputs: int = 32
    compress_delta: float = 0.05
    trace_matvecs: int = 30
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BasinsConfig:
        """Build from a TOML/JSON table (unknown keys are an error).

        Example:
            >>> BasinsConfig.from_dict({"measures": ["llc"], "llc": {"chains": 2}}).llc.chains
            2
        """
        kw = checked_settings(cls, data, "basins")
        if "llc" in kw:
            kw["llc"] = LLCConfig(**checked_settings(LLCConfig, kw["llc"], "llc"))
        for key in ("measures", "volume_preconditioners"):
            if key in kw:
                kw[key] = tuple(kw[key])
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def with_seed(self, seed: int) -> BasinsConfig:
        """The same settings with ``seed`` (also for the LLC chains)."""
        return dataclasses.replace(self, seed=seed, llc=dataclasses.replace(self.llc, seed=seed))

    def validate(self) -> None:
        """Raise :class:`ConfigError` on unknown measures or impossible settings."""
        bad = [m for m in self.measures if m not in MEASURES]
        if bad:
            raise ConfigError(f"unknown measure {bad[0]!r}; use {', '.join(MEASURES)}.")
        badp = [p for p in self.volume_preconditioners if p not in PRECONDITIONERS]
        if badp:
            raise ConfigError(
                f"unknown preconditioner {badp[0]!r}; use {', '.join(PRECONDITIONERS)}."
            )
        if self.mass_definition not in ("kl", "loss"):
            raise ConfigError(f"unknown basin definition {self.mass_definition!r}; use kl or loss.")
        if self.mass_prior not in ("init", "rms"):
            raise ConfigError(f"unknown prior scale {self.mass_prior!r}; use init or rms.")
        if self.mass_preconditioner not in ("none", "eigen"):
            raise ConfigError(
                f"unknown mass preconditioner {self.mass_preconditioner!r}; use none or eigen."
            )
        if self.mass_cutoff is not None and not self.mass_cutoff > 0:
            raise ConfigError("mass_cutoff must be positive.")
        if self.volume_rays < 2 or self.mass_rays < 2 or self.eigen_k < 1:
            raise ConfigError("need volume_rays ≥ 2, mass_rays ≥ 2 and eigen_k ≥ 1.")
        if self.jacobian_samples is not None and self.jacobian_samples < 1:
            raise ConfigError("jacobian_samples must be ≥ 1 (or unset for every input).")
        if self.prior_samples < 1 or self.prior_inputs < 1:
            raise ConfigError("prior_samples and prior_inputs must be ≥ 1.")
        if self.volume_delta <= 0 or self.compress_delta <= 0:
            raise ConfigError("volume_delta and compress_delta must be positive.")
        self.llc.validate()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        d = asdict(self)
        d["measures"] = list(self.measures)
        d["volume_preconditioners"] = list(self.volume_preconditioners)
        return d


@dataclass(frozen=True)
class Curvature:
    """λ_max (Lanczos) and the trace (Hutch++) at θ.

    Attributes:
        lambda_max: the largest Hessian eigenvalue.
        top_eigenvalues: the top-k eigenvalues.
        top_converged: whether each converged.
        trace: the Hutch++ trace estimate.
    """

    lambda_max: float
    top_eigenvalues: tuple[float, ...]
    top_converged: tuple[bool, ...]
    trace: Estimate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scalars."""
        return {
            "lambda_max": _json_float(self.lambda_max),
            "top_eigenvalues": [_json_float(v) for v in self.top_eigenvalues],
            "top_converged": list(self.top_converged),
            "trace": self.trace.to_dict(),
        }


@dataclass(frozen=True)
class MeasureSet:
    """The typed results of :func:`measure` (``None`` where a measure did not run).

    Attributes:
        llc: local learning coefficient.
        mass: log prior mass of the basin.
        jacobian: functional dimension (Jacobian rank at a plateau in the inputs).
        prior: prior probability of the learned function.
        compress: compressibility.
        curvature: λ_max and trace.
        volume: Lebesgue log-volumes per preconditioner (finite only without flat rays).
        skipped: measures that do not apply to the model, with the reason.
        timing: seconds per measure.
    """

    llc: LLCResult | None = None
    mass: PriorMassResult | None = None
    jacobian: FunctionalDimension | None = None
    prior: PriorProbability | None = None
    compress: Compressibility | None = None
    curvature: Curvature | None = None
    volume: dict[str, VolumeResult] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready results per measure (the ``basins`` section of ``summary.json``)."""
        out: dict[str, Any] = {}
        for name in ("llc", "mass", "jacobian", "prior", "compress", "curvature"):
            res = getattr(self, name)
            if res is not None:
                out[name] = res.to_dict()
        if self.volume:
            out["volume"] = {k: v.to_dict() for k, v in self.volume.items()}
        if self.skipped:
            out["skipped"] = dict(self.skipped)
        out["timing"] = {k: round(v, 4) for k, v in self.timing.items()}
        return out

    def arrays(self) -> dict[str, Any]:
        """Arrays for ``results.nc``: LLC trace, ray radii, Jacobian singular values."""
        arrays: dict[str, Any] = {}
        if self.llc is not None:
            arrays["basins_llc_trace"] = (("chain", "draw"), self.llc.loss_trace)
        if self.mass is not None:
            arrays["basins_mass_radii"] = ("mass_ray", self.mass.radii)
        for kind, v in self.volume.items():
            arrays[f"basins_radii_{kind}"] = (f"ray_{kind}", v.radii)
        if self.jacobian is not None:
            arrays["basins_jacobian_singular_values"] = ("singular", self.jacobian.singular_values)
        return arrays


def measure(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    config: BasinsConfig | None = None,
    *,
    jacobian_inputs: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> MeasureSet:
    """Run the configured measures at θ.

    A measure that does not apply to the model (a TorchScript archive has no
    ``torch.func`` Jacobian) is skipped with its reason in :attr:`MeasureSet.skipped`.

    Args:
        space: the parameter space.
        theta: the network (default ``space.theta0``).
        config: what to measure.
        jacobian_inputs: inputs for the functional dimension instead of the training and
            test inputs (it needs no labels).
        progress: progress reporter.

    Returns:
        The typed results.

    Example:
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> ms = measure(sp, config=BasinsConfig(measures=("jacobian",)))
        >>> ms.jacobian.rank  # 3 outputs × 11 inputs, less the logit shift (11)
        22
    """
    cfg = config or BasinsConfig()
    cfg.validate()
    theta = (space.theta0 if theta is None else theta).detach()
    res: dict[str, Any] = {"volume": {}, "skipped": {}, "timing": {}}
    timing: dict[str, float] = res["timing"]
    ms = cfg.measures
    need_eig = (
        "curvature" in ms
        or ("volume" in ms and "eigen" in cfg.volume_preconditioners)
        or ("mass" in ms and cfg.mass_preconditioner == "eigen")
    )
    op = None
    eig = None

    def clock(name: str, t0: float) -> None:
        timing[name] = timing.get(name, 0.0) + time.perf_counter() - t0

    def attempt(name: str, fn: Callable[[], Any]) -> None:
        """Run one measure; one that does not apply to the model is skipped with its reason."""
        t0 = time.perf_counter()
        try:
            res[name] = fn()
        except NotApplicable as exc:
            res["skipped"][name] = str(exc)
        clock(name, t0)

    with tracked(progress, "basin measures", len(ms)) as task:
        if need_eig or "volume" in ms:
            op = CurvatureOperator(space, theta)
        if need_eig:
            assert op is not None
            t0 = time.perf_counter()
            eig = top_eigenpairs(
                op, min(cfg.eigen_k, space.dim), seed=cfg.seed, return_vectors=True
            )
            clock("eigen", t0)
        if "curvature" in ms:
            assert op is not None and eig is not None
            t0 = time.perf_counter()
            tr = hutchpp_trace(op, cfg.trace_matvecs, seed=cfg.seed)
            res["curvature"] = Curvature(
                float(eig.values[0]),
                tuple(float(v) for v in eig.values),
                tuple(bool(c) for c in eig.converged),
                tr,
            )
            clock("curvature", t0)
            task.advance()
        if "llc" in ms:
            attempt(
                "llc",
                lambda: estimate_llc(
                    space,
                    theta,
                    cfg.llc,
                    hessian_eigenvalues=None if eig is None else eig.values,
                    progress=progress,
                ),
            )
            task.advance()
        if "mass" in ms:
            pre = eigen_preconditioner(eig) if cfg.mass_preconditioner == "eigen" else None  # type: ignore[arg-type]
            attempt(
                "mass",
                lambda: basin_prior_mass(
                    space,
                    theta,
                    definition=cfg.mass_definition,
                    cutoff=cfg.mass_cutoff,
                    num_rays=cfg.mass_rays,
                    prior=cfg.mass_prior,
                    preconditioner=pre,
                    seed=cfg.seed,
                    progress=progress,
                ),
            )
            task.advance()
        if "volume" in ms:
            t0 = time.perf_counter()
            for kind in cfg.volume_preconditioners:
                if kind == "eigen":
                    vpre = eigen_preconditioner(eig)  # type: ignore[arg-type]
                elif kind == "diagonal":
                    diag = hutchinson_diagonal(op, cfg.diag_probes, seed=cfg.seed)  # type: ignore[arg-type]
                    vpre = diagonal_preconditioner(diag)
                else:
                    vpre = None
                res["volume"][kind] = basin_volume(
                    space,
                    theta,
                    delta=cfg.volume_delta,
                    num_rays=cfg.volume_rays,
                    preconditioner=vpre,
                    seed=cfg.seed,
                    progress=progress,
                )
            clock("volume", t0)
            task.advance()
        for name in ("jacobian", "prior"):
            if name in ms and space.scripted:
                res["skipped"][name] = (
                    "TorchScript models do not support torch.func; give a state_dict and --model"
                )
                task.advance()
        if "jacobian" in ms and not space.scripted and space.dim > cfg.jacobian_max_params:
            res["skipped"]["jacobian"] = (
                f"the model has {space.dim} parameters, more than jacobian_max_params ="
                f" {cfg.jacobian_max_params} (the Gram matrix costs 8·d² bytes); raise it in"
                " --config to compute the functional dimension"
            )
            task.advance()
        elif "jacobian" in ms and not space.scripted:
            attempt(
                "jacobian",
                lambda: functional_dimension(
                    space,
                    theta,
                    max_samples=cfg.jacobian_samples,
                    rtol=cfg.jacobian_rtol,
                    inputs=jacobian_inputs,
                    progress=progress,
                ),
            )
            task.advance()
        if "prior" in ms and not space.scripted:
            x = space.bundle.data.x_train[: cfg.prior_inputs]
            attempt(
                "prior",
                lambda: prior_probability(
                    space,
                    theta,
                    inputs=x,
                    num_samples=cfg.prior_samples,
                    seed=cfg.seed,
                    progress=progress,
                ),
            )
            task.advance()
        if "compress" in ms:
            attempt(
                "compress",
                lambda: compressibility(space, theta, delta=cfg.compress_delta, progress=progress),
            )
            task.advance()
    if op is not None:
        op.release()
    return MeasureSet(**res)


@dataclass(frozen=True)
class BasinsRun:
    """What :func:`run_basins` measured, with what it was measured on.

    Attributes:
        name: the run's name (its directory's name).
        num_params: parameters the measures move (after ``params`` restriction).
        loss: training loss at the checkpoint.
        accuracy: training accuracy (NaN for regression).
        measures: the typed results of every measure.
    """

    name: str
    num_params: int
    loss: float
    accuracy: float
    measures: MeasureSet


def run_basins(
    bundle: ModelBundle,
    run: RunDir,
    config: BasinsConfig,
    *,
    progress: Progress | None = None,
    params: Sequence[str] | None = None,
) -> BasinsRun:
    """Measure a checkpoint's basin and record it in ``run`` (``summary.json["basins"]``).

    ``params`` restricts every measure to the parameters matching its globs, the others
    held fixed (see :class:`~landscape.engine.ParamSpace`); the globs are recorded as
    ``basins.params`` (``None``: all trainable parameters). The typed results are
    serialized here, once: scalars to ``summary.json``, arrays to ``results.nc``.

    Returns:
        The typed results.

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> run = RunDir.create(tempfile.mkdtemp() + "/r", {})
        >>> r = run_basins(b, run, BasinsConfig(measures=("jacobian",)))
        >>> r.measures.jacobian.rank, run.summary()["basins"]["jacobian"]["rank"]
        (22, 22)
    """
    import xarray as xr

    space = ParamSpace(bundle, params=params)
    loss, acc = space.evaluate()
    result = measure(space, config=config, progress=progress)
    section = result.to_dict()
    arrays = result.arrays()
    section["config"] = config.to_dict()
    section["params"] = None if space.params is None else list(space.params)
    top: dict[str, Any] = {
        "name": run.path.name,
        "seed": config.seed,
        "versions": versions(),
        "model": {
            "num_params": space.dim,
            **{k: bundle.provenance.get(k) for k in ("format", "sha256", "factory", "path")},
        },
        "data": bundle.data.describe(),
        "loss_function": bundle.loss.name,
        "loss_reduction": bundle.loss.reduction,
        "loss": loss,
        "accuracy": acc if np.isfinite(acc) else None,
        "basins": section,
    }
    run.update_summary(top)
    if arrays:
        run.write_arrays(xr.Dataset({k: v for k, v in arrays.items()}))
    return BasinsRun(run.path.name, space.dim, float(loss), float(acc), result)
