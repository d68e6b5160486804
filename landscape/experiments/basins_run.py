"""Basin measures of one network: LLC, basin volume, Jacobian rank, compressibility, curvature.

This is what ``landscape basins`` runs on a checkpoint and what the compression experiment
runs on each trained network. It lives in ``experiments`` because it combines ``basins``
with the Hessian routines of ``hessian`` (top eigenpairs for λ_max and the preconditioned
volume, Hutch++ for the trace).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from landscape.basins.compress import compressibility
from landscape.basins.jacobian_rank import jacobian_rank
from landscape.basins.llc import LLCConfig, estimate_llc
from landscape.basins.volume import (
    basin_volume,
    diagonal_preconditioner,
    eigen_preconditioner,
    hutchinson_diagonal,
)
from landscape.engine import CurvatureOperator, ParamSpace
from landscape.errors import ConfigError
from landscape.hessian import hutchpp_trace, top_eigenpairs
from landscape.io.model_bundle import ModelBundle
from landscape.io.rundir import RunDir, versions
from landscape.progress import Progress, tracked

MEASURES = ("llc", "volume", "jacobian", "compress", "curvature")
PRECONDITIONERS = ("none", "eigen", "diagonal")


@dataclass(frozen=True)
class BasinsConfig:
    """What to measure and how.

    Attributes:
        measures: any of ``llc``, ``volume``, ``jacobian``, ``compress``, ``curvature``.
        llc: SGLD settings.
        volume_delta: Δ bounding the basin ``{L ≤ L(θ) + Δ}``.
        volume_rays: rays per volume estimate.
        volume_preconditioners: ``none`` (plain rays), ``eigen`` (top-k Hessian), ``diagonal``.
        eigen_k: Hessian eigenpairs for λ_max and the eigen preconditioner.
        diag_probes: Hutchinson probes for the diagonal preconditioner.
        jacobian_samples: training samples whose outputs form the Jacobian's rows.
        jacobian_rtol: relative threshold (``None``: the eps-based default).
        compress_delta: loss budget for pruning and quantization.
        trace_matvecs: Hessian-vector products for Hutch++.
        seed: seed of every random choice.
    """

    measures: tuple[str, ...] = MEASURES
    llc: LLCConfig = field(default_factory=LLCConfig)
    volume_delta: float = 0.1
    volume_rays: int = 64
    volume_preconditioners: tuple[str, ...] = ("none", "eigen")
    eigen_k: int = 10
    diag_probes: int = 16
    jacobian_samples: int = 64
    jacobian_rtol: float | None = None
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
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown basins settings {', '.join(unknown)}; remove them.")
        kw = dict(data)
        if "llc" in kw:
            llc_names = {f.name for f in dataclasses.fields(LLCConfig)}
            bad = sorted(set(kw["llc"]) - llc_names)
            if bad:
                raise ConfigError(f"unknown llc settings {', '.join(bad)}; remove them.")
            kw["llc"] = LLCConfig(**kw["llc"])
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
        if self.volume_rays < 2 or self.eigen_k < 1 or self.jacobian_samples < 1:
            raise ConfigError("need volume_rays ≥ 2, eigen_k ≥ 1 and jacobian_samples ≥ 1.")
        if self.volume_delta <= 0 or self.compress_delta <= 0:
            raise ConfigError("volume_delta and compress_delta must be positive.")
        self.llc.validate()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        d = asdict(self)
        d["measures"] = list(self.measures)
        d["volume_preconditioners"] = list(self.volume_preconditioners)
        return d


def measure(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    config: BasinsConfig | None = None,
    *,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the configured measures at θ.

    Args:
        space: the parameter space.
        theta: the network (default ``space.theta0``).
        config: what to measure.
        progress: progress reporter.

    Returns:
        ``(summary, arrays)``: JSON-ready results per measure, and numpy arrays (LLC loss
        trace, ray radii, Jacobian singular values) for ``results.nc``.

    Example:
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> s, _ = measure(sp, config=BasinsConfig(measures=("jacobian",)))
        >>> s["jacobian"]["rank"]
        33
    """
    cfg = config or BasinsConfig()
    cfg.validate()
    theta = (space.theta0 if theta is None else theta).detach()
    out: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    timing: dict[str, float] = {}
    ms = cfg.measures
    need_eig = "curvature" in ms or ("volume" in ms and "eigen" in cfg.volume_preconditioners)
    op = None
    eig = None
    with tracked(progress, "basin measures", len(ms)) as task:
        if need_eig or "volume" in ms:
            op = CurvatureOperator(space, theta)
        if need_eig:
            assert op is not None
            t0 = time.perf_counter()
            eig = top_eigenpairs(
                op, min(cfg.eigen_k, space.dim), seed=cfg.seed, return_vectors=True
            )
            timing["eigen"] = time.perf_counter() - t0
        if "curvature" in ms:
            assert op is not None  # curvature needs the eigenpairs, so op exists
            t0 = time.perf_counter()
            tr = hutchpp_trace(op, cfg.trace_matvecs, seed=cfg.seed)
            out["curvature"] = {
                "lambda_max": float(eig.values[0]),  # type: ignore[union-attr]
                "top_eigenvalues": [float(v) for v in eig.values],  # type: ignore[union-attr]
                "top_converged": [bool(c) for c in eig.converged],  # type: ignore[union-attr]
                "trace": tr.to_dict(),
            }
            timing["curvature"] = time.perf_counter() - t0 + timing.get("eigen", 0.0)
            task.advance()
        if "llc" in ms:
            t0 = time.perf_counter()
            res = estimate_llc(
                space,
                theta,
                cfg.llc,
                hessian_eigenvalues=None if eig is None else eig.values,
                progress=progress,
            )
            out["llc"] = res.to_dict()
            arrays["basins_llc_trace"] = (("chain", "draw"), res.loss_trace)
            timing["llc"] = time.perf_counter() - t0
            task.advance()
        if "volume" in ms:
            t0 = time.perf_counter()
            vols: dict[str, Any] = {}
            for kind in cfg.volume_preconditioners:
                if kind == "eigen":
                    pre = eigen_preconditioner(eig)  # type: ignore[arg-type]
                elif kind == "diagonal":
                    diag = hutchinson_diagonal(op, cfg.diag_probes, seed=cfg.seed)  # type: ignore[arg-type]
                    pre = diagonal_preconditioner(diag)
                else:
                    pre = None
                v = basin_volume(
                    space,
                    theta,
                    delta=cfg.volume_delta,
                    num_rays=cfg.volume_rays,
                    preconditioner=pre,
                    seed=cfg.seed,
                    progress=progress,
                )
                vols[kind] = v.to_dict()
                arrays[f"basins_radii_{kind}"] = ("ray", v.radii)
            out["volume"] = vols
            timing["volume"] = time.perf_counter() - t0
            task.advance()
        if "jacobian" in ms and space.scripted:
            out.setdefault("skipped", {})["jacobian"] = (
                "TorchScript models do not support torch.func; give a state_dict and --model"
            )
            task.advance()
        elif "jacobian" in ms:
            t0 = time.perf_counter()
            jr = jacobian_rank(
                space,
                theta,
                max_samples=cfg.jacobian_samples,
                rtol=cfg.jacobian_rtol,
                progress=progress,
            )
            out["jacobian"] = jr.to_dict()
            arrays["basins_jacobian_singular_values"] = ("singular", jr.singular_values)
            timing["jacobian"] = time.perf_counter() - t0
            task.advance()
        if "compress" in ms:
            t0 = time.perf_counter()
            out["compress"] = compressibility(
                space, theta, delta=cfg.compress_delta, progress=progress
            ).to_dict()
            timing["compress"] = time.perf_counter() - t0
            task.advance()
    if op is not None:
        op.release()
    out["timing"] = {k: round(v, 4) for k, v in timing.items()}
    return out, arrays


def run_basins(
    bundle: ModelBundle,
    run: RunDir,
    config: BasinsConfig,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Measure a checkpoint's basin and record it in ``run`` (``summary.json["basins"]``).

    Returns:
        The updated summary.

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> run = RunDir.create(tempfile.mkdtemp() + "/r", {})
        >>> s = run_basins(b, run, BasinsConfig(measures=("jacobian",)))
        >>> s["basins"]["jacobian"]["rank"]
        33
    """
    import xarray as xr

    space = ParamSpace(bundle)
    loss, acc = space.evaluate()
    section, arrays = measure(space, config=config, progress=progress)
    section["config"] = config.to_dict()
    top: dict[str, Any] = {
        "name": run.path.name,
        "seed": config.seed,
        "versions": versions(),
        "model": {
            "num_params": space.dim,
            **{k: bundle.provenance.get(k) for k in ("format", "sha256", "factory", "path")},
        },
        "data": bundle.data.describe(),
        "loss": loss,
        "accuracy": acc if np.isfinite(acc) else None,
        "basins": section,
    }
    summary = run.update_summary(top)
    if arrays:
        run.write_arrays(xr.Dataset({k: v for k, v in arrays.items()}))
    return summary
