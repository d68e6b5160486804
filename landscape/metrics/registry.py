"""The metric registry: one :class:`MetricSpec` per name of ``compute_metrics``.

A spec says what a metric computes (``doc``, with its formula), what it uses (``needs``),
when its value is invariant to the function-preserving positive rescalings of ReLU
networks (``invariance``), and how to compute it (``fn``, on a :class:`MetricContext`
that shares the expensive pieces: the Hessian operator, the top eigenpairs, the training
evaluation). The order of :data:`REGISTRY` is the order of every report, of ``--metric``
and of the table in ``docs/metrics.md`` (:func:`markdown_table`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.errors import ConfigError, NotApplicable
from landscape.hessian import exact_spectrum, top_eigenpairs
from landscape.metrics.fisher_rao import fisher_rao_norm
from landscape.metrics.options import MetricOptions
from landscape.metrics.pac_bayes import pac_bayes_sigma
from landscape.metrics.relative_flatness import relative_flatness
from landscape.metrics.sharpness import adaptive_sharpness, average_sharpness, eps_sharpness
from landscape.metrics.spectral import effective_rank, frobenius, trace
from landscape.progress import Progress
from landscape.results import Eigenpairs, Estimate, _json_float


@dataclass(frozen=True)
class Invariance:
    """When a metric's values are invariant to the function-preserving rescalings.

    Attributes:
        text: the rule in words (the docs table's column).
        always: invariant at any point (the value depends on the function only).
        option: an option under which the value is invariant at any point …
        value: … when it equals this value; otherwise invariant only when canonicalized.

    Example:
        >>> rule = Invariance.when("adaptive_eta", 0)
        >>> rule.holds(MetricOptions(), canonicalized=False)
        True
        >>> rule.holds(MetricOptions(adaptive_eta=0.1), canonicalized=False)
        False
    """

    text: str
    always: bool = False
    option: str | None = None
    value: Any = None

    @classmethod
    def when(cls, option: str, value: Any) -> Invariance:
        """Invariant when ``option == value``, else only when canonicalized."""
        return cls(
            f"when {option} = {value!r}; else when canonicalized", option=option, value=value
        )

    def holds(self, options: MetricOptions, canonicalized: bool) -> bool:
        """Whether a value under this rule is invariant with these options at this point."""
        if self.always:
            return True
        if self.option is not None and getattr(options, self.option) == self.value:
            return True
        return canonicalized


ALWAYS = Invariance("always", always=True)
"""Invariant at any point: the value depends on the function only."""

WHEN_CANONICALIZED = Invariance("when canonicalized")
"""Invariant only at the canonical (minimum-norm) point."""


@dataclass(frozen=True)
class MetricResult:
    """What one metric function returns.

    Attributes:
        values: value name → float or :class:`Estimate` (a metric may give several, e.g.
            ``generalization_gap`` also gives ``test_loss``).
        details: entries for ``MetricsReport.details``.
        warnings: caveats for ``MetricsReport.warnings``.
        reused: whether the value was taken from the ``precomputed`` curvature.
    """

    values: Mapping[str, float | Estimate]
    details: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    reused: bool = False


def _unconverged(pairs: Eigenpairs) -> list[str]:
    if pairs.all_converged:
        return []
    return [
        f"{int((~pairs.converged).sum())} of {len(pairs.values)} top"
        " eigenpairs did not reach the tolerance; λmax may be low."
    ]


@dataclass
class MetricContext:
    """What every metric function sees, with the expensive pieces built once and shared.

    Attributes:
        space: the model, data and loss.
        theta: the point the metrics are taken at (canonical when ``canonicalized``).
        seed: seed of every random choice.
        radius: ε of ε-sharpness (and ρ of adaptive sharpness unless given).
        sigma: σ of average sharpness.
        options: the checked options.
        progress: optional progress reporter.
        canonicalized: whether ``theta`` is the canonical point.
        precomputed: curvature measured at ``theta`` that may be reused (``trace``,
            ``frobenius``, ``top_eigenpairs``); empty when it does not apply.
        warnings, details: the report's, for entries shared by several metrics (the top
            eigenvalues).
    """

    space: ParamSpace
    theta: torch.Tensor
    seed: int
    radius: float
    sigma: float
    options: MetricOptions
    progress: Progress | None = None
    canonicalized: bool = False
    precomputed: Mapping[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    _op: CurvatureOperator | None = field(default=None, init=False, repr=False)
    _pairs: Eigenpairs | None = field(default=None, init=False, repr=False)
    _train: tuple[float, float] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        given = self.precomputed.get("top_eigenpairs")
        if given is not None and len(given.values) >= min(self.options.top_k, self.space.dim):
            self._record(given)

    def _record(self, pairs: Eigenpairs) -> None:
        self._pairs = pairs
        self.details["top_eigenvalues"] = [_json_float(v) for v in pairs.values]
        self.warnings.extend(_unconverged(pairs))

    def hessian(self) -> CurvatureOperator:
        """The Hessian operator at ``theta``, built on first use."""
        if self._op is None:
            self._op = CurvatureOperator(self.space, self.theta, strategy=self.options.strategy)
        return self._op

    @property
    def hessian_matvecs(self) -> int:
        """Hessian-vector products spent so far (0 when the operator was never built)."""
        return int(self._op.matvecs) if self._op is not None else 0

    def release(self) -> None:
        """Free the Hessian operator's cached graphs."""
        if self._op is not None:
            self._op.release()

    def train_eval(self) -> tuple[float, float]:
        """The training (loss, accuracy) at ``theta``, evaluated once."""
        if self._train is None:
            self._train = self.space.evaluate(self.theta, "train")
        return self._train

    @property
    def pairs_reused(self) -> bool:
        """Whether the top eigenpairs are the precomputed ones."""
        return self._pairs is not None and self._pairs is self.precomputed.get("top_eigenpairs")

    def top_eigenpairs(self) -> Eigenpairs:
        """The ``top_k`` Hessian eigenpairs: the precomputed ones, else Lanczos once."""
        if self._pairs is None:
            pairs = top_eigenpairs(
                self.hessian(),
                min(self.options.top_k, self.space.dim),
                max_iter=self.options.max_iter,
                tol=self.options.tol,
                seed=self.seed,
                progress=self.progress,
            )
            self._record(pairs)
        assert self._pairs is not None
        return self._pairs

    def reusable(self, name: str) -> Any:
        """The precomputed value of ``name``, or ``None``."""
        return self.precomputed.get(name)


MetricFn = Callable[[MetricContext], MetricResult]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: how to compute it and what its number means.

    Attributes:
        name: the name in ``compute_metrics(names=...)``, ``--metric`` and the report.
        fn: computes it from a :class:`MetricContext`; raises
            :class:`~landscape.errors.NotApplicable` where it does not apply.
        needs: what it uses (shared pieces of the context, parts of the model or data).
        invariance: when its values are invariant to the ReLU rescalings.
        doc: one line: what it is, with its formula.
        reference: where it comes from.
        outputs: every value name it can give (default: ``(name,)``).
    """

    name: str
    fn: MetricFn = field(repr=False)
    needs: tuple[str, ...]
    invariance: Invariance
    doc: str
    reference: str = "—"
    outputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.outputs:
            object.__setattr__(self, "outputs", (self.name,))


# -- the metric functions -----------------------------------------------------------------


def _loss(ctx: MetricContext) -> MetricResult:
    return MetricResult({"loss": ctx.train_eval()[0]})


def _accuracy(ctx: MetricContext) -> MetricResult:
    _, acc = ctx.train_eval()
    if not ctx.space.bundle.loss.classification:
        raise NotApplicable("the loss is not a classification loss")
    return MetricResult({"accuracy": acc})


def _generalization_gap(ctx: MetricContext) -> MetricResult:
    space = ctx.space
    if not space.bundle.data.has_test:
        raise NotApplicable("the data has no test split (give --test-fraction)")
    tl, ta = space.evaluate(ctx.theta, "test")
    values: dict[str, float | Estimate] = {"test_loss": tl}
    if space.bundle.loss.classification:
        values["test_accuracy"] = ta
    values["generalization_gap"] = tl - ctx.train_eval()[0]
    return MetricResult(values)


def _lambda_max(ctx: MetricContext) -> MetricResult:
    reused = ctx.pairs_reused
    return MetricResult({"lambda_max": float(ctx.top_eigenpairs().values[0])}, reused=reused)


def _effective_rank(ctx: MetricContext) -> MetricResult:
    reused = ctx.pairs_reused
    pairs = ctx.top_eigenpairs()
    limit = ctx.options.exact_max_params
    if ctx.space.dim <= limit and not ctx.space.scripted:
        spec = exact_spectrum(ctx.space, ctx.theta, max_params=limit)
        return MetricResult(
            {"effective_rank": effective_rank(spec)},
            {"effective_rank_spectrum": "exact"},
            reused=reused,
        )
    return MetricResult(
        {"effective_rank": effective_rank(pairs.values)},
        {"effective_rank_spectrum": f"top-{len(pairs.values)}"},
        reused=reused,
    )


def _trace(ctx: MetricContext) -> MetricResult:
    known = ctx.reusable("trace")
    if known is not None:
        return MetricResult({"trace": known}, reused=True)
    est = trace(
        ctx.hessian(), num_matvecs=ctx.options.trace_matvecs, seed=ctx.seed, progress=ctx.progress
    )
    return MetricResult({"trace": est})


def _frobenius(ctx: MetricContext) -> MetricResult:
    known = ctx.reusable("frobenius")
    if known is not None:
        return MetricResult({"frobenius": known}, reused=True)
    est = frobenius(
        ctx.hessian(),
        num_probes=ctx.options.frobenius_probes,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    return MetricResult({"frobenius": est})


def _eps_sharpness(ctx: MetricContext) -> MetricResult:
    r = eps_sharpness(
        ctx.space,
        ctx.theta,
        radius=ctx.radius,
        restarts=ctx.options.restarts,
        steps=ctx.options.steps,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    return MetricResult({"eps_sharpness": r.value}, {"eps_sharpness": r.to_dict()})


def _adaptive_sharpness(ctx: MetricContext) -> MetricResult:
    r = adaptive_sharpness(
        ctx.space,
        ctx.theta,
        radius=ctx.options.adaptive_radius or ctx.radius,
        eta=ctx.options.adaptive_eta,
        restarts=ctx.options.restarts,
        steps=ctx.options.steps,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    return MetricResult({"adaptive_sharpness": r.value}, {"adaptive_sharpness": r.to_dict()})


def _average_sharpness(ctx: MetricContext) -> MetricResult:
    est = average_sharpness(
        ctx.space,
        ctx.theta,
        sigma=ctx.sigma,
        num_samples=ctx.options.average_samples,
        scale=ctx.options.average_scale,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    return MetricResult({"average_sharpness": est})


def _pac_bayes_sigma(ctx: MetricContext) -> MetricResult:
    pb = pac_bayes_sigma(
        ctx.space,
        ctx.theta,
        threshold=ctx.options.pac_threshold,
        quantity=ctx.options.pac_quantity,
        num_samples=ctx.options.pac_samples,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    warnings: tuple[str, ...] = ()
    if not pb.bracketed:
        warnings = (
            "PAC-Bayes σ was not bracketed within the evaluation budget; the value"
            " is a bound from one side.",
        )
    return MetricResult(
        {
            "pac_bayes_sigma": Estimate(
                pb.sigma, pb.sigma_stderr, pb.num_samples, f"bisection/{pb.quantity}"
            ),
            "pac_bayes_bound": pb.bound,
        },
        {"pac_bayes": pb.to_dict()},
        warnings,
    )


def _fisher_rao_norm(ctx: MetricContext) -> MetricResult:
    value = fisher_rao_norm(ctx.space, ctx.theta, fisher=ctx.options.fisher)
    return MetricResult({"fisher_rao_norm": value})


def _relative_flatness(ctx: MetricContext) -> MetricResult:
    est = relative_flatness(
        ctx.space,
        ctx.theta,
        layer=ctx.options.layer,
        exact=ctx.options.relative_exact,
        num_matvecs=ctx.options.relative_matvecs,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    return MetricResult({"relative_flatness": est})


# -- the registry -------------------------------------------------------------------------

REGISTRY: tuple[MetricSpec, ...] = (
    MetricSpec(
        "loss",
        _loss,
        ("train_eval",),
        ALWAYS,
        "mean training loss L(θ)",
    ),
    MetricSpec(
        "accuracy",
        _accuracy,
        ("train_eval", "classification loss"),
        ALWAYS,
        "training accuracy at θ",
    ),
    MetricSpec(
        "generalization_gap",
        _generalization_gap,
        ("train_eval", "test split"),
        ALWAYS,
        "L_test(θ) − L_train(θ); also `test_loss`, `test_accuracy`",
        outputs=("test_loss", "test_accuracy", "generalization_gap"),
    ),
    MetricSpec(
        "lambda_max",
        _lambda_max,
        ("top_eigenpairs", "hessian"),
        WHEN_CANONICALIZED,
        "λmax(∇²L(θ)), Lanczos",
        "Keskar et al. 2017",
    ),
    MetricSpec(
        "trace",
        _trace,
        ("hessian",),
        WHEN_CANONICALIZED,
        "tr ∇²L(θ), Hutch++ ± stderr",
        "Meyer et al. 2021 (estimator); Yao et al. 2020",
    ),
    MetricSpec(
        "frobenius",
        _frobenius,
        ("hessian",),
        WHEN_CANONICALIZED,
        "‖∇²L(θ)‖_F = sqrt(E_z‖Hz‖²) ± stderr",
        "Hutchinson 1989",
    ),
    MetricSpec(
        "effective_rank",
        _effective_rank,
        ("top_eigenpairs", "hessian", "dense Hessian when ≤ exact_max_params"),
        WHEN_CANONICALIZED,
        "exp(−Σ p_i log p_i), p_i = λ_i⁺ / Σ_j λ_j⁺ over the positive eigenvalues"
        " (exact spectrum when ≤ exact_max_params parameters, else the top-k)",
        "Roy & Vetterli 2007",
    ),
    MetricSpec(
        "eps_sharpness",
        _eps_sharpness,
        ("gradient ascent on the training loss",),
        WHEN_CANONICALIZED,
        "max_{‖δ‖₂ ≤ ε} L(θ+δ) − L(θ); = ε²λmax/2 for a quadratic at its minimum",
        "Keskar et al. 2017; Foret et al. 2021 (L2 ball)",
    ),
    MetricSpec(
        "adaptive_sharpness",
        _adaptive_sharpness,
        ("gradient ascent on the training loss",),
        Invariance.when("adaptive_eta", 0),
        "max_{‖δ ⊘ (|θ|+η)‖₂ ≤ ρ} L(θ+δ) − L(θ); = ρ²λmax(DHD)/2, D = diag|θ|",
        "Kwon et al. 2021 (ASAM); Andriushchenko et al. 2023",
    ),
    MetricSpec(
        "average_sharpness",
        _average_sharpness,
        ("training loss at noisy points",),
        Invariance.when("average_scale", "element"),
        "E_z[L(θ+σ c⊙z)] − L(θ), z ~ N(0, I); c = 1 (none), |θ| (element) or per-filter"
        " ‖θ_f‖/√n_f (filter); = σ² tr(CHC)/2 for a quadratic",
        "Neyshabur et al. 2017; Andriushchenko et al. 2023",
    ),
    MetricSpec(
        "pac_bayes_sigma",
        _pac_bayes_sigma,
        ("training loss at noisy points",),
        WHEN_CANONICALIZED,
        "σ' = max{σ : E_{u~N(0,σ²I)}[L(θ+u)] − L(θ) ≤ 0.1}; = sqrt(2·0.1 / tr H) for a"
        " quadratic; also `pac_bayes_bound` = ‖θ‖₂²/(4σ'²) + log(m/σ') + 10",
        'Jiang et al. 2019 ("pacbayes.orig")',
        outputs=("pac_bayes_sigma", "pac_bayes_bound"),
    ),
    MetricSpec(
        "fisher_rao_norm",
        _fisher_rao_norm,
        ("torch.func (no TorchScript)",),
        ALWAYS,
        "sqrt(θᵀFθ) = sqrt((1/N) Σ_i ⟨∂ℓ_i/∂f, J_iθ⟩²); = (L+1)·sqrt(E⟨∂ℓ/∂f, f⟩²) for"
        " bias-free ReLU nets with L hidden layers",
        "Liang et al. 2019",
    ),
    MetricSpec(
        "relative_flatness",
        _relative_flatness,
        ("Linear layer", "hessian (that layer's block)"),
        Invariance("when canonicalized (to layer-wise rescalings: always)"),
        "Σ_{s,s'} ⟨w_s, w_s'⟩ Tr(H_{s,s'}) for the rows w_s of the last Linear weight W",
        "Petzka et al. 2021",
    ),
)
"""Every metric, in report order."""

SPECS: Mapping[str, MetricSpec] = {s.name: s for s in REGISTRY}
"""Metric name → its spec."""

METRICS: tuple[str, ...] = tuple(s.name for s in REGISTRY)
"""Names accepted by ``compute_metrics(names=...)`` (and ``--metric``)."""

_PRODUCER: Mapping[str, MetricSpec] = {out: s for s in REGISTRY for out in s.outputs}


def spec_of(value_name: str) -> MetricSpec:
    """The spec of the metric that gives a value (``test_loss`` → ``generalization_gap``).

    Example:
        >>> spec_of("pac_bayes_bound").name
        'pac_bayes_sigma'
    """
    try:
        return _PRODUCER[value_name]
    except KeyError:
        raise ConfigError(
            f"unknown metric value {value_name!r}; use one of {', '.join(_PRODUCER)}."
        ) from None


def is_invariant(value_name: str, options: MetricOptions, canonicalized: bool) -> bool:
    """Whether a reported value is invariant to the ReLU rescalings.

    Example:
        >>> is_invariant("trace", MetricOptions(), canonicalized=False)
        False
        >>> is_invariant("test_loss", MetricOptions(), canonicalized=False)
        True
    """
    return spec_of(value_name).invariance.holds(options, canonicalized)


def check_names(names: Iterable[str] | None) -> list[str]:
    """Validate metric names (``None`` means all), keeping the registry's order.

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
        if n not in SPECS:
            raise ConfigError(f"unknown metric {n!r}; use one of {', '.join(METRICS)}.")
    if not chosen:
        raise ConfigError(f"no metric chosen; use one or more of {', '.join(METRICS)}.")
    return [m for m in METRICS if m in chosen]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(specs: Iterable[MetricSpec] = REGISTRY) -> str:
    """The registry as a markdown table: metric, what, invariance, needs, reference.

    Example:
        >>> print(markdown_table([SPECS["loss"]]))
        | metric | what | invariant to ReLU rescaling | needs | reference |
        |---|---|---|---|---|
        | `loss` | mean training loss L(θ) | always | train_eval | — |
    """
    rows = [
        "| metric | what | invariant to ReLU rescaling | needs | reference |",
        "|---|---|---|---|---|",
    ]
    for s in specs:
        cells = (f"`{s.name}`", s.doc, s.invariance.text, ", ".join(s.needs), s.reference)
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)
