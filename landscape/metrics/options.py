"""``MetricOptions``: the typed, validated options of :func:`~landscape.metrics.compute_metrics`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from landscape.errors import ConfigError
from landscape.metrics._util import SCALES, positive, positive_int
from landscape.metrics.fisher_rao import FISHERS
from landscape.metrics.pac_bayes import QUANTITIES


@dataclass(frozen=True)
class MetricOptions:
    """Options of the metrics (the ``**options`` of ``compute_metrics``), checked on creation.

    Attributes:
        top_k: Lanczos eigenpairs for λmax and the top-k effective rank (≥ 1).
        tol: Lanczos residual tolerance (> 0).
        max_iter: Lanczos iteration cap (default: the solver's).
        exact_max_params: largest model whose effective rank uses the dense spectrum (≥ 0).
        trace_matvecs: Hutch++ budget of the trace (≥ 3).
        frobenius_probes: probes of the Frobenius norm (≥ 2).
        restarts: ascent restarts of ε- and adaptive sharpness (≥ 1).
        steps: ascent steps per restart (≥ 0).
        adaptive_radius: ρ of adaptive sharpness (default: the ``radius``).
        adaptive_eta: η of adaptive sharpness (≥ 0).
        average_samples: noise samples of average sharpness (≥ 2).
        average_scale: noise scaling of average sharpness: ``none``, ``filter`` or ``element``.
        pac_threshold: the PAC-Bayes deviation threshold (> 0).
        pac_quantity: what the PAC-Bayes deviation measures: ``loss`` or ``error``.
        pac_samples: noise samples per PAC-Bayes σ (≥ 2).
        fisher: Fisher of the Fisher-Rao norm: ``empirical`` or ``model``.
        layer: the 2-D weight of relative flatness (default: the last Linear layer).
        relative_exact: force (True) or forbid (False) the exact relative flatness.
        relative_matvecs: Hutch++ budget of relative flatness (≥ 3).
        strategy: HVP strategy of the Hessian operator (``auto``, …).

    Raises:
        ConfigError: a value out of range, as one line naming the option.

    Example:
        >>> MetricOptions(top_k=3).top_k
        3
        >>> MetricOptions(top_k=0)
        Traceback (most recent call last):
        ...
        landscape.errors.ConfigError: top_k must be an integer ≥ 1, got 0.
    """

    top_k: int = 10
    tol: float = 1e-6
    max_iter: int | None = None
    exact_max_params: int = 1000
    trace_matvecs: int = 99
    frobenius_probes: int = 30
    restarts: int = 3
    steps: int = 20
    adaptive_radius: float | None = None
    adaptive_eta: float = 0.0
    average_samples: int = 50
    average_scale: str = "none"
    pac_threshold: float = 0.1
    pac_quantity: str = "loss"
    pac_samples: int = 20
    fisher: str = "empirical"
    layer: str | None = None
    relative_exact: bool | None = None
    relative_matvecs: int = 99
    strategy: str = "auto"

    def __post_init__(self) -> None:
        for k in ("top_k", "restarts", "average_samples", "pac_samples"):
            positive_int(k, getattr(self, k), 2 if k in ("average_samples", "pac_samples") else 1)
        positive_int("trace_matvecs", self.trace_matvecs, 3)
        positive_int("relative_matvecs", self.relative_matvecs, 3)
        positive_int("frobenius_probes", self.frobenius_probes, 2)
        positive_int("steps", self.steps, 0)
        positive_int("exact_max_params", self.exact_max_params, 0)
        positive("tol", self.tol)
        positive("pac_threshold", self.pac_threshold)
        if self.adaptive_radius is not None:
            positive("adaptive_radius", self.adaptive_radius)
        eta = self.adaptive_eta
        if not isinstance(eta, int | float) or eta < 0 or not math.isfinite(eta):
            raise ConfigError(f"adaptive_eta must be a number ≥ 0, got {eta!r}.")
        if self.average_scale not in SCALES:
            raise ConfigError(
                f"unknown average_scale {self.average_scale!r}; use one of {', '.join(SCALES)}."
            )
        if self.pac_quantity not in QUANTITIES:
            raise ConfigError(
                f"unknown pac_quantity {self.pac_quantity!r}; use one of {', '.join(QUANTITIES)}."
            )
        if self.fisher not in FISHERS:
            raise ConfigError(f"unknown fisher {self.fisher!r}; use one of {', '.join(FISHERS)}.")

    @classmethod
    def from_kwargs(cls, options: Mapping[str, Any]) -> MetricOptions:
        """Build from keyword options, rejecting unknown names with a one-line error.

        Example:
            >>> MetricOptions.from_kwargs({"colour": 1})
            Traceback (most recent call last):
            ...
            landscape.errors.ConfigError: unknown metrics option 'colour'; use one of top_k, tol, max_iter, exact_max_params, trace_matvecs, frobenius_probes, restarts, steps, adaptive_radius, adaptive_eta, average_samples, average_scale, pac_threshold, pac_quantity, pac_samples, fisher, layer, relative_exact, relative_matvecs, strategy.
        """
        names = option_names()
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown metrics option {unknown[0]!r}; use one of {', '.join(names)}."
            )
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        """The options by name, in declaration order (values as given)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def option_names() -> tuple[str, ...]:
    """Names of the metrics options, in declaration order.

    Example:
        >>> option_names()[:3]
        ('top_k', 'tol', 'max_iter')
    """
    return tuple(f.name for f in fields(MetricOptions))


DEFAULT_OPTIONS: dict[str, Any] = MetricOptions().to_dict()
"""Options of ``compute_metrics(**options)`` with their defaults."""
