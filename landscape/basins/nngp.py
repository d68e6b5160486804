"""NNGP kernels of fully connected ReLU nets and EP estimates of sign-pattern probabilities.

At infinite width a fully connected ReLU network at initialization is a Gaussian process
over its inputs (the NNGP; Neal 1996, Lee et al. 2018). With weight variance ``σ_w²`` per
entry and bias variance ``σ_b²`` the pre-activation kernel obeys the arc-cosine recursion
(Cho & Saul 2009)::

    K⁰(x, x') = σ_w,0² · xᵀx' + σ_b,0²
    Kˡ⁺¹(x, x') = σ_w,l² · n_l · √(KˡₓₓKˡₓ'ₓ') · (sin θ + (π − θ) cos θ) / (2π) + σ_b,l²

with ``θ = arccos(Kˡ(x,x') / √(KˡₓₓKˡₓ'ₓ'))`` and ``n_l`` the width feeding layer ``l+1``.
PyTorch's default ``nn.Linear`` init draws weights and biases from ``U(−1/√n, 1/√n)``
(``n`` = fan-in), so ``σ_w² = σ_b² = 1/(3n)``.

The probability that a GP sample has a given sign pattern, ``P(sign f(x_i) = y_i ∀i)``, is
a Gaussian orthant probability. Expectation propagation with a step likelihood
(Rasmussen & Williams 2006, §3.6, with the probit replaced by the step; Mingard et al.
2021 use it for ``P(f)``) approximates its logarithm; for one input it is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import log_ndtr
from torch import nn

from landscape.errors import ConfigError

_PASS_THROUGH = (nn.Identity, nn.Dropout)


@dataclass(frozen=True)
class EPResult:
    """EP estimate of ``log P(sign f = y)`` under ``f ~ N(0, K)``.

    Attributes:
        log_p: natural log of the probability.
        converged: whether site parameters stopped changing within the sweep budget.
        sweeps: sweeps over the sites done.
    """

    log_p: float
    converged: bool
    sweeps: int

    @property
    def log10_p(self) -> float:
        """``log10`` of the probability."""
        return self.log_p / math.log(10.0)


def _layers(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        out: list[nn.Module] = []
        for child in module:
            out.extend(_layers(child))
        return out
    return [module]


def relu_mlp_layers(module: nn.Module) -> list[nn.Linear] | None:
    """The ``nn.Linear`` layers of a fully connected ReLU net, or ``None`` if it is not one.

    Accepted: an ``nn.Sequential`` (nested allowed) of an optional leading ``nn.Flatten``,
    then ``Linear (ReLU Linear)*`` with ``nn.Identity``/``nn.Dropout`` anywhere. Every linear
    layer must be exactly ``nn.Linear`` (its default init is what the kernel assumes).

    Example:
        >>> len(relu_mlp_layers(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))))
        2
        >>> relu_mlp_layers(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))) is None
        True
    """
    layers = [m for m in _layers(module) if not isinstance(m, _PASS_THROUGH)]
    if layers and isinstance(layers[0], nn.Flatten):
        layers = layers[1:]
    linears: list[nn.Linear] = []
    expect_linear = True
    for m in layers:
        if expect_linear:
            if type(m) is not nn.Linear:
                return None
            linears.append(m)
        elif type(m) is not nn.ReLU:
            return None
        expect_linear = not expect_linear
    if not linears or expect_linear:  # empty, or ends on a ReLU
        return None
    return linears


def nngp_kernel(module: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    """NNGP kernel (one output's covariance) of a ReLU MLP at PyTorch's default init.

    Args:
        module: a fully connected ReLU net (see :func:`relu_mlp_layers`).
        inputs: ``(n, ...)`` inputs; flattened per sample.

    Returns:
        ``(n, n)`` float64 covariance of each output over the inputs.

    Raises:
        ConfigError: if the module is not a fully connected ReLU net.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
        >>> K = nngp_kernel(net, torch.eye(2))
        >>> K.shape, bool(np.allclose(K, K.T))
        ((2, 2), True)
    """
    linears = relu_mlp_layers(module)
    if linears is None:
        raise ConfigError(
            "the NNGP kernel needs a fully connected ReLU net (nn.Sequential of nn.Linear"
            " and nn.ReLU); use method='sampling' for other models."
        )
    x = inputs.detach().reshape(inputs.shape[0], -1).to(torch.float64).cpu().numpy()
    if x.shape[1] != linears[0].in_features:
        raise ConfigError(
            f"inputs have {x.shape[1]} features but the first layer takes"
            f" {linears[0].in_features}; pass inputs the model accepts."
        )
    k = np.zeros((x.shape[0], x.shape[0]))
    for idx, lin in enumerate(linears):
        fan_in = lin.in_features
        var_w = 1.0 / (3.0 * fan_in)
        var_b = var_w if lin.bias is not None else 0.0
        if idx == 0:
            k = var_w * (x @ x.T) + var_b
        else:
            d = np.sqrt(np.clip(np.diag(k), 0.0, None))
            norm = np.outer(d, d)
            with np.errstate(invalid="ignore", divide="ignore"):
                c = np.where(norm > 0, k / np.where(norm > 0, norm, 1.0), 0.0)
            theta = np.arccos(np.clip(c, -1.0, 1.0))
            e = norm * (np.sin(theta) + (math.pi - theta) * np.cos(theta)) / (2 * math.pi)
            k = var_w * fan_in * e + var_b
    return 0.5 * (k + k.T)


def _posterior(
    k: np.ndarray, ttau: np.ndarray, tnu: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = k.shape[0]
    sw = np.sqrt(ttau)
    b = np.eye(n) + sw[:, None] * k * sw[None, :]
    chol = np.linalg.cholesky(b)
    v = np.linalg.solve(chol, sw[:, None] * k)
    sigma = k - v.T @ v
    return sigma, sigma @ tnu, chol


def ep_log_orthant(
    cov: np.ndarray,
    signs: np.ndarray,
    *,
    max_sweeps: int = 200,
    tol: float = 1e-6,
    jitter: float = 1e-10,
) -> EPResult:
    """EP estimate of ``log P(sign f_i = s_i ∀i)`` for ``f ~ N(0, cov)``.

    Sequential EP with a step likelihood ``1[s_i f_i > 0]`` (R&W Algorithm 3.5 with the
    probit replaced by the step) and the EP evidence of GPML's ``infEP``. Exact for one
    input; accurate to a few hundredths in ``log10`` for small problems (see the tests),
    less so for strongly correlated, conflicting patterns.

    Args:
        cov: ``(n, n)`` positive semi-definite covariance.
        signs: ``n`` values in ``{−1, +1}`` (or ``{0, 1}``, mapped to ``{−1, +1}``).
        max_sweeps: sweep budget.
        tol: convergence tolerance on the site parameters.
        jitter: added to the diagonal, relative to its mean.

    Returns:
        An :class:`EPResult`.

    Example:
        >>> r = ep_log_orthant(np.array([[1.0, 0.5], [0.5, 1.0]]), np.array([1, 1]))
        >>> round(math.exp(r.log_p), 3)  # exact: 1/4 + asin(0.5)/(2π) = 1/3
        0.333
    """
    k = np.asarray(cov, dtype=np.float64)
    y = np.asarray(signs, dtype=np.float64).reshape(-1)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] != y.shape[0]:
        raise ConfigError("cov must be (n, n) and signs length n; pass matching arrays.")
    if np.all((y == 0) | (y == 1)):
        y = 2 * y - 1
    if not np.all(np.abs(y) == 1):
        raise ConfigError("signs must be ±1 (or 0/1); pass a sign pattern.")
    n = k.shape[0]
    k = k + jitter * max(float(np.mean(np.diag(k))), 1e-300) * np.eye(n)
    ttau = np.zeros(n)
    tnu = np.zeros(n)
    sigma, mu = k.copy(), np.zeros(n)
    converged = False
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):  # noqa: B007
        old_tau, old_nu = ttau.copy(), tnu.copy()
        for i in range(n):
            tau_c = 1.0 / sigma[i, i] - ttau[i]
            nu_c = mu[i] / sigma[i, i] - tnu[i]
            m_c, s_c = nu_c / tau_c, math.sqrt(1.0 / tau_c)
            z = y[i] * m_c / s_c
            r = math.exp(-0.5 * z * z - 0.5 * math.log(2 * math.pi) - float(log_ndtr(z)))
            mu_hat = m_c + y[i] * s_c * r
            shrink = max(r * (z + r), 0.0)
            s2_hat = (1.0 / tau_c) * max(1.0 - shrink, 1e-14)
            new_tau = max(1.0 / s2_hat - tau_c, 0.0)
            tnu[i] = mu_hat / s2_hat - nu_c
            d_tau = new_tau - ttau[i]
            ttau[i] = new_tau
            si = sigma[:, i].copy()
            sigma -= (d_tau / (1.0 + d_tau * si[i])) * np.outer(si, si)
            mu = sigma @ tnu
        sigma, mu, _ = _posterior(k, ttau, tnu)
        change = max(
            float(np.max(np.abs(ttau - old_tau) / (1.0 + np.abs(ttau)))),
            float(np.max(np.abs(tnu - old_nu) / (1.0 + np.abs(tnu)))),
        )
        if change < tol:
            converged = True
            break
    sigma, mu, chol = _posterior(k, ttau, tnu)
    ds = np.diag(sigma)
    tau_n = 1.0 / ds - ttau
    nu_n = mu / ds - tnu
    lz = log_ndtr(y * nu_n / tau_n * np.sqrt(tau_n))
    nlz = (
        np.sum(np.log(np.diag(chol)))
        - np.sum(lz)
        - tnu @ sigma @ tnu / 2
        - nu_n @ ((ttau / tau_n * nu_n - 2 * tnu) / (ttau + tau_n)) / 2
        + np.sum(tnu**2 / (tau_n + ttau)) / 2
        - np.sum(np.log1p(ttau / tau_n)) / 2
    )
    return EPResult(float(-nlz), converged, sweeps)
