"""``compute_metrics``: every flatness measure of one model in one typed report.

The report states whether the point was canonicalized (the minimum-norm representative
under the positive rescaling symmetry of ReLU networks, see
:mod:`landscape.metrics.canonicalize`) and, for every metric, whether its value is
invariant to those function-preserving rescalings (Dinh et al. 2017).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.errors import ConfigError, NotApplicable
from landscape.hessian import exact_spectrum, top_eigenpairs
from landscape.metrics._util import SCALES, point, positive, positive_int
from landscape.metrics.canonicalize import analyse, function_tolerance
from landscape.metrics.canonicalize import canonicalize as canonicalize_theta
from landscape.metrics.fisher_rao import FISHERS, fisher_rao_norm
from landscape.metrics.pac_bayes import QUANTITIES, pac_bayes_sigma
from landscape.metrics.relative_flatness import relative_flatness
from landscape.metrics.sharpness import adaptive_sharpness, average_sharpness, eps_sharpness
from landscape.metrics.spectral import effective_rank, frobenius, trace
from landscape.progress import Progress, tracked
from landscape.results import Estimate, _json_float

METRICS = (
    "loss",
    "accuracy",
    "generalization_gap",
    "lambda_max",
    "trace",
    "frobenius",
    "effective_rank",
    "eps_sharpness",
    "adaptive_sharpness",
    "average_sharpness",
    "pac_bayes_sigma",
    "fisher_rao_norm",
    "relative_flatness",
)
"""Names accepted by ``compute_metrics(names=...)`` (and ``--metric``)."""

DEFAULT_OPTIONS: dict[str, Any] = {
    "top_k": 10,
    "tol": 1e-6,
    "max_iter": None,
    "exact_max_params": 1000,
    "trace_matvecs": 99,
    "frobenius_probes": 30,
    "restarts": 3,
    "steps": 20,
    "adaptive_radius": None,
    "adaptive_eta": 0.0,
    "average_samples": 50,
    "average_scale": "none",
    "pac_threshold": 0.1,
    "pac_quantity": "loss",
    "pac_samples": 20,
    "fisher": "empirical",
    "layer": None,
    "relative_exact": None,
    "relative_matvecs": 99,
    "strategy": "auto",
}
"""Options of ``compute_metrics(**options)`` with their defaults."""

ALWAYS_INVARIANT = (
    "loss",
    "accuracy",
    "test_loss",
    "test_accuracy",
    "generalization_gap",
    "fisher_rao_norm",
)


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


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown metrics option {unknown[0]!r}; use one of {', '.join(DEFAULT_OPTIONS)}."
        )
    opts = {**DEFAULT_OPTIONS, **options}
    for k in ("top_k", "restarts", "average_samples", "pac_samples"):
        positive_int(k, opts[k], 2 if k in ("average_samples", "pac_samples") else 1)
    positive_int("trace_matvecs", opts["trace_matvecs"], 3)
    positive_int("relative_matvecs", opts["relative_matvecs"], 3)
    positive_int("frobenius_probes", opts["frobenius_probes"], 2)
    positive_int("steps", opts["steps"], 0)
    positive_int("exact_max_params", opts["exact_max_params"], 0)
    positive("tol", opts["tol"])
    positive("pac_threshold", opts["pac_threshold"])
    if opts["adaptive_radius"] is not None:
        positive("adaptive_radius", opts["adaptive_radius"])
    eta = opts["adaptive_eta"]
    if not isinstance(eta, int | float) or eta < 0 or not math.isfinite(eta):
        raise ConfigError(f"adaptive_eta must be a number ≥ 0, got {eta!r}.")
    if opts["average_scale"] not in SCALES:
        raise ConfigError(
            f"unknown average_scale {opts['average_scale']!r}; use one of {', '.join(SCALES)}."
        )
    if opts["pac_quantity"] not in QUANTITIES:
        raise ConfigError(
            f"unknown pac_quantity {opts['pac_quantity']!r}; use one of {', '.join(QUANTITIES)}."
        )
    if opts["fisher"] not in FISHERS:
        raise ConfigError(f"unknown fisher {opts['fisher']!r}; use one of {', '.join(FISHERS)}.")
    return opts


def check_names(names: Iterable[str] | None) -> list[str]:
    """Validate metric names (``None`` means all), keeping the canonical order.

    Example:
        >>> check_names(["trace", "loss"])
        ['loss', 'trace']
    """
    if names is None:
        return list(METRICS)
    if isinstance(names, str):
        names = [names]
    chosen = list(names)
    for n in chosen:
        if n not in METRICS:
            raise ConfigError(f"unknown metric {n!r}; use one of {', '.join(METRICS)}.")
    if not chosen:
        raise ConfigError(f"no metric chosen; use one or more of {', '.join(METRICS)}.")
    return [m for m in METRICS if m in chosen]


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
        **options: see :data:`DEFAULT_OPTIONS`.

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
        >>> from landscape.experiments.models import mlp
        >>> _ = torch.manual_seed(0)
        >>> b = ModelBundle.from_module(mlp(64, 8, 10), load_data("digits", max_samples=64))
        >>> r = compute_metrics(ParamSpace(b), names=["loss", "lambda_max"])
        >>> r.canonicalized, r.invariant["lambda_max"]
        (True, True)
    """
    chosen = check_names(names)
    radius = positive("radius", radius)
    sigma = positive("sigma", sigma)
    opts = _check_options(options)
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

    def invariant(name: str) -> bool:
        if name in ALWAYS_INVARIANT:
            return True
        if name == "adaptive_sharpness" and opts["adaptive_eta"] == 0:
            return True
        if name == "average_sharpness" and opts["average_scale"] == "element":
            return True
        return applied

    op: CurvatureOperator | None = None

    def hessian() -> CurvatureOperator:
        nonlocal op
        if op is None:
            op = CurvatureOperator(space, th, strategy=opts["strategy"])
        return op

    pairs = None
    known: dict[str, Any] = {}
    if precomputed and theta is None and not applied:
        known = dict(precomputed)
        given = known.get("top_eigenpairs")
        if given is not None and len(given.values) >= min(opts["top_k"], space.dim):
            pairs = given
            details["top_eigenvalues"] = [_json_float(v) for v in pairs.values]
            if not pairs.all_converged:
                warnings.append(
                    f"{int((~pairs.converged).sum())} of {len(pairs.values)} top"
                    " eigenpairs did not reach the tolerance; λmax may be low."
                )
    reused: list[str] = []
    cache: dict[str, tuple[float, float]] = {}

    def train_eval() -> tuple[float, float]:
        if "train" not in cache:
            cache["train"] = space.evaluate(th, "train")
        return cache["train"]

    with tracked(progress, "metrics", len(chosen)) as task:
        for name in chosen:
            t0 = time.perf_counter()
            try:
                if name in ("loss", "accuracy"):
                    loss, acc = train_eval()
                    if name == "loss":
                        values["loss"] = loss
                    elif space.bundle.loss.classification:
                        values["accuracy"] = acc
                    else:
                        raise NotApplicable("the loss is not a classification loss")
                elif name == "generalization_gap":
                    if not space.bundle.data.has_test:
                        raise NotApplicable("the data has no test split (give --test-fraction)")
                    else:
                        tl, ta = space.evaluate(th, "test")
                        values["test_loss"] = tl
                        if space.bundle.loss.classification:
                            values["test_accuracy"] = ta
                        values["generalization_gap"] = tl - train_eval()[0]
                elif name in ("lambda_max", "effective_rank"):
                    if pairs is not None and pairs is known.get("top_eigenpairs"):
                        reused.append(name)
                    if pairs is None:
                        k = min(opts["top_k"], space.dim)
                        pairs = top_eigenpairs(
                            hessian(),
                            k,
                            max_iter=opts["max_iter"],
                            tol=opts["tol"],
                            seed=seed,
                            progress=progress,
                        )
                        details["top_eigenvalues"] = [_json_float(v) for v in pairs.values]
                        if not pairs.all_converged:
                            warnings.append(
                                f"{int((~pairs.converged).sum())} of {len(pairs.values)} top"
                                " eigenpairs did not reach the tolerance; λmax may be low."
                            )
                    if name == "lambda_max":
                        values["lambda_max"] = float(pairs.values[0])
                    else:
                        if space.dim <= opts["exact_max_params"] and not space.scripted:
                            spec = exact_spectrum(space, th, max_params=opts["exact_max_params"])
                            values["effective_rank"] = effective_rank(spec)
                            details["effective_rank_spectrum"] = "exact"
                        else:
                            values["effective_rank"] = effective_rank(pairs.values)
                            details["effective_rank_spectrum"] = f"top-{len(pairs.values)}"
                elif name in ("trace", "frobenius") and known.get(name) is not None:
                    values[name] = known[name]
                    reused.append(name)
                elif name == "trace":
                    values["trace"] = trace(
                        hessian(), num_matvecs=opts["trace_matvecs"], seed=seed, progress=progress
                    )
                elif name == "frobenius":
                    values["frobenius"] = frobenius(
                        hessian(), num_probes=opts["frobenius_probes"], seed=seed, progress=progress
                    )
                elif name == "eps_sharpness":
                    r = eps_sharpness(
                        space,
                        th,
                        radius=radius,
                        restarts=opts["restarts"],
                        steps=opts["steps"],
                        seed=seed,
                        progress=progress,
                    )
                    values["eps_sharpness"] = r.value
                    details["eps_sharpness"] = r.to_dict()
                elif name == "adaptive_sharpness":
                    rho = opts["adaptive_radius"] or radius
                    r = adaptive_sharpness(
                        space,
                        th,
                        radius=rho,
                        eta=opts["adaptive_eta"],
                        restarts=opts["restarts"],
                        steps=opts["steps"],
                        seed=seed,
                        progress=progress,
                    )
                    values["adaptive_sharpness"] = r.value
                    details["adaptive_sharpness"] = r.to_dict()
                elif name == "average_sharpness":
                    values["average_sharpness"] = average_sharpness(
                        space,
                        th,
                        sigma=sigma,
                        num_samples=opts["average_samples"],
                        scale=opts["average_scale"],
                        seed=seed,
                        progress=progress,
                    )
                elif name == "pac_bayes_sigma":
                    pb = pac_bayes_sigma(
                        space,
                        th,
                        threshold=opts["pac_threshold"],
                        quantity=opts["pac_quantity"],
                        num_samples=opts["pac_samples"],
                        seed=seed,
                        progress=progress,
                    )
                    values["pac_bayes_sigma"] = Estimate(
                        pb.sigma, pb.sigma_stderr, pb.num_samples, f"bisection/{pb.quantity}"
                    )
                    values["pac_bayes_bound"] = pb.bound
                    details["pac_bayes"] = pb.to_dict()
                    if not pb.bracketed:
                        warnings.append(
                            "PAC-Bayes σ was not bracketed within the evaluation budget; the value"
                            " is a bound from one side."
                        )
                elif name == "fisher_rao_norm":
                    values["fisher_rao_norm"] = fisher_rao_norm(space, th, fisher=opts["fisher"])
                elif name == "relative_flatness":
                    values["relative_flatness"] = relative_flatness(
                        space,
                        th,
                        layer=opts["layer"],
                        exact=opts["relative_exact"],
                        num_matvecs=opts["relative_matvecs"],
                        seed=seed,
                        progress=progress,
                    )
            except NotApplicable as exc:
                skipped[name] = str(exc)
            timing[name] = time.perf_counter() - t0
            task.advance()
    if reused:
        details["reused"] = reused
    details["hessian_matvecs"] = int(op.matvecs) if op is not None else 0
    if op is not None:
        op.release()
    settings = {
        "radius": radius,
        "adaptive_radius": opts["adaptive_radius"] or radius,
        "sigma": sigma,
        "seed": seed,
        "names": chosen,
        **{k: v for k, v in opts.items() if k != "adaptive_radius"},
    }
    return MetricsReport(
        values=values,
        canonicalized=applied,
        invariant={k: invariant(k) for k in values},
        warnings=tuple(warnings),
        skipped=skipped,
        settings=settings,
        details=details,
        timing=timing,
    )
