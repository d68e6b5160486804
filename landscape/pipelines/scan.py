"""The scan pipeline: loss, Hessian spectrum, trace, density, metrics and a quick surface.

Each stage writes its section of ``summary.json`` (and arrays to ``results.nc``) as soon
as it finishes, and records itself in ``summary["stages_done"]``; a resumed scan skips
finished stages. A stage that does not apply to the model (it raises
:class:`~landscape.errors.NotApplicable`) writes ``{"skipped": "<reason>"}`` as its
section and the scan goes on; so does a metric inside the metrics stage (its reason is in
``summary["metrics"]["skipped"]``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from landscape.engine.distributed import DataParallel, DistributedContext
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError, NotApplicable
from landscape.io.model_bundle import ModelBundle
from landscape.io.rundir import RunDir, versions
from landscape.metrics import compute_metrics
from landscape.metrics.weight_spectra import weight_spectra
from landscape.progress import Progress
from landscape.surface import quick_surface
from landscape.surface.sharded import sharded_quick_surface

EXACT_MAX_PARAMS = 5000
METRICS_TOP_K = 10  # the metrics' top-k (their λmax and effective rank), kept from the sweep


@dataclass(frozen=True)
class ScanConfig:
    """What a scan computes.

    Attributes:
        top_k: number of largest Hessian eigenvalues.
        bottom_k: number of most negative eigenvalues.
        trace_matvecs: most Hessian-vector products the trace and Frobenius probes spend
            of their own (the sweep); Hutch++'s budget when ``sweep`` is off.
        frobenius_probes: probes of the separate Frobenius estimate (``sweep`` off).
        slq_runs: stochastic Lanczos quadrature runs.
        slq_steps: Lanczos steps per SLQ run.
        sweep: one shared Krylov sweep (:func:`~landscape.hessian.sweep.spectrum`): the
            eigenpair run is also the first SLQ run and the deflation basis of the trace
            and Frobenius norm, whose probes are the other SLQ runs' starts and stop at
            ``trace_tol``/``frobenius_tol``. Off: each estimator with its own budget.
        trace_tol: relative standard error at which the trace stops (and above which it
            is reported as not resolved).
        frobenius_tol: relative standard error at which the Frobenius norm stops.
        exact: also compute the dense float64 Hessian spectrum (≤ 5000 parameters).
        tol: relative residual tolerance of the eigenpairs.
        strategy: Hessian-vector product strategy (``auto``, ``cached``, ``reverse``,
            ``forward``).
        surface: compute a quick 2D filter-normalized surface.
        surface_grid: its grid shape.
        surface_range: its half-width (in units of the normalized directions).
        metrics: compute the flatness metrics.
        metric_names: which metrics (empty: every one that applies).
        seed: seed of every random choice.
        params: globs over dotted parameter names restricting every measure to those
            parameters, the others held fixed (``None``: all trainable parameters).
        per_layer: also measure the Hessian block of each module group
            (:func:`~landscape.hessian.per_layer.layer_groups`): λ_max, trace, top-k.
        per_layer_top_k: eigenvalues per block.
        per_layer_trace_matvecs: Hutch++ products per block.
        weights: compute the data-free weight spectra
            (:func:`~landscape.metrics.weight_spectra.weight_spectra`) of every weight matrix.
    """

    top_k: int = 5
    bottom_k: int = 3
    trace_matvecs: int = 99
    frobenius_probes: int = 30
    slq_runs: int = 4
    slq_steps: int = 60
    sweep: bool = True
    trace_tol: float = 0.01
    frobenius_tol: float = 0.02
    exact: bool = False
    tol: float = 1e-6
    strategy: str = "auto"
    surface: bool = True
    surface_grid: tuple[int, ...] = (21, 21)
    surface_range: float = 1.0
    metrics: bool = True
    metric_names: tuple[str, ...] = ()
    seed: int = 0
    params: tuple[str, ...] | None = None
    per_layer: bool = False
    per_layer_top_k: int = 3
    per_layer_trace_matvecs: int = 30
    weights: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` on values that cannot work."""
        if self.top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {self.top_k}.")
        if self.bottom_k < 0:
            raise ConfigError(f"--bottom-k must be 0 or more, got {self.bottom_k}.")
        if self.trace_matvecs < 3:
            raise ConfigError(f"--trace-matvecs must be at least 3, got {self.trace_matvecs}.")
        if self.slq_runs < 1 or self.slq_steps < 2:
            raise ConfigError("--slq-runs must be ≥ 1 and --slq-steps ≥ 2.")
        if not 0 < self.tol < 1:
            raise ConfigError(f"--tol must be in (0, 1), got {self.tol}.")
        for name, t in (("trace_tol", self.trace_tol), ("frobenius_tol", self.frobenius_tol)):
            if not 0 < t < 1:
                raise ConfigError(f"{name} must be in (0, 1), got {t}.")
        if self.params is not None and not self.params:
            raise ConfigError("--params needs at least one glob; drop it to analyse all.")
        if self.per_layer_top_k < 1:
            raise ConfigError(f"per_layer_top_k must be at least 1, got {self.per_layer_top_k}.")
        if self.per_layer_trace_matvecs < 6:
            raise ConfigError(
                f"per_layer_trace_matvecs must be at least 6, got {self.per_layer_trace_matvecs}."
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready configuration."""
        d = asdict(self)
        d["surface_grid"] = list(self.surface_grid)
        d["metric_names"] = list(self.metric_names)
        d["params"] = None if self.params is None else list(self.params)
        return d


def _finite_or_none(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def run_scan(
    bundle: ModelBundle,
    run: RunDir,
    config: ScanConfig,
    *,
    progress: Progress | None = None,
    context: DistributedContext | None = None,
) -> dict[str, Any]:
    """Scan one checkpoint into ``run`` and return its summary.

    Under torchrun (``context`` distributed) the loss and every curvature product are
    data-parallel over the ranks' shards, every rank gets the same numbers, and only
    rank 0 writes and reports progress.

    Args:
        bundle: model, data and loss.
        run: the run directory (created by the caller).
        config: what to compute.
        progress: progress reporter.
        context: distributed context (default: the current process group, if any).

    Returns:
        The summary dictionary (as written to ``summary.json``).

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> run = RunDir.create(tempfile.mkdtemp() + "/r", {})
        >>> s = run_scan(b, run, ScanConfig(surface=False, metrics=False, slq_runs=1,
        ...                                 trace_matvecs=9, frobenius_probes=3))
        >>> len(s["hessian"]["top_eigenvalues"])
        5
    """
    import xarray as xr

    from landscape.hessian import (
        exact_spectrum,
    )
    from landscape.hessian.per_layer import layer_groups, per_layer_hessian
    from landscape.hessian.sweep import separate_spectrum, spectrum

    config.validate()
    dp = DataParallel(bundle, context, space=ParamSpace(bundle, params=config.params))
    run = dp.main_only(run)
    progress = dp.progress(progress)
    summary = run.summary()
    done: list[str] = list(summary.get("stages_done", []))
    timing: dict[str, float] = dict(summary.get("timing", {}))
    space = dp.space
    seed = config.seed

    def finish(stage: str, section: dict[str, Any], t0: float) -> None:
        timing[stage] = round(time.perf_counter() - t0, 4)
        done.append(stage)
        section["timing"] = timing
        section["stages_done"] = done
        run.update_summary(section)

    def skip(stage: str, exc: NotApplicable, t0: float) -> None:
        finish(stage, {stage: {"skipped": str(exc)}}, t0)

    if "evaluate" not in done:
        t0 = time.perf_counter()
        loss, acc = dp.evaluate()
        section: dict[str, Any] = {
            "name": run.path.name,
            "seed": seed,
            "config": {"params": None if config.params is None else list(config.params)},
            "versions": versions(),
            "model": {
                "num_params": space.dim,
                "num_tensors": len(space.infos),
                "device": str(bundle.device),
                "dtype": str(bundle.dtype).replace("torch.", ""),
                **{k: bundle.provenance.get(k) for k in ("format", "sha256", "factory", "path")},
            },
            "data": bundle.data.describe(),
            "loss_function": bundle.loss.name,
            "loss_reduction": bundle.loss.reduction,
            "loss": loss,
            "accuracy": _finite_or_none(acc),
            "test_loss": None,
            "test_accuracy": None,
            "generalization_gap": None,
        }
        if bundle.data.has_test:
            tl, ta = dp.evaluate(split="test")
            section.update(
                test_loss=tl, test_accuracy=_finite_or_none(ta), generalization_gap=tl - loss
            )
        finish("evaluate", section, t0)

    op = dp.operator(strategy=config.strategy)
    reuse: dict[str, Any] = {}  # measured at θ₀ by the sweep, offered to the metrics
    if "hessian" not in done:
        t0 = time.perf_counter()
        try:
            k = min(config.top_k, space.dim)
            if config.sweep:
                sw = spectrum(
                    op,
                    top_k=k,
                    bottom_k=min(config.bottom_k, space.dim),
                    keep_top=METRICS_TOP_K if config.metrics else 0,
                    tol=config.tol,
                    slq_runs=config.slq_runs,
                    slq_steps=config.slq_steps,
                    trace_tol=config.trace_tol,
                    frobenius_tol=config.frobenius_tol,
                    trace_matvecs=config.trace_matvecs,
                    seed=seed,
                    progress=progress,
                )
                reuse = {"top_eigenpairs": sw.top, "trace": sw.trace, "frobenius": sw.frobenius}
            else:
                sw = separate_spectrum(
                    op,
                    top_k=k,
                    bottom_k=min(config.bottom_k, space.dim),
                    tol=config.tol,
                    slq_runs=config.slq_runs,
                    slq_steps=config.slq_steps,
                    trace_matvecs=config.trace_matvecs,
                    frobenius_probes=config.frobenius_probes,
                    trace_tol=config.trace_tol,
                    seed=seed,
                    progress=progress,
                )
            hess: dict[str, Any] = {"strategy": op.strategy, **sw.summary(top_k=k)}
            arrays = sw.arrays(top_k=k)
            hess["exact"] = False
            if config.exact:
                if space.dim > EXACT_MAX_PARAMS:
                    raise ConfigError(
                        f"--exact needs at most {EXACT_MAX_PARAMS} parameters, the model has"
                        f" {space.dim}; drop --exact."
                    )
                spec = exact_spectrum(space)
                arrays["hessian_exact_spectrum"] = ("param", np.asarray(spec))
                hess["exact"] = True
                hess["exact_top_eigenvalues"] = spec[::-1][:k].tolist()
                hess["exact_bottom_eigenvalues"] = spec[: config.bottom_k].tolist()
                hess["exact_trace"] = float(spec.sum())
                hess["exact_frobenius"] = float(np.sqrt((spec**2).sum()))
            hess["matvecs"] = op.matvecs
            run.write_arrays(xr.Dataset({k2: v for k2, v in arrays.items()}))
            finish("hessian", {"hessian": hess}, t0)
        except NotApplicable as exc:
            skip("hessian", exc, t0)

    if config.per_layer and "per_layer" not in done:
        t0 = time.perf_counter()
        try:
            start = op.matvecs
            rows = per_layer_hessian(
                op,
                layer_groups(space),
                top_k=config.per_layer_top_k,
                trace_matvecs=config.per_layer_trace_matvecs,
                tol=config.tol,
                seed=seed + 5,
                progress=progress,
            )
            section = {
                "per_layer": [r.to_dict() for r in rows],
                "per_layer_matvecs": op.matvecs - start,
            }
            finish("per_layer", {"hessian": section}, t0)
        except NotApplicable as exc:
            skip("per_layer", exc, t0)

    if config.metrics and "metrics" not in done:
        t0 = time.perf_counter()
        try:
            report = compute_metrics(
                space,
                names=list(config.metric_names) or None,
                seed=seed,
                progress=progress,
                precomputed=reuse or None,
            )
            finish("metrics", {"metrics": report.to_dict()}, t0)
        except NotApplicable as exc:
            skip("metrics", exc, t0)

    if config.weights and "weights" not in done:
        import torch

        t0 = time.perf_counter()
        try:
            spectra = weight_spectra(
                bundle.module,
                params=config.params,
                seed=seed,
                dtype=torch.float32 if bundle.device.type == "mps" else torch.float64,
                progress=progress,
            )
            arrays_w = spectra.to_arrays()
            run.write_arrays(
                xr.Dataset(
                    {k2: ("weights_esd_index", v) for k2, v in arrays_w.items()},
                )
            )
            finish("weights", {"weights": spectra.to_dict()}, t0)
        except NotApplicable as exc:
            skip("weights", exc, t0)

    if config.surface and "surface" not in done:
        surface_fn: Callable[..., Any] = quick_surface
        if dp.context.is_distributed:
            surface_fn = functools.partial(sharded_quick_surface, context=dp.context)
        t0 = time.perf_counter()
        try:
            surf = surface_fn(
                space,
                grid=tuple(config.surface_grid),
                span=config.surface_range,
                seed=seed,
                progress=progress,
            )
            run.write_arrays(surf.to_dataset())
            finish("surface", {"surface": surf.to_dict()}, t0)
        except NotApplicable as exc:
            skip("surface", exc, t0)
    op.release()
    return run.summary()
