"""``compute_metrics``: every flatness measure of one model in one typed report.

The report states whether the point was canonicalized (the minimum-norm representative
under the positive rescaling symmetry of ReLU networks, see
:mod:`landscape.metrics.canonicalize`) and, for every metric, whether its value is
invariant to those function-preserving rescalings (Dinh et al. 2017).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from landscape.engine import ParamSpace
from landscape.errors import ConfigError, NotApplicable
from landscape.metrics._util import point, positive
from landscape.metrics.canonicalize import analyse, function_tolerance
from landscape.metrics.canonicalize import canonicalize as canonicalize_theta
from landscape.metrics.options import DEFAULT_OPTIONS, MetricOptions
from landscape.metrics.registry import METRICS, SPECS, MetricContext, check_names, is_invariant
from landscape.progress import Progress, tracked
from landscape.results import Estimate, _json_float

__all__ = ["DEFAULT_OPTIONS", "METRICS", "MetricsReport", "check_names", "compute_metrics"]


@dataclass(frozen=True)
class MetricsReport:
    """Flatness and sharpness of one model, with what the numbers can be trusted for.

    Attributes:
        values: metric name → float, or :class:`Estimate` for stochastic estimates.
        canonicalized: whether the metrics were computed at the canonical point.
        invariant: metric name → whether the value is invariant to the function-preserving
            positive rescalings of ReLU networks.
        warnings: human-readable caveats (not analysable, unconverged, …).
        skipped: metric name → why it does not apply to this model (no Linear layer,
            TorchScript without torch.func, no test split, …); those metrics have no value.
        settings: radius, σ and the options used.
        details: richer per-metric results (ascent restarts, PAC-Bayes search, the
            canonicalization record).
        timing: seconds per metric.
    """

    values: Mapping[str, float | Estimate]
    canonicalized: bool
    invariant: Mapping[str, bool]
    warnings: tuple[str, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    timing: Mapping[str, float] = field(default_factory=dict)

    def value(self, name: str) -> float:
        """The point value of a metric (the mean of an :class:`Estimate`)."""
        v = self.values[name]
        return v.mean if isinstance(v, Estimate) else float(v)

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics`` section of ``summary.json``.

        Example:
            >>> MetricsReport({"loss": 0.5}, False, {"loss": True}).to_dict()["loss"]
            0.5
        """
        out: dict[str, Any] = {}
        for k, v in self.values.items():
            out[k] = v.to_dict() if isinstance(v, Estimate) else _json_float(v)
        out["canonicalized"] = bool(self.canonicalized)
        out["invariant"] = {k: bool(v) for k, v in self.invariant.items()}
        out["warnings"] = list(self.warnings)
        out["skipped"] = {k: str(v) for k, v in self.skipped.items()}
        out["settings"] = dict(self.settings)
        out["details"] = dict(self.details)
        out["timing"] = {k: round(float(v), 4) for k, v in self.timing.items()}
        return out


def compute_metrics(
    space: ParamSpace,
    *,
    names: Iterable[str] | None = None,
    seed: int = 0,
    canonicalize: bool | None = None,
    radius: float = 0.05,
    sigma: float = 0.01,
    theta: torch.Tensor | None = None,
    progress: Progress | None = None,
    precomputed: Mapping[str, Any] | None = None,
    **options: Any,
) -> MetricsReport:
    """Compute flatness and sharpness metrics of a model, stating their invariance.

    Args:
        space: the model, data and loss.
        names: metrics to compute (see :data:`METRICS`); default all that apply.
        seed: seed of every random choice (probes, restarts, noise).
        canonicalize: ``None`` — canonicalize when the architecture is analysable, else
            warn; ``True`` — canonicalize or raise :class:`ConfigError`; ``False`` — never.
        radius: ε of ``eps_sharpness`` (and ρ of ``adaptive_sharpness`` unless the
            ``adaptive_radius`` option is given).
        sigma: σ of ``average_sharpness``.
        theta: the point (default the model's parameters).
        progress: optional progress reporter.
        precomputed: curvature already measured at the model's parameters with the same
            data and loss, to reuse instead of recomputing: ``top_eigenpairs``
            (:class:`~landscape.results.Eigenpairs`, for λmax and the effective rank when
            it holds at least ``top_k`` pairs), ``trace`` and ``frobenius``
            (:class:`~landscape.results.Estimate`). Used only when the metrics are taken
            at those parameters (no ``theta``, no canonicalization applied); the names
            reused are listed in ``details["reused"]``.
        **options: the fields of :class:`~landscape.metrics.options.MetricOptions`
            (defaults in :data:`DEFAULT_OPTIONS`).

    Returns:
        A :class:`MetricsReport`. A metric that does not apply to this model (it raises
        :class:`~landscape.errors.NotApplicable`: no Linear layer for relative flatness,
        TorchScript for the Fisher-Rao norm, no test split for the gap, …) has no value and
        its reason in ``report.skipped``; every other metric is still computed.

    Raises:
        ConfigError: unknown metric or option, radius ≤ 0, sigma ≤ 0, or
            ``canonicalize=True`` on a model that cannot be canonicalized.

    Example:
        >>> from landscape.io import ModelBundle, load_data
        >>> from landscape.models import mlp
        >>> _ = torch.manual_seed(0)
        >>> b = ModelBundle.from_module(mlp(64, 8, 10), load_data("digits", max_samples=64))
        >>> r = compute_metrics(ParamSpace(b), names=["loss", "lambda_max"])
        >>> r.canonicalized, r.invariant["lambda_max"]
        (True, True)
    """
    chosen = check_names(names)
    radius = positive("radius", radius)
    sigma = positive("sigma", sigma)
    opts = MetricOptions.from_kwargs(options)
    if canonicalize not in (None, True, False):
        raise ConfigError(f"canonicalize must be true, false or unset, got {canonicalize!r}.")
    th0 = point(space, theta)
    warnings: list[str] = []
    details: dict[str, Any] = {}
    timing: dict[str, float] = {}
    values: dict[str, float | Estimate] = {}
    skipped: dict[str, str] = {}

    # -- canonical point ---------------------------------------------------------
    th = th0
    applied = False
    if canonicalize is not False:
        t0 = time.perf_counter()
        links, _, reason = analyse(space)
        if links is None:
            if canonicalize:
                canonicalize_theta(space, th0)  # raises the one-line ConfigError
            warnings.append(
                f"not canonicalized ({reason}): λmax, trace, Frobenius, ε-sharpness and the"
                " other Hessian-based values depend on the parameterization."
            )
        else:
            th_c, info = canonicalize_theta(space, th0)
            details["canonicalization"] = info.to_dict()
            if info.function_error > function_tolerance(space.dtype):
                change = f"canonicalization changed the outputs by {info.function_error:.2e}"
                if canonicalize:
                    raise ConfigError(f"{change} (relative); use --no-canonicalize.")
                warnings.append(f"{change} (relative); computed at the original parameters.")
            else:
                th, applied = th_c, True
                if info.dead_units:
                    warnings.append(
                        f"{info.dead_units} dead hidden unit(s) left unscaled; values may"
                        " still depend on their (function-irrelevant) scale."
                    )
        timing["canonicalize"] = time.perf_counter() - t0

    ctx = MetricContext(
        space,
        th,
        seed,
        radius,
        sigma,
        opts,
        progress=progress,
        canonicalized=applied,
        precomputed=dict(precomputed) if precomputed and theta is None and not applied else {},
        warnings=warnings,
        details=details,
    )
    reused: list[str] = []
    with tracked(progress, "metrics", len(chosen)) as task:
        for name in chosen:
            t0 = time.perf_counter()
            try:
                result = SPECS[name].fn(ctx)
            except NotApplicable as exc:
                skipped[name] = str(exc)
            else:
                values.update(result.values)
                details.update(result.details)
                warnings.extend(result.warnings)
                if result.reused:
                    reused.append(name)
            timing[name] = time.perf_counter() - t0
            task.advance()
    if reused:
        details["reused"] = reused
    details["hessian_matvecs"] = ctx.hessian_matvecs
    ctx.release()
    settings = {
        "radius": radius,
        "adaptive_radius": opts.adaptive_radius or radius,
        "sigma": sigma,
        "seed": seed,
        "names": chosen,
        **{k: v for k, v in opts.to_dict().items() if k != "adaptive_radius"},
    }
    return MetricsReport(
        values=values,
        canonicalized=applied,
        invariant={k: is_invariant(k, opts, applied) for k in values},
        warnings=tuple(warnings),
        skipped=skipped,
        settings=settings,
        details=details,
        timing=timing,
    )
