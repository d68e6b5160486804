"""Choose the SGLD step ε and the localization γ of the LLC by a short pilot sweep.

Two stages of short pilot runs (each a full :func:`~landscape.basins.llc.estimate_llc` with
fewer draws, so every pilot carries the same diagnostics):

1. **Step size**, at the base γ, from the largest ε down: keep the first ε whose pilot chains
   are all kept (none diverged, non-finite or drifting) and whose MALA acceptance is at
   least ``target_acceptance``.
2. **Localization**, at that ε, from the largest γ down: keep lowering γ while the pilot
   chains stay localized (all kept, ``‖w − w*‖²`` without a trend, acceptance still on
   target); the smallest such γ is chosen. A lower γ lowers ``h_γ = γ/(nβ)``, so less of the
   curvature is held by the localization (λ̂ rises towards its γ → 0 value); a γ too low
   for the chain length lets directions the loss does not hold diffuse, which the trend of
   ``‖w − w*‖²`` shows.

3. **Bias cap**: the acceptance alone is not enough in low dimension (with d = 21 an
   acceptance of 0.97 went with λ̂ 50% too high, all of it step and minibatch bias), so ε
   is lowered to the largest grid value whose predicted step/minibatch bias
   (:func:`~landscape.basins.llc.step_bias`, proportional to ε) is at most ``bias_tol`` of
   the λ̂ at the chosen γ; one confirming pilot runs there, raising γ while its chains do
   not stay localized (a smaller step relaxes more slowly).

The table of every pilot (ε, γ, λ̂, acceptance, R̂, ESS, γ-sensitivity, step bias, dropped
chains, localized) is returned with the choice.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from landscape.basins.llc import (
    LLCConfig,
    LLCResult,
    _estimate,
    _noise_traces,
    spreading,
)
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.progress import Progress
from landscape.results import _json_float


@dataclass(frozen=True)
class PilotRow:
    """One pilot run of the sweep."""

    stage: str
    step_size: float
    localization: float
    llc: float
    mala_acceptance: float
    r_hat: float
    ess: float
    gamma_sensitivity: float
    step_bias: float
    dropped_chains: int
    localized: bool
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            k: (_json_float(v) if isinstance(v, float) else v)
            for k, v in dataclasses.asdict(self).items()
        }


@dataclass(frozen=True)
class TuningReport:
    """The sweep behind a tuned LLC configuration.

    Attributes:
        rows: every pilot, in the order run.
        step_size: the chosen ε.
        localization: the chosen γ.
        step_ok: some ε met the acceptance and bias targets (else the smallest was kept).
        localization_ok: some γ kept the chains localized (else the largest was kept).
        pilot_draws: recorded draws per pilot chain.
        target_acceptance: the MALA acceptance required.
        bias_tol: the largest predicted step bias allowed, relative to λ̂.
    """

    rows: tuple[PilotRow, ...]
    step_size: float
    localization: float
    step_ok: bool
    localization_ok: bool
    pilot_draws: int
    target_acceptance: float
    bias_tol: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready table and choice."""
        return {
            "rows": [r.to_dict() for r in self.rows],
            "step_size": _json_float(self.step_size),
            "localization": _json_float(self.localization),
            "step_ok": bool(self.step_ok),
            "localization_ok": bool(self.localization_ok),
            "pilot_draws": int(self.pilot_draws),
            "target_acceptance": _json_float(self.target_acceptance),
            "bias_tol": _json_float(self.bias_tol),
        }


def _row(stage: str, r: LLCResult, localized: bool, passed: bool) -> PilotRow:
    return PilotRow(
        stage,
        float(r.config.step_size),
        float(r.config.localization),
        float(r.llc.mean),
        float(r.mala_acceptance),
        float(r.r_hat),
        float(r.ess),
        float(r.gamma_sensitivity.mean),
        float(r.step_bias),
        r.dropped_chains,
        localized,
        passed,
    )


def tune_llc(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    base_config: LLCConfig | None = None,
    *,
    step_sizes: Sequence[float] | None = None,
    localizations: Sequence[float] | None = None,
    pilot_draws: int | None = None,
    target_acceptance: float = 0.9,
    bias_tol: float = 0.05,
    hessian_eigenvalues: np.ndarray | None = None,
    progress: Progress | None = None,
) -> tuple[LLCConfig, TuningReport]:
    """Pick ε (largest on target) and γ (smallest that stays localized) by pilot runs.

    Args:
        space: the parameter space.
        theta: the minimum w* (default ``space.theta0``).
        base_config: everything but ε and γ (chains, burn-in, batch, seed, ...); its γ is
            where the step sweep runs (default :class:`LLCConfig`).
        step_sizes: candidate ε (default: the base ε times 10^(k/2), k = 4 … −2).
        localizations: candidate γ (default: the base γ times 10^(−k/2), k = 0 … 6).
        pilot_draws: recorded draws per pilot chain (default ``max(100, draws // 4)``;
            the burn-in is the base one, so pilots see the relaxation the final run sees).
        target_acceptance: least MALA acceptance of a usable ε.
        bias_tol: largest predicted step/minibatch bias of a usable ε, relative to λ̂.
        hessian_eigenvalues: passed on to the pilots (for their notes).
        progress: progress reporter.

    Returns:
        The tuned configuration (``auto`` off) and the sweep report.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> base = LLCConfig(chains=2, draws=40, burn_in=20)
        >>> cfg, rep = tune_llc(sp, base_config=base, step_sizes=[1e-3, 1e-4],
        ...                     localizations=[10.0, 1.0])
        >>> len(rep.rows) >= 2 and cfg.auto is False
        True
    """
    base = dataclasses.replace(base_config or LLCConfig(), auto=False)
    base.validate()
    if not 0.0 < target_acceptance <= 1.0 or bias_tol <= 0:
        raise ConfigError("target_acceptance must lie in (0, 1] and bias_tol be positive.")
    eps_grid = sorted(
        step_sizes
        if step_sizes is not None
        else [base.step_size * 10 ** (k / 2) for k in range(4, -3, -1)],
        reverse=True,
    )
    gam_grid = sorted(
        localizations
        if localizations is not None
        else [base.localization * 10 ** (-k / 2) for k in range(0, 7)],
        reverse=True,
    )
    if not eps_grid or not gam_grid or min(eps_grid) <= 0 or min(gam_grid) < 0:
        raise ConfigError("give positive step_sizes and non-negative localizations to tune.")
    draws = pilot_draws if pilot_draws is not None else max(100, base.draws // 4)
    pilot = dataclasses.replace(base, draws=draws, mala_every=max(1, base.mala_every))
    w_star = (space.theta0 if theta is None else theta).detach()
    noise = _noise_traces(space, w_star, base.batch_size, base.seed)
    rows: list[PilotRow] = []

    def run(eps: float, gam: float) -> LLCResult:
        cfg = dataclasses.replace(pilot, step_size=eps, localization=gam)
        return _estimate(space, w_star, cfg, hessian_eigenvalues, progress, noise=noise)

    def usable_step(r: LLCResult) -> bool:
        acc_ok = math.isfinite(r.mala_acceptance) and r.mala_acceptance >= target_acceptance
        return r.dropped_chains == 0 and acc_ok

    def localized(r: LLCResult) -> bool:
        return r.dropped_chains == 0 and not spreading(r.distance_drift, base.drift_tol)

    gamma0 = base.localization
    chosen_eps = eps_grid[-1]
    step_ok = False
    for eps in eps_grid:
        r = run(eps, gamma0)
        ok = usable_step(r)
        rows.append(_row("step", r, localized(r), ok))
        if ok:
            chosen_eps, step_ok = eps, True
            break
    chosen_gamma: float | None = None
    for gam in gam_grid:
        if step_ok and gam == gamma0:
            # already run in the step stage at this ε
            loc, ok = rows[-1].localized, rows[-1].localized
        else:
            r = run(chosen_eps, gam)
            acc_ok = math.isfinite(r.mala_acceptance) and r.mala_acceptance >= target_acceptance
            loc = localized(r)
            ok = loc and acc_ok
            rows.append(_row("localization", r, loc, ok))
        if ok:
            chosen_gamma = gam
        elif chosen_gamma is not None:
            break  # lower γ only diffuses further
    gamma_ok = chosen_gamma is not None
    if chosen_gamma is None:
        chosen_gamma = gam_grid[0]
    # 3. cap ε by the predicted step/minibatch bias at the λ̂ of the chosen γ (the bound is
    #    proportional to ε), then confirm, raising γ while the chains do not stay localized
    last = [r for r in rows if r.localization == chosen_gamma and r.step_size == chosen_eps]
    lam = last[-1].llc if last else float("nan")
    per_eps = rows[-1].step_bias / rows[-1].step_size
    if step_ok and gamma_ok and math.isfinite(lam) and lam > 0 and math.isfinite(per_eps):
        limit = bias_tol * lam / per_eps if per_eps > 0 else math.inf
        if chosen_eps > limit:
            smaller = [e for e in eps_grid if e <= limit]
            chosen_eps = smaller[0] if smaller else eps_grid[-1]
            for gam in sorted(g for g in gam_grid if g >= chosen_gamma):
                r = run(chosen_eps, gam)
                loc = localized(r)
                rows.append(_row("bias-capped step", r, loc, loc))
                chosen_gamma = gam
                if loc:
                    break
            else:
                gamma_ok = False
    cfg = dataclasses.replace(base, step_size=chosen_eps, localization=chosen_gamma)
    report = TuningReport(
        tuple(rows), chosen_eps, chosen_gamma, step_ok, gamma_ok, draws, target_acceptance, bias_tol
    )
    return cfg, report
