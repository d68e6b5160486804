"""Local learning coefficient by stochastic-gradient Langevin dynamics (Lau et al. 2023).

The local learning coefficient λ(w*) measures the degeneracy of a minimum: a regular
minimum of a ``d``-parameter model has λ = d/2; degenerate (singular) minima have less.
Following Lau et al., *Quantifying degeneracy in singular models via the learning
coefficient* (2023), we sample the localized tempered posterior

    p(w) ∝ exp(−U(w)),   U(w) = nβ L_n(w) + γ/2 ‖w − w*‖²,   β = β* = 1/log n,

with minibatch SGLD, ``w ← w − ε/2 · ∇U_m(w) + N(0, ε I)`` (``U_m`` with the minibatch mean
``L_m`` in place of ``L_n``), and estimate ``λ̂ = nβ (E_w[L_n(w)] − L_n(w*))``, with
``E_w[L_n(w)]`` the mean over draws of the minibatch loss at the draw (an unbiased estimate of
``L_n`` there).

**What the localization does.** On a quadratic ``L_n = L* + ½ Σ h_i u_i²`` the sampler's
target gives exactly ``λ̂ = ½ Σ_i h_i/(h_i + h_γ)`` with the *localization scale*
``h_γ = γ/(nβ)``: directions with curvature well above ``h_γ`` count ½, those well below it
are held by the localization, not the likelihood, and count 0. So λ̂ approaches λ only when
``h_γ`` sits below the curvature that matters. (At n = 256, β = 1/log n and γ = 10,
``h_γ ≈ 0.22``, above much of the spectrum of a small cross-entropy network.) Two
diagnostics measure this without the spectrum: the *γ-sensitivity*
``S = −dλ̂/d log γ = (γ/2) Cov(nβ L_n(w), ‖w − w*‖²)`` (exact for the sampled density; on the
quadratic it is ``½ Σ h_i h_γ/(h_i + h_γ)²``, the number of directions near ``h_γ``), and,
when Hessian eigenvalues are given, the fraction of directions with curvature below ``h_γ``.

**Other diagnostics.** The MALA acceptance probability of the SGLD proposals (the
Metropolis–Hastings ratio of the Langevin step, with ``U_m`` and ``∇U_m`` of the *same*
minibatch at both ends, so it measures the discretization error of the step ε, not the
minibatch noise; Metropolis-adjusted Langevin would accept that often); split-R̂ and bulk ESS
of the per-draw ``nβ(L_m − L*)`` across chains (:mod:`landscape.basins.mcmc_diagnostics`);
per-chain drift of the loss and of ``‖w − w*‖²``; ``‖∇L_n(w*)‖``. Chains that diverge, go
non-finite or whose loss drifts are dropped from the mean. The result states in
``notes``/``trustworthy`` whether the run meets the conditions under which the calibration
tests found λ̂ right (see :func:`estimate_llc`).

The temperature only means something when ``L_n`` is the mean per-sample *negative
log-likelihood*; :func:`nll_scale` says how the bundle's loss is turned into one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.func import functional_call, vmap

from landscape.basins.mcmc_diagnostics import bulk_ess, ess, split_rhat
from landscape.engine.attention import math_attention
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.progress import Progress, tracked
from landscape.results import Estimate, _json_float

if TYPE_CHECKING:
    from landscape.basins.llc_tuning import TuningReport

# Conditions under which the calibration tests (tests/basins/test_basins_llc*.py) found λ̂
# within ~15% of the exact λ; a run outside them is reported as not trustworthy.
TRUST_RHAT = 1.1  # split-R̂ of nβ(L − L*) across the kept chains
TRUST_ESS = 100.0  # bulk ESS of nβ(L − L*) over the kept chains
TRUST_ACCEPTANCE = 0.8  # MALA acceptance probability of the SGLD step
TRUST_SENSITIVITY = 0.1  # −d log λ̂ / d log γ: above it, the localization decides λ̂
TRUST_BELOW = 0.05  # fraction of Hessian directions with curvature below h_γ
TRUST_GRAD_BIAS = 0.05  # bound on the gradient's effect on λ̂, relative to λ̂
TRUST_STEP_BIAS = 0.05  # predicted step + minibatch excess of λ̂, relative to λ̂


@dataclass(frozen=True)
class LLCConfig:
    """SGLD settings for the local learning coefficient.

    The defaults were fixed once and are the ones the deep-linear calibration test runs
    (MSE, n = 2000). At small n they put ``h_γ = γ log n / n`` high (0.22 at n = 256):
    tune them with :func:`~landscape.basins.llc_tuning.tune_llc` or ``auto=True``.

    Attributes:
        step_size: SGLD step ε.
        localization: γ, strength of the pull back to w*.
        chains: independent chains (the standard error is taken across them).
        draws: recorded draws per chain (after burn-in).
        burn_in: discarded steps per chain.
        batch_size: minibatch size m (samples drawn with replacement).
        sigma: Gaussian noise scale σ defining the NLL of MSE losses.
        beta: inverse temperature (default ``1/log n``).
        drift_tol: relative drift between the two quarters of the second half of the
            draws above which a chain is flagged (and dropped from the mean).
        seed: seed of minibatches and noise.
        mala_every: compute the MALA acceptance of every ``mala_every``-th recorded step
            (one extra forward/backward pass each); 0 turns it off.
        auto: choose ε and γ by a short pilot sweep first
            (:func:`~landscape.basins.llc_tuning.tune_llc` with its defaults).
    """

    step_size: float = 1e-4
    localization: float = 10.0
    chains: int = 4
    draws: int = 2000
    burn_in: int = 500
    batch_size: int = 512
    sigma: float = 1.0
    beta: float | None = None
    drift_tol: float = 0.25
    seed: int = 0
    mala_every: int = 5
    auto: bool = False

    def validate(self) -> None:
        """Raise :class:`ConfigError` on settings that cannot run."""
        if self.step_size <= 0 or not math.isfinite(self.step_size):
            raise ConfigError(f"llc step_size must be positive, got {self.step_size}.")
        if self.localization < 0 or not math.isfinite(self.localization):
            raise ConfigError(f"llc localization must be ≥ 0, got {self.localization}.")
        if self.chains < 1 or self.draws < 4 or self.burn_in < 0 or self.batch_size < 1:
            raise ConfigError(
                "llc needs chains ≥ 1, draws ≥ 4, burn_in ≥ 0 and batch_size ≥ 1; fix the config."
            )
        if self.sigma <= 0:
            raise ConfigError(f"llc sigma must be positive, got {self.sigma}.")
        if self.beta is not None and self.beta <= 0:
            raise ConfigError(f"llc beta must be positive, got {self.beta}.")
        if self.mala_every < 0:
            raise ConfigError(f"llc mala_every must be ≥ 0 (0: off), got {self.mala_every}.")


@dataclass(frozen=True)
class LLCResult:
    """A local learning coefficient estimate with its diagnostics.

    Attributes:
        llc: mean over the kept chains of the per-chain estimates, stderr across them
            (NaN when every chain was dropped).
        per_chain: per-chain λ̂ (all chains, dropped ones included).
        loss_at_minimum: ``L_n(w*)`` (mean NLL over the training set).
        beta: inverse temperature used.
        n: number of training samples.
        nll_scale: factor turning the bundle's per-sample loss into the NLL.
        loss_trace: sampled minibatch NLLs, shape ``(chains, draws)``.
        stable: no chain diverged, went non-finite or drifted.
        diverged: per-chain flag (non-finite or exploding loss).
        drift: per-chain relative drift between the third and fourth quarter of the draws.
        config: the settings used (the tuned ones when ``tuned``).
        grad_norm: ``‖∇L_n(w*)‖`` of the NLL; λ̂ assumes w* is a local minimum, and a
            negative λ̂ means the chains found lower loss nearby (it is not one).
        dropped: per-chain flag: left out of the mean (diverged, non-finite or drifting).
        mala_acceptance: mean MALA acceptance probability of the recorded SGLD steps of
            the kept chains (NaN when not computed).
        r_hat: split-R̂ of the per-draw ``nβ(L − L*)`` over the kept chains.
        ess: bulk ESS of the per-draw ``nβ(L − L*)`` over the kept chains.
        localization_scale: ``h_γ = γ/(nβ)`` in NLL-curvature units.
        gamma_sensitivity: ``S = −dλ̂/d log γ`` estimated from the draws.
        distance_trace: ``‖w − w*‖²`` at each draw, shape ``(chains, draws)``.
        distance_drift: per-chain signed relative change of ``‖w − w*‖²`` over the
            draws (linear trend); see :func:`spreading`.
        curvature_below_localization: fraction of Hessian directions with NLL curvature
            below ``h_γ`` (NaN unless eigenvalues were given and decide it).
        step_bias: predicted first-order excess of λ̂ from the step ε and the minibatch
            noise (:func:`step_bias`).
        tuned: whether ε and γ came from a pilot sweep.
        tuning: the sweep, when tuned.
        trustworthy: the run meets every condition the calibration tests support.
        notes: plain statements of the regime, the diagnostics and what fails.
    """

    llc: Estimate
    per_chain: np.ndarray
    loss_at_minimum: float
    beta: float
    n: int
    nll_scale: float
    loss_trace: np.ndarray
    stable: bool
    diverged: np.ndarray
    drift: np.ndarray
    config: LLCConfig
    grad_norm: float = float("nan")
    dropped: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))
    mala_acceptance: float = float("nan")
    r_hat: float = float("nan")
    ess: float = float("nan")
    localization_scale: float = float("nan")
    gamma_sensitivity: Estimate = dataclasses.field(
        default_factory=lambda: Estimate(float("nan"), float("nan"), 0)
    )
    distance_trace: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    distance_drift: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    curvature_below_localization: float = float("nan")
    step_bias: float = float("nan")
    tuned: bool = False
    tuning: TuningReport | None = None
    trustworthy: bool = False
    notes: tuple[str, ...] = ()

    @property
    def dropped_chains(self) -> int:
        """Number of chains left out of the mean."""
        return int(np.count_nonzero(self.dropped))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scalars (the traces are summarized, not listed)."""
        out: dict[str, Any] = {
            "llc": self.llc.to_dict(),
            "per_chain": [_json_float(v) for v in self.per_chain],
            "loss_at_minimum": _json_float(self.loss_at_minimum),
            "beta": _json_float(self.beta),
            "n": int(self.n),
            "nll_scale": _json_float(self.nll_scale),
            "stable": bool(self.stable),
            "diverged": [bool(v) for v in self.diverged],
            "drift": [_json_float(v) for v in self.drift],
            "grad_norm": _json_float(self.grad_norm),
            "config": asdict(self.config),
            "mala_acceptance": _json_float(self.mala_acceptance),
            "r_hat": _json_float(self.r_hat),
            "ess": _json_float(self.ess),
            "dropped_chains": self.dropped_chains,
            "localization_scale": _json_float(self.localization_scale),
            "gamma_sensitivity": self.gamma_sensitivity.to_dict(),
            "distance_drift": [_json_float(v) for v in self.distance_drift],
            "curvature_below_localization": _json_float(self.curvature_below_localization),
            "step_bias": _json_float(self.step_bias),
            "tuned": bool(self.tuned),
            "trustworthy": bool(self.trustworthy),
            "notes": list(self.notes),
        }
        if self.tuning is not None:
            out["tuning"] = self.tuning.to_dict()
        return out


def nll_scale(space: ParamSpace, sigma: float = 1.0) -> float:
    """Factor that turns the bundle's per-sample loss into a per-sample NLL.

    The one place that relates ``space.bundle.loss`` to a likelihood:

    * ``cross_entropy`` is the categorical NLL itself: 1.
    * ``mse`` (``torch.nn.MSELoss``, ``‖f − y‖²/k`` per sample for ``k`` output elements)
      is read as a Gaussian likelihood with noise σ, whose per-sample NLL is
      ``‖f − y‖²/(2σ²)`` (+ a constant that cancels in λ̂): the factor is ``k/(2σ²)``,
      with ``k`` read from one forward pass.
    * ``gaussian_nll`` is that NLL already, with its own σ: 1.
    * any other loss is taken to be an NLL as it is: 1.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> nll_scale(ParamSpace(b))
        1.0
    """
    if space.bundle.loss.name != "mse":
        return 1.0
    x = space.bundle.to_device(space.bundle.data.x_train[:1])
    with torch.no_grad():
        k = int(space.forward(space.theta0, x)[0].numel())
    return k / (2.0 * sigma**2)


def _train_tensors(space: ParamSpace) -> tuple[torch.Tensor, torch.Tensor]:
    data = space.bundle.data
    return space.bundle.to_device(data.x_train), space.bundle.to_device(data.y_train)


def _drift(trace: np.ndarray, ref: float) -> np.ndarray:
    """Relative change of the mean excess loss from the 3rd to the 4th quarter of the draws.

    Returned as ``|b − a| / |mean excess|``; set to 0 when the change is within three
    standard errors, each quarter's standard error taken from its variance and the chain's
    autocorrelation time (Geyer's initial monotone sequence over the second half), so that
    noise, however correlated, is not reported as drift.
    """
    half = trace[:, trace.shape[1] // 2 :]
    q = half.shape[1] // 2
    first, second = half[:, :q], half[:, q : 2 * q]
    diff = second.mean(axis=1) - first.mean(axis=1)
    out = np.full(trace.shape[0], np.nan)
    for k in range(trace.shape[0]):
        if not np.isfinite(half[k]).all():
            continue
        e = ess(half[k], split=False)
        tau = half.shape[1] / e if math.isfinite(e) and e > 0 else float(half.shape[1])
        se_diff = math.sqrt((first[k].var() + second[k].var()) * tau / max(q, 1))
        scale = max(abs(float(half[k].mean()) - ref), 1e-12)
        out[k] = abs(diff[k]) / scale if abs(diff[k]) > 3.0 * se_diff else 0.0
    return out


def _trend(trace: np.ndarray, blocks: int = 10) -> np.ndarray:
    """Signed relative change of each row over its length, from a line fit to block means.

    ``slope · length / mean``; NaN for non-finite rows.
    """
    c, t = trace.shape
    finite = np.isfinite(trace).all(axis=1)
    trace = np.where(finite[:, None], trace, 0.0)
    blocks = max(3, min(blocks, t))
    usable = (t // blocks) * blocks
    bm = trace[:, :usable].reshape(c, blocks, -1).mean(axis=2)
    x = np.arange(blocks, dtype=np.float64) - (blocks - 1) / 2
    slope = (bm * x).sum(axis=1) / float((x**2).sum())
    rel = slope * blocks / np.maximum(np.abs(bm.mean(axis=1)), 1e-300)
    return np.where(finite, rel, np.nan)


def spreading(trend: np.ndarray, tol: float) -> bool:
    """Whether ``‖w − w*‖²`` grows across the chains: mean trend above ``tol`` and 2 SE.

    Pooling the chains keeps one chain's slow excursion from reading as diffusion.

    Example:
        >>> spreading(np.array([0.5, 0.6, 0.4, 0.55]), 0.25)
        True
        >>> spreading(np.array([0.7, -0.1, 0.0, -0.2]), 0.25)
        False
    """
    t = trend[np.isfinite(trend)]
    if t.size == 0:
        return True
    mean = float(t.mean())
    se = float(t.std(ddof=1) / math.sqrt(t.size)) if t.size > 1 else 0.0
    return mean > tol and mean > 2.0 * se


def _noise_traces(
    space: ParamSpace, w_star: torch.Tensor, batch_size: int, seed: int, probes: int = 8
) -> tuple[float, float]:
    """``tr ∇²L_n(w*)`` (Hutchinson, Rademacher probes) and ``E‖∇L_m(w*) − ∇L_n(w*)‖²``.

    Both in the bundle's loss units; NaN where they cannot be computed.
    """
    from landscape.engine.curvature import CurvatureOperator

    g = torch.Generator(device=w_star.device).manual_seed(seed + 7919)
    dim = w_star.numel()
    try:
        op = CurvatureOperator(space, w_star)
        v = torch.randint(0, 2, (probes, dim), generator=g, device=w_star.device)
        v = v.to(w_star.dtype) * 2 - 1
        tr_h = float((op.matmat(v) * v).sum(dim=1).mean())
    except Exception:  # noqa: BLE001 - a diagnostic: report NaN rather than fail the estimate
        tr_h = float("nan")
    x_all, y_all = _train_tensors(space)
    n = int(x_all.shape[0])
    m = min(batch_size, n)
    _, full = space.value_and_grad(w_star, "train")
    dev2 = []
    for _ in range(probes):
        idx = torch.randint(0, n, (m,), generator=g, device=w_star.device)
        _, gb, _ = space.grad_graph(w_star, x_all[idx], y_all[idx], create_graph=False)
        mb = max(space.bundle.loss.chunk_units(y_all[idx]), 1)  # samples, or tokens
        dev2.append(float(((gb.detach() / mb - full) ** 2).sum()))
    return tr_h, float(np.mean(dev2))


def step_bias(step_size: float, nb: float, scale: float, trace_h: float, noise2: float) -> float:
    """First-order excess of λ̂ caused by the SGLD step and the minibatch noise.

    On a Gaussian target the unadjusted Langevin step inflates the variance of direction
    ``i`` by ``1/(1 − εP_i/4)``, adding ``ε nβ h_i/8`` to λ̂ whatever γ is; minibatch
    gradient noise adds at most ``ε (nβ)² E‖∇L_m − ∇L_n‖²/8``. So (NLL units, ``scale``
    converting the loss)::

        B(ε) = ε nβ · scale · tr H / 8 + ε (nβ · scale)² · E‖∇L_m − ∇L_n‖² / 8.

    Example:
        >>> step_bias(0.01, 100.0, 1.0, 4.0, 0.0)
        0.5
    """
    return step_size * nb * scale * trace_h / 8.0 + step_size * (nb * scale) ** 2 * noise2 / 8.0


@dataclass(frozen=True)
class _Chains:
    trace: np.ndarray  # (chains, draws) minibatch NLL
    dist2: np.ndarray  # (chains, draws) ‖w − w*‖²
    accept: np.ndarray  # (chains, checks) MALA acceptance probabilities
    diverged: np.ndarray  # (chains,)


@math_attention()
def _sample(
    space: ParamSpace,
    w_star: torch.Tensor,
    cfg: LLCConfig,
    scale: float,
    nb: float,
    progress: Progress | None,
) -> _Chains:
    """Run the SGLD chains (vmapped over chains unless TorchScript)."""
    x_all, y_all = _train_tensors(space)
    n = int(x_all.shape[0])
    m = min(cfg.batch_size, n)
    c = cfg.chains
    dev = w_star.device
    g = torch.Generator(device=dev).manual_seed(cfg.seed)
    eps, gamma = cfg.step_size, cfg.localization
    loss_spec = space.bundle.loss

    if space.scripted:

        def batched(th: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            gs, ls = [], []
            for k in range(c):
                loss, gk, _ = space.grad_graph(
                    th[k], x_all[idx[k]], y_all[idx[k]], create_graph=False
                )
                gs.append(gk.detach())
                ls.append(loss)
            return torch.stack(gs), torch.stack(ls)

    else:
        module = space.bundle.module
        buffers = space.buffers

        def one(th: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            params = space.unflatten(th)
            params.update(buffers)
            out = functional_call(module, params, (xb,), strict=False)
            return loss_spec.chunk_sum(out, yb)

        many = vmap(one, in_dims=(0, 0, 0), randomness="error")

        def batched(th: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            leaf = th.detach().requires_grad_(True)
            with torch.enable_grad():
                sums = many(leaf, x_all[idx], y_all[idx])
                (gk,) = torch.autograd.grad(sums.sum(), leaf)
            return gk.detach(), sums.detach()

    per_unit = loss_spec.units is not None  # a per-token loss: minibatch means per token

    def units_of(idx: torch.Tensor) -> torch.Tensor:
        counts = [max(loss_spec.chunk_units(y_all[idx[k]]), 1) for k in range(c)]
        return torch.tensor(counts, device=dev, dtype=w_star.dtype)

    def potential(
        th: torch.Tensor, grads: torch.Tensor, sums: torch.Tensor, mu: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        delta = th - w_star
        if mu is not None:
            u = nb * scale * (sums / mu).double() + 0.5 * gamma * (delta.double() ** 2).sum(dim=1)
            return u, nb * scale * grads / mu[:, None] + gamma * delta
        u = nb * scale / m * sums.double() + 0.5 * gamma * (delta.double() ** 2).sum(dim=1)
        return u, nb * scale / m * grads + gamma * delta

    th = w_star.unsqueeze(0).repeat(c, 1)
    trace = np.full((c, cfg.draws), np.nan)
    dist2 = np.full((c, cfg.draws), np.nan)
    accepts: list[np.ndarray] = []
    diverged = np.zeros(c, dtype=bool)
    total = cfg.burn_in + cfg.draws
    with tracked(progress, "LLC (SGLD)", total) as task:
        for t in range(total):
            idx = torch.randint(0, n, (c, m), generator=g, device=dev)
            grads, sums = batched(th, idx)
            mu = units_of(idx) if per_unit else None
            u0, drift = potential(th, grads, sums, mu)
            if t >= cfg.burn_in:
                k = t - cfg.burn_in
                if mu is not None:
                    trace[:, k] = (sums / mu * scale).double().cpu().numpy()
                else:
                    trace[:, k] = (sums * (scale / m)).double().cpu().numpy()
                dist2[:, k] = ((th - w_star).double() ** 2).sum(dim=1).cpu().numpy()
            noise = torch.randn(th.shape, generator=g, device=dev, dtype=th.dtype)
            new = th - 0.5 * eps * drift + math.sqrt(eps) * noise
            if cfg.mala_every and t >= cfg.burn_in and (t - cfg.burn_in) % cfg.mala_every == 0:
                # Metropolis-Hastings ratio of this Langevin step, same minibatch both ends
                u1, drift1 = potential(new, *batched(new, idx), mu)
                back = th - new + 0.5 * eps * drift1
                log_q_back = -(back.double() ** 2).sum(dim=1) / (2.0 * eps)
                log_q_fwd = -0.5 * (noise.double() ** 2).sum(dim=1)
                log_a = (u0 - u1 + log_q_back - log_q_fwd).clamp(max=0.0)
                accepts.append(torch.exp(log_a).cpu().numpy())
            th = new
            task.advance()
            bad = ~torch.isfinite(th).all(dim=1)
            if bool(bad.any()):
                diverged |= bad.cpu().numpy()
                th = torch.where(bad.unsqueeze(1), w_star.unsqueeze(0), th)
    accept = np.stack(accepts, axis=1) if accepts else np.zeros((c, 0))
    return _Chains(trace, dist2, accept, diverged)


def _below_fraction(eigs: np.ndarray | None, h_gamma: float, dim: int) -> tuple[float, str]:
    """Fraction of directions with curvature below ``h_γ`` from (top) eigenvalues."""
    if eigs is None or eigs.size == 0:
        return float("nan"), ""
    above = int(np.count_nonzero(eigs >= h_gamma))
    if eigs.size >= dim or above < eigs.size:
        # the full spectrum, or the given top eigenvalues reach below h_γ (so do the rest)
        return (dim - above) / dim, ""
    return float("nan"), (
        f"all {eigs.size} given Hessian eigenvalues exceed h_γ; at most"
        f" {(dim - above) / dim:.0%} of the directions lie below it"
    )


def _assess(
    *,
    mean: float,
    kept: int,
    chains: int,
    dropped: int,
    r_hat: float,
    ess_value: float,
    acceptance: float,
    h_gamma: float,
    sensitivity: float,
    below: float,
    below_note: str,
    grad_bias: float,
    bias: float,
    loss_name: str,
    distance_spreading: bool,
) -> tuple[bool, tuple[str, ...]]:
    """The trust statement: which calibrated conditions hold, in words."""
    notes = [
        "λ̂ is calibrated on regular models (logistic regression, tuned ε and γ: within 15%"
        " of λ = d/2 at n = 1000, d = 21; at n = 256 within 10% of the tempered-posterior"
        " value, which itself exceeds d/2 by 6–11% for d = 6–11) and on deep linear networks"
        " (Aoyagi's λ within 15%, MSE, n = 2000, default ε and γ), when the conditions below"
        " hold.",
        f"h_γ = γ/(nβ) = {h_gamma:.3g}: directions with NLL curvature below it are held by"
        " the localization and count ≈ 0, so λ̂ is at most the γ → 0 value.",
    ]
    ok = True
    if loss_name not in ("cross_entropy", "mse", "gaussian_nll"):
        notes.append(f"the loss {loss_name!r} is taken to be a per-sample NLL as it is.")
    if dropped:
        notes.append(
            f"{dropped} of {chains} chains dropped (diverged, non-finite or drifting loss)."
        )
    if kept == 0:
        notes.append("every chain was dropped: λ̂ is NaN; lower the step size.")
        return False, tuple(notes)
    if kept < 2:
        ok = False
        notes.append("fewer than 2 chains kept: no R̂ and no standard error.")
    if math.isfinite(acceptance):
        if acceptance < TRUST_ACCEPTANCE:
            ok = False
            notes.append(
                f"MALA acceptance {acceptance:.2f} < {TRUST_ACCEPTANCE}: the step ε is too"
                " large for the curvature; lower it (or tune)."
            )
        else:
            notes.append(f"MALA acceptance {acceptance:.2f} (≥ {TRUST_ACCEPTANCE}).")
    else:
        notes.append("MALA acceptance not computed (mala_every = 0).")
    if math.isfinite(r_hat) and r_hat <= TRUST_RHAT:
        notes.append(f"split-R̂ {r_hat:.3f} (≤ {TRUST_RHAT}), bulk ESS {ess_value:.0f}.")
    elif kept >= 2:
        ok = False
        notes.append(
            f"split-R̂ {r_hat:.3f} > {TRUST_RHAT}: the chains disagree or trend; run longer."
        )
    if not (math.isfinite(ess_value) and ess_value >= TRUST_ESS):
        ok = False
        notes.append(f"bulk ESS {ess_value:.0f} < {TRUST_ESS:.0f}: run more or longer chains.")
    if math.isfinite(bias) and mean > 0:
        if bias > TRUST_STEP_BIAS * mean:
            ok = False
            notes.append(
                f"the step ε and the minibatch noise add ≈ {bias:.3g} to λ̂ (first order,"
                f" {bias / mean:.0%} > {TRUST_STEP_BIAS:.0%}): lower ε or raise batch_size."
            )
        else:
            notes.append(f"step and minibatch bias ≈ {bias / mean:.1%} of λ̂.")
    if distance_spreading:
        notes.append(
            "‖w − w*‖² still grows across the chains: directions held only by the"
            " localization have not equilibrated (lengthen burn-in or raise γ)."
        )
    rel_s = sensitivity / mean if mean > 0 else float("nan")
    if math.isfinite(rel_s) and rel_s > TRUST_SENSITIVITY:
        ok = False
        notes.append(
            f"γ-sensitivity −d log λ̂/d log γ = {rel_s:.2f} > {TRUST_SENSITIVITY}: the"
            " localization, not the likelihood, decides λ̂; halving γ would raise it by"
            f" ≈ {sensitivity * math.log(2):.3g}. λ̂ is biased low; lower γ (tune_llc)."
        )
    elif math.isfinite(rel_s):
        notes.append(f"γ-sensitivity −d log λ̂/d log γ = {rel_s:.2f} (≤ {TRUST_SENSITIVITY}).")
    if math.isfinite(below):
        if below > TRUST_BELOW:
            ok = False
            notes.append(
                f"{below:.0%} of the Hessian directions have curvature below h_γ: they are"
                " not counted, λ̂ is biased low."
            )
        else:
            notes.append(f"{below:.1%} of the Hessian directions lie below h_γ.")
    elif below_note:
        notes.append(below_note + ".")
    if mean < 0:
        ok = False
        notes.append("λ̂ < 0: the chains found lower loss, so w* is not a local minimum.")
    elif math.isfinite(grad_bias) and mean > 0 and grad_bias > TRUST_GRAD_BIAS * mean:
        ok = False
        notes.append(
            f"the gradient at w* can shift λ̂ by up to {grad_bias:.3g} ((nβ‖∇L‖)²/(2γ)):"
            " train closer to the minimum."
        )
    return ok, tuple(notes)


def estimate_llc(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    config: LLCConfig | None = None,
    *,
    hessian_eigenvalues: np.ndarray | None = None,
    progress: Progress | None = None,
) -> LLCResult:
    """Estimate the local learning coefficient at θ by minibatch SGLD.

    Chains run together (the forward pass vmapped over θ, one backward pass for all
    chains) unless the model is TorchScript. With ``config.auto`` the step size and the
    localization are chosen first by :func:`~landscape.basins.llc_tuning.tune_llc`.

    The result is ``trustworthy`` when at least two chains are kept, split-R̂ ≤ 1.1, bulk
    ESS ≥ 100, MALA acceptance ≥ 0.8, the γ-sensitivity ``−d log λ̂/d log γ`` ≤ 0.1, at
    most 5% of the Hessian directions lie below ``h_γ`` (when eigenvalues are given), the
    gradient bound ``(nβ‖∇L‖)²/(2γ)`` and the predicted step/minibatch bias
    (:func:`step_bias`) are each ≤ 5% of λ̂, and λ̂ > 0; ``notes`` says which hold.

    Args:
        space: the parameter space (model, training data, loss).
        theta: the minimum w* (default ``space.theta0``); not modified.
        config: SGLD settings (defaults: :class:`LLCConfig`).
        hessian_eigenvalues: optional (top) eigenvalues of the Hessian of the mean
            training loss at θ (as ``top_eigenpairs`` returns them), to report the fraction
            of directions below ``h_γ``.
        progress: optional progress reporter (one step per SGLD step).

    Returns:
        The estimate with per-chain values, the traces, diagnostics and the trust notes.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> r = estimate_llc(ParamSpace(b), config=LLCConfig(chains=2, draws=20, burn_in=5))
        >>> r.loss_trace.shape, r.tuned
        ((2, 20), False)
    """
    cfg = config or LLCConfig()
    cfg.validate()
    tuning: TuningReport | None = None
    if cfg.auto:
        from landscape.basins.llc_tuning import tune_llc

        cfg, tuning = tune_llc(
            space, theta, cfg, hessian_eigenvalues=hessian_eigenvalues, progress=progress
        )
    return _estimate(space, theta, cfg, hessian_eigenvalues, progress, tuning=tuning)


def _estimate(
    space: ParamSpace,
    theta: torch.Tensor | None,
    cfg: LLCConfig,
    hessian_eigenvalues: np.ndarray | None,
    progress: Progress | None,
    *,
    tuning: TuningReport | None = None,
    noise: tuple[float, float] | None = None,
) -> LLCResult:
    """One SGLD run with its diagnostics (``noise``: precomputed :func:`_noise_traces`)."""
    w_star = (space.theta0 if theta is None else theta).detach().clone()
    n = space.num_units("train")  # samples, or tokens for a per-token loss
    if n < 2:
        raise ConfigError("the LLC needs at least two training samples; give more data.")
    beta = cfg.beta if cfg.beta is not None else 1.0 / math.log(n)
    scale = nll_scale(space, cfg.sigma)
    loss0, grad0 = space.value_and_grad(w_star, "train")
    l_star = float(loss0) * scale
    grad_norm = float(grad0.norm()) * scale
    nb = n * beta
    tr_h, noise2 = noise or _noise_traces(space, w_star, cfg.batch_size, cfg.seed)
    bias = step_bias(cfg.step_size, nb, scale, tr_h, noise2)
    ch = _sample(space, w_star, cfg, scale, nb, progress)
    trace, diverged = ch.trace, ch.diverged
    finite = np.isfinite(trace).all(axis=1)
    excess = np.where(finite, np.nanmean(trace, axis=1) - l_star, np.nan)
    # a chain whose loss climbs far beyond where the others sit has left the basin
    start = np.nanmean(np.abs(trace[:, : max(1, cfg.draws // 10)] - l_star), axis=1)
    end = np.nanmean(np.abs(trace[:, -max(1, cfg.draws // 10) :] - l_star), axis=1)
    exploding = end > 10.0 * np.maximum(start, 1e-12) + 10.0 / max(nb, 1e-12)
    diverged = diverged | ~finite | exploding
    per_chain = nb * excess
    drift_rel = _drift(trace, l_star)
    drifting = np.nan_to_num(drift_rel, nan=np.inf) > cfg.drift_tol
    dropped = diverged | drifting | ~np.isfinite(per_chain)
    keep = ~dropped
    good = per_chain[keep]
    mean = float(good.mean()) if good.size else float("nan")
    se = float(good.std(ddof=1) / math.sqrt(good.size)) if good.size > 1 else float("nan")
    stable = bool(not dropped.any())

    draws_nb = nb * (trace[keep] - l_star)
    r_hat = split_rhat(draws_nb) if keep.sum() >= 1 else float("nan")
    ess_value = bulk_ess(draws_nb) if keep.sum() >= 1 else float("nan")
    acc = ch.accept[keep]
    acceptance = float(acc.mean()) if acc.size and np.isfinite(acc).all() else float("nan")
    gamma = cfg.localization
    h_gamma = gamma / nb
    # S = −dλ̂/d log γ = (γ/2) Cov(nβ L, ‖w − w*‖²), per kept chain
    sens_chain = np.array(
        [
            0.5 * gamma * float(np.cov(nb * trace[k], ch.dist2[k])[0, 1])
            for k in np.flatnonzero(keep)
        ]
    )
    if sens_chain.size:
        s_se = (
            float(sens_chain.std(ddof=1) / math.sqrt(sens_chain.size))
            if sens_chain.size > 1
            else float("nan")
        )
        sensitivity = Estimate(float(sens_chain.mean()), s_se, int(sens_chain.size), "cov")
    else:
        sensitivity = Estimate(float("nan"), float("nan"), 0, "cov")
    dist_drift = _trend(ch.dist2)
    eigs = None
    if hessian_eigenvalues is not None:
        eigs = np.asarray(hessian_eigenvalues, dtype=np.float64).ravel() * scale
    below, below_note = _below_fraction(eigs, h_gamma, space.dim)
    grad_bias = (nb * grad_norm) ** 2 / (2.0 * gamma) if gamma > 0 else float("inf")
    trustworthy, notes = _assess(
        mean=mean,
        kept=int(keep.sum()),
        chains=cfg.chains,
        dropped=int(dropped.sum()),
        r_hat=r_hat,
        ess_value=ess_value,
        acceptance=acceptance,
        h_gamma=h_gamma,
        sensitivity=sensitivity.mean,
        below=below,
        below_note=below_note,
        grad_bias=grad_bias if grad_norm > 0 else 0.0,
        bias=bias,
        loss_name=space.bundle.loss.name,
        distance_spreading=spreading(dist_drift[keep], cfg.drift_tol),
    )
    if tuning is not None:
        notes = (*notes, f"ε = {cfg.step_size:.3g} and γ = {gamma:.3g} chosen by a pilot sweep.")
        if not tuning.step_ok:
            trustworthy = False
            notes = (*notes, "no step size in the sweep met the acceptance and bias targets.")
        if not tuning.localization_ok:
            trustworthy = False
            notes = (*notes, "no localization in the sweep kept the chains localized.")
    return LLCResult(
        llc=Estimate(mean, se, int(good.size), "sgld"),
        per_chain=per_chain,
        loss_at_minimum=l_star,
        beta=beta,
        n=n,
        nll_scale=scale,
        loss_trace=trace,
        stable=stable,
        diverged=diverged,
        drift=drift_rel,
        config=cfg,
        grad_norm=grad_norm,
        dropped=dropped,
        mala_acceptance=acceptance,
        r_hat=r_hat,
        ess=ess_value,
        localization_scale=h_gamma,
        gamma_sensitivity=sensitivity,
        distance_trace=ch.dist2,
        distance_drift=dist_drift,
        curvature_below_localization=below,
        step_bias=bias,
        tuned=tuning is not None,
        tuning=tuning,
        trustworthy=trustworthy,
        notes=notes,
    )
