"""Local learning coefficient by stochastic-gradient Langevin dynamics (Lau et al. 2023).

The local learning coefficient λ(w*) measures the degeneracy of a minimum: a regular
minimum of a ``d``-parameter model has λ = d/2; degenerate (singular) minima have less.
Following Lau et al., *Quantifying degeneracy in singular models via the learning
coefficient* (2023), we sample the localized tempered posterior

    p(w) ∝ exp(−nβ L_n(w) − γ/2 ‖w − w*‖²),      β = β* = 1/log n,

with minibatch SGLD,

    w ← w − ε/2 · (nβ ∇L_m(w) + γ (w − w*)) + N(0, ε I),

and estimate ``λ̂ = nβ (E_w[L_n(w)] − L_n(w*))``, with ``E_w[L_n(w)]`` the mean over draws of
the minibatch loss at the draw (an unbiased estimate of ``L_n`` there).

The temperature only means something when ``L_n`` is the mean per-sample *negative
log-likelihood*. For cross-entropy that is the loss itself. For MSE the bundle's per-sample
loss is ``½‖f − y‖²``; we use a Gaussian likelihood with a stated noise scale σ, whose NLL
is ``‖f − y‖²/(2σ²)`` (+ a constant that cancels). An element-mean loss would change the
scale of ``nβ`` and bias the estimate. Other losses are taken to be NLLs as they are.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, vmap

from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.progress import Progress, tracked
from landscape.results import Estimate, _json_float


@dataclass(frozen=True)
class LLCConfig:
    """SGLD settings for the local learning coefficient.

    The defaults were fixed once and are the ones the deep-linear calibration test runs.

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
            draws above which a chain is flagged.
        seed: seed of minibatches and noise.
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

    def validate(self) -> None:
        """Raise :class:`ConfigError` on settings that cannot run."""
        if self.step_size <= 0 or not math.isfinite(self.step_size):
            raise ConfigError(f"llc step_size must be positive, got {self.step_size}.")
        if self.localization < 0:
            raise ConfigError(f"llc localization must be ≥ 0, got {self.localization}.")
        if self.chains < 1 or self.draws < 4 or self.burn_in < 0 or self.batch_size < 1:
            raise ConfigError(
                "llc needs chains ≥ 1, draws ≥ 4, burn_in ≥ 0 and batch_size ≥ 1; fix the config."
            )
        if self.sigma <= 0:
            raise ConfigError(f"llc sigma must be positive, got {self.sigma}.")
        if self.beta is not None and self.beta <= 0:
            raise ConfigError(f"llc beta must be positive, got {self.beta}.")


@dataclass(frozen=True)
class LLCResult:
    """A local learning coefficient estimate with its diagnostics.

    Attributes:
        llc: mean over chains of the per-chain estimates, stderr across chains.
        per_chain: per-chain λ̂.
        loss_at_minimum: ``L_n(w*)`` (mean NLL over the training set).
        beta: inverse temperature used.
        n: number of training samples.
        nll_scale: factor turning the bundle's per-sample loss into the NLL.
        loss_trace: sampled minibatch NLLs, shape ``(chains, draws)``.
        stable: no chain diverged, went non-finite or drifted.
        diverged: per-chain flag (non-finite or exploding loss).
        drift: per-chain relative drift between the third and fourth quarter of the draws.
        config: the settings.
        grad_norm: ``‖∇L_n(w*)‖`` of the NLL; λ̂ assumes w* is a local minimum, and a
            negative λ̂ means the chains found lower loss nearby (it is not one).
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scalars (the trace is summarized, not listed)."""
        return {
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
        }


def nll_scale(space: ParamSpace, sigma: float = 1.0) -> float:
    """Factor that turns the bundle's per-sample loss into a per-sample NLL.

    ``1/σ²`` for MSE (``½‖f − y‖²`` → ``‖f − y‖²/(2σ²)``), 1 otherwise.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> nll_scale(ParamSpace(b))
        1.0
    """
    return 1.0 / sigma**2 if space.bundle.loss.name == "mse" else 1.0


def _train_tensors(space: ParamSpace) -> tuple[torch.Tensor, torch.Tensor]:
    data = space.bundle.data
    return space.bundle.to_device(data.x_train), space.bundle.to_device(data.y_train)


def _drift(trace: np.ndarray, ref: float) -> np.ndarray:
    """Relative change of the mean excess loss from the 3rd to the 4th quarter of the draws.

    Returned as ``|b − a| / |mean excess|``; set to 0 when the change is within three
    standard errors of minibatch noise (batch means over 8 blocks per quarter), so that
    noise alone is not reported as drift.
    """
    half = trace[:, trace.shape[1] // 2 :]
    q = half.shape[1] // 2
    first, second = half[:, :q], half[:, q : 2 * q]
    diff = second.mean(axis=1) - first.mean(axis=1)
    blocks = max(2, min(8, q))
    usable = (q // blocks) * blocks

    def se(x: np.ndarray) -> np.ndarray:
        bm = x[:, :usable].reshape(x.shape[0], blocks, -1).mean(axis=2)
        return bm.std(axis=1, ddof=1) / math.sqrt(blocks)

    se_diff = np.sqrt(se(first) ** 2 + se(second) ** 2)
    scale = np.maximum(np.abs(half.mean(axis=1) - ref), 1e-12)
    rel = np.abs(diff) / scale
    return np.where(np.abs(diff) > 3.0 * se_diff, rel, 0.0)


def estimate_llc(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    config: LLCConfig | None = None,
    *,
    progress: Progress | None = None,
) -> LLCResult:
    """Estimate the local learning coefficient at θ by minibatch SGLD.

    Chains run together (the forward pass vmapped over θ, one backward pass for all
    chains) unless the model is TorchScript.

    Args:
        space: the parameter space (model, training data, loss).
        theta: the minimum w* (default ``space.theta0``); not modified.
        config: SGLD settings (defaults: :class:`LLCConfig`).
        progress: optional progress reporter (one step per SGLD step).

    Returns:
        The estimate with per-chain values, the loss trace and stability flags.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> r = estimate_llc(ParamSpace(b), config=LLCConfig(chains=2, draws=20, burn_in=5))
        >>> r.loss_trace.shape
        (2, 20)
    """
    cfg = config or LLCConfig()
    cfg.validate()
    w_star = (space.theta0 if theta is None else theta).detach().clone()
    n = space.num_samples("train")
    if n < 2:
        raise ConfigError("the LLC needs at least two training samples; give more data.")
    beta = cfg.beta if cfg.beta is not None else 1.0 / math.log(n)
    scale = nll_scale(space, cfg.sigma)
    loss0, grad0 = space.value_and_grad(w_star, "train")
    l_star = float(loss0) * scale
    grad_norm = float(grad0.norm()) * scale
    x_all, y_all = _train_tensors(space)
    m = min(cfg.batch_size, n)
    c = cfg.chains
    dev = w_star.device
    g = torch.Generator(device=dev).manual_seed(cfg.seed)
    eps, gamma, nb = cfg.step_size, cfg.localization, n * beta
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

    th = w_star.unsqueeze(0).repeat(c, 1)
    trace = np.full((c, cfg.draws), np.nan)
    diverged = np.zeros(c, dtype=bool)
    total = cfg.burn_in + cfg.draws
    with tracked(progress, "LLC (SGLD)", total) as task:
        for t in range(total):
            idx = torch.randint(0, n, (c, m), generator=g, device=dev)
            grads, sums = batched(th, idx)
            batch_nll = sums * (scale / m)
            if t >= cfg.burn_in:
                trace[:, t - cfg.burn_in] = batch_nll.double().cpu().numpy()
            noise = torch.randn(th.shape, generator=g, device=dev, dtype=th.dtype)
            drift = nb * scale / m * grads + gamma * (th - w_star)
            th = th - 0.5 * eps * drift + math.sqrt(eps) * noise
            task.advance()
            bad = ~torch.isfinite(th).all(dim=1)
            if bool(bad.any()):
                diverged |= bad.cpu().numpy()
                th = torch.where(bad.unsqueeze(1), w_star.unsqueeze(0), th)
    finite = np.isfinite(trace).all(axis=1)
    excess = np.where(finite, np.nanmean(trace, axis=1) - l_star, np.nan)
    # a chain whose loss climbs far beyond where the others sit has left the basin
    start = np.nanmean(np.abs(trace[:, : max(1, cfg.draws // 10)] - l_star), axis=1)
    end = np.nanmean(np.abs(trace[:, -max(1, cfg.draws // 10) :] - l_star), axis=1)
    exploding = end > 10.0 * np.maximum(start, 1e-12) + 10.0 / max(nb, 1e-12)
    diverged = diverged | ~finite | exploding
    per_chain = nb * excess
    drift_rel = _drift(trace, l_star)
    good = per_chain[np.isfinite(per_chain)]
    mean = float(good.mean()) if good.size else float("nan")
    se = float(good.std(ddof=1) / math.sqrt(good.size)) if good.size > 1 else float("nan")
    stable = bool(
        (not diverged.any()) and np.all(np.nan_to_num(drift_rel, nan=np.inf) <= cfg.drift_tol)
    )
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
    )
