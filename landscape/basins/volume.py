"""Basin volume from random rays (star-shaped estimate) with optional preconditioning.

The basin at θ is the sublevel set ``B = {θ' : L(θ') ≤ L(θ) + Δ}`` seen from θ. In
coordinates ``θ' = θ + A z`` (``A`` a preconditioner, identity for plain rays), draw ``N``
directions ``u_i`` uniformly on the unit sphere of R^d and find the distance ``r_i`` along
``A u_i`` where the loss first exceeds the threshold (doubling, then bisection). If ``B`` is
star-shaped around θ,

    vol(B) = |det A| · V_d · E_u[r(u)^d],        V_d = π^{d/2} / Γ(d/2 + 1),

so ``log vol = log|det A| + log V_d + logsumexp(d log r_i) − log N``, with a bootstrap
confidence interval over rays. The estimate of ``vol`` (not of its log) is unbiased, but
in high dimension it is dominated by the longest rays: when curvature is uneven, plain rays
miss the long axes and the estimate is biased low in practice. A preconditioner that
shrinks the stiff directions (top Hessian eigenvectors, or the Hessian diagonal) makes the
set rounder in ``z`` and the estimate far less variable; report both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from landscape.basins._batched import loss_many
from landscape.engine.curvature import Operator
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.progress import Progress, tracked
from landscape.results import Eigenpairs, _json_float


def log_unit_ball_volume(d: int) -> float:
    """``log V_d = (d/2) log π − log Γ(d/2 + 1)``.

    Example:
        >>> round(math.exp(log_unit_ball_volume(3)), 6) == round(4 / 3 * math.pi, 6)
        True
    """
    return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)


@dataclass(frozen=True)
class Preconditioner:
    """A linear map ``A`` from ray coordinates ``z`` to parameter offsets ``A z``.

    Attributes:
        kind: ``none``, ``eigen`` (``A = I + Σ (s_i − 1) v_i v_iᵀ``) or ``diagonal``
            (``A = diag(s)``).
        scales: ``s`` (per eigenvector, or per parameter).
        vectors: orthonormal rows ``v_i`` for ``eigen``.
    """

    kind: str
    scales: torch.Tensor | None = None
    vectors: torch.Tensor | None = None

    @property
    def log_det(self) -> float:
        """``log |det A|``."""
        if self.scales is None:
            return 0.0
        return float(torch.log(self.scales.double().abs()).sum())

    def apply(self, z: torch.Tensor) -> torch.Tensor:
        """Return ``A z`` for rows ``z`` of shape ``(k, d)``."""
        if self.kind == "none" or self.scales is None:
            return z
        s = self.scales.to(device=z.device, dtype=z.dtype)
        if self.kind == "diagonal":
            return z * s
        v = self.vectors.to(device=z.device, dtype=z.dtype)  # type: ignore[union-attr]
        return z + ((z @ v.T) * (s - 1.0)) @ v


IDENTITY = Preconditioner("none")


def eigen_preconditioner(eig: Eigenpairs, reference: float | None = None) -> Preconditioner:
    """Shrink the top Hessian eigendirections so their curvature matches ``reference``.

    ``s_i = sqrt(reference / λ_i)`` for ``λ_i > reference`` (else 1), so the stiff directions
    get the curvature of the rest. ``reference`` defaults to the smallest positive λ given
    (with all ``d`` eigenpairs this makes a quadratic basin a ball).

    Args:
        eig: eigenpairs with ``vectors`` (e.g. ``top_eigenpairs(op, k, return_vectors=True)``).
        reference: curvature assumed for the directions not given.

    Example:
        >>> e = Eigenpairs(np.array([4.0, 1.0]), np.eye(2), np.zeros(2), np.ones(2, bool), 2, 2)
        >>> eigen_preconditioner(e).scales.tolist()
        [0.5, 1.0]
    """
    if eig.vectors is None:
        raise ConfigError("the eigen preconditioner needs eigenvectors; use return_vectors=True.")
    vals = np.asarray(eig.values, dtype=np.float64)
    vecs = torch.as_tensor(np.asarray(eig.vectors), dtype=torch.float64)
    if vecs.dim() != 2 or vecs.shape[0] != vals.shape[0]:
        raise ConfigError("eigenvectors must be rows of shape (k, dim) matching the values.")
    gram = vecs @ vecs.T
    if float((gram - torch.eye(gram.shape[0], dtype=gram.dtype)).abs().max()) > 1e-3:
        vecs = torch.linalg.qr(vecs.T).Q.T.contiguous()
    pos = vals[vals > 0]
    if reference is None:
        reference = float(pos.min()) if pos.size else 1.0
    if reference <= 0:
        raise ConfigError(f"the reference curvature must be positive, got {reference}.")
    s = np.where(vals > reference, np.sqrt(reference / np.maximum(vals, 1e-300)), 1.0)
    return Preconditioner("eigen", torch.as_tensor(s, dtype=torch.float64), vecs)


def hutchinson_diagonal(op: Operator, probes: int = 32, *, seed: int = 0) -> torch.Tensor:
    """Hutchinson estimate of ``diag(H)``: mean of ``z ⊙ Hz`` over Rademacher probes ``z``.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> op = DenseOperator(torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64)))
        >>> hutchinson_diagonal(op, 4).tolist()
        [1.0, 3.0]
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    z = (torch.randint(0, 2, (probes, op.dim), generator=g) * 2 - 1).to(op.device, op.dtype)
    return (z * op.matmat(z)).mean(dim=0)


def diagonal_preconditioner(diag: torch.Tensor, floor: float = 1e-3) -> Preconditioner:
    """``A = diag(s)`` with ``s_j ∝ max(h_j, floor·max h)^{-1/2}``, normalized to ``det A = 1``.

    Normalizing the determinant keeps radii on the scale of plain rays; the volume formula
    does not depend on it.

    Example:
        >>> p = diagonal_preconditioner(torch.tensor([1.0, 4.0]))
        >>> [round(v, 6) for v in p.scales.tolist()], abs(round(p.log_det, 9))
        ([1.414214, 0.707107], 0.0)
    """
    h = diag.detach().double().cpu()
    hmax = float(h.max()) if h.numel() else 0.0
    if not math.isfinite(hmax) or hmax <= 0:
        return Preconditioner("diagonal", torch.ones_like(h))
    hc = torch.clamp(h, min=floor * hmax)
    s = hc.rsqrt()
    s = s / torch.exp(torch.log(s).mean())
    return Preconditioner("diagonal", s)


@dataclass(frozen=True)
class VolumeResult:
    """Log-volume of a basin from rays, with a bootstrap confidence interval.

    Attributes:
        log_volume: estimated ``log vol(B)`` (natural log).
        ci: bootstrap 95% interval of ``log_volume``.
        mean_log_radius: ``mean_i log r_i`` (a size comparable across dimensions).
        radii: ``r_i`` in ray coordinates.
        dim: ``d``.
        delta: Δ.
        threshold: ``L(θ) + Δ``.
        log_det: ``log |det A|``.
        preconditioner: ``none``, ``eigen`` or ``diagonal``.
        unbounded: rays that reached ``max_radius`` without crossing (then a lower bound).
    """

    log_volume: float
    ci: tuple[float, float]
    mean_log_radius: float
    radii: np.ndarray
    dim: int
    delta: float
    threshold: float
    log_det: float
    preconditioner: str
    unbounded: int

    @property
    def num_rays(self) -> int:
        """Number of rays."""
        return int(self.radii.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scalars (radii summarized)."""
        return {
            "log_volume": _json_float(self.log_volume),
            "ci": [_json_float(self.ci[0]), _json_float(self.ci[1])],
            "mean_log_radius": _json_float(self.mean_log_radius),
            "num_rays": self.num_rays,
            "dim": int(self.dim),
            "delta": _json_float(self.delta),
            "threshold": _json_float(self.threshold),
            "log_det": _json_float(self.log_det),
            "preconditioner": self.preconditioner,
            "unbounded": int(self.unbounded),
        }


def _log_mean_pow(log_r: np.ndarray, d: int) -> float:
    a = d * log_r
    m = a.max()
    return float(m + np.log(np.exp(a - m).mean()))


def log_volume_from_radii(
    radii: np.ndarray, d: int, log_det: float = 0.0, *, bootstrap: int = 1000, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """``log|det A| + log V_d + log mean r^d`` and its percentile bootstrap 95% interval.

    Example:
        >>> lv, ci = log_volume_from_radii(np.ones(10), 2)
        >>> round(lv, 6) == round(math.log(math.pi), 6), ci[0] == ci[1]
        (True, True)
    """
    log_r = np.log(np.asarray(radii, dtype=np.float64))
    base = log_det + log_unit_ball_volume(d)
    est = base + _log_mean_pow(log_r, d)
    if bootstrap <= 0 or log_r.size < 2:
        return est, (est, est)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, log_r.size, size=(bootstrap, log_r.size))
    a = d * log_r[idx]
    m = a.max(axis=1, keepdims=True)
    boots = base + (m[:, 0] + np.log(np.exp(a - m).mean(axis=1)))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return est, (float(lo), float(hi))


def search_radii(
    above: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    num_rays: int,
    *,
    initial_radius: float = 1e-3,
    max_radius: float | torch.Tensor = 1e4,
    bisect_steps: int = 24,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    label: str = "basin rays",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crossing radius of any batched criterion along ``num_rays`` rays.

    ``above(r, idx)`` says, for the rays ``idx`` at radii ``r`` (both shape ``(m,)``), whether
    the point is outside the set (``True``). Doubling from ``initial_radius`` brackets the
    first crossing, then bisection refines it (relative error ``2^-bisect_steps``).

    Args:
        above: the batched outside-the-set test.
        num_rays: number of rays.
        initial_radius: first radius tried.
        max_radius: cap, one for all rays or one per ray (shape ``(num_rays,)``).
        bisect_steps: bisection steps after bracketing.
        device: device of the radii.
        progress: optional progress reporter.
        label: progress label.

    Returns:
        ``(radii, unbounded)``: radii (the cap where no crossing was found) and a mask of the
        rays that reached their cap.

    Example:
        >>> r, unb = search_radii(lambda r, i: r > torch.tensor([1.0, 2.0])[i], 2)
        >>> [round(v, 5) for v in r.tolist()], unb.tolist()
        ([1.0, 2.0], [False, False])
    """
    k = num_rays
    cap = torch.as_tensor(max_radius, dtype=torch.float64, device=device).expand(k).clone()
    lo = torch.zeros(k, device=device, dtype=torch.float64)
    hi = torch.minimum(
        torch.full((k,), float(initial_radius), device=device, dtype=torch.float64), cap
    )
    done = torch.zeros(k, dtype=torch.bool, device=device)
    max_doublings = max(1, math.ceil(math.log2(float(cap.max()) / initial_radius)))
    with tracked(progress, label, max_doublings + bisect_steps) as task:
        for _ in range(max_doublings + 1):
            todo = ~done
            if not bool(todo.any()):
                break
            idx = todo.nonzero().squeeze(1)
            up = above(hi[idx], idx)
            done[idx[up]] = True
            nxt = idx[~up]
            lo[nxt] = hi[nxt]
            hi[nxt] = torch.minimum(hi[nxt] * 2.0, cap[nxt])
            task.advance()
            if bool((lo[nxt] >= cap[nxt]).all()) and nxt.numel() == int((~done).sum()):
                break
        unbounded = ~done
        active = done.nonzero().squeeze(1)
        for _ in range(bisect_steps):
            if active.numel() == 0:
                break
            mid = 0.5 * (lo[active] + hi[active])
            up = above(mid, active)
            hi[active[up]] = mid[up]
            lo[active[~up]] = mid[~up]
            task.advance()
    radii = torch.where(unbounded, cap, 0.5 * (lo + hi))
    return radii, unbounded


def ray_radii(
    space: ParamSpace,
    theta: torch.Tensor,
    directions: torch.Tensor,
    threshold: float,
    *,
    initial_radius: float = 1e-3,
    max_radius: float = 1e4,
    bisect_steps: int = 24,
    group: int = 32,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance along each direction (rows) to where the loss exceeds ``threshold``.

    Doubling from ``initial_radius`` brackets a crossing, then bisection refines it (the
    relative error is ``2^-bisect_steps``). Non-finite losses count as above the threshold.
    See :func:`search_radii` for any other batched criterion.

    Returns:
        ``(radii, unbounded)``: radii (``max_radius`` where no crossing was found) and a mask
        of the rays that reached ``max_radius``.
    """
    dev, dt = space.device, space.dtype
    theta = theta.to(dev, dt)
    dirs = directions.to(dev, dt)

    def above(r: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        pts = theta.unsqueeze(0) + r.to(dt).unsqueeze(1) * dirs[idx]
        return ~(loss_many(space, pts, group=group) <= threshold)

    return search_radii(
        above,
        directions.shape[0],
        initial_radius=initial_radius,
        max_radius=max_radius,
        bisect_steps=bisect_steps,
        device=dev,
        progress=progress,
    )


def basin_volume(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    delta: float = 0.1,
    num_rays: int = 64,
    preconditioner: Preconditioner | None = None,
    initial_radius: float = 1e-3,
    max_radius: float = 1e4,
    bisect_steps: int = 24,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
) -> VolumeResult:
    """Estimate ``log vol{θ' : L(θ') ≤ L(θ) + Δ}`` from ``num_rays`` random rays.

    Args:
        space: the parameter space.
        theta: centre (default ``space.theta0``); its loss sets the threshold.
        delta: Δ, the loss rise that bounds the basin.
        num_rays: number of rays N.
        preconditioner: ``A`` (default identity: plain rays, Euclidean metric).
        initial_radius: first radius tried (in ray coordinates).
        max_radius: cap; rays that never cross are counted as ``unbounded``.
        bisect_steps: bisection steps after bracketing.
        bootstrap: bootstrap resamples for the 95% interval.
        seed: seed of the directions and the bootstrap.
        progress: optional progress reporter.

    Returns:
        The log-volume with its interval and radii.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> basin_volume(sp, delta=0.1, num_rays=8).radii.shape
        (8,)
    """
    if delta <= 0 or not math.isfinite(delta):
        raise ConfigError(f"basin delta must be positive, got {delta}.")
    if num_rays < 1:
        raise ConfigError(f"num_rays must be ≥ 1, got {num_rays}.")
    if not 0 < initial_radius < max_radius:
        raise ConfigError("need 0 < initial_radius < max_radius for the ray search.")
    pre = preconditioner or IDENTITY
    theta = (space.theta0 if theta is None else theta).detach()
    d = space.dim
    l0 = float(space.evaluate(theta, "train")[0])
    threshold = l0 + delta
    g = torch.Generator(device="cpu").manual_seed(seed)
    u = torch.randn(num_rays, d, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    dirs = pre.apply(u)
    radii, unb = ray_radii(
        space,
        theta,
        dirs,
        threshold,
        initial_radius=initial_radius,
        max_radius=max_radius,
        bisect_steps=bisect_steps,
        progress=progress,
    )
    r = radii.double().cpu().numpy()
    lv, ci = log_volume_from_radii(r, d, pre.log_det, bootstrap=bootstrap, seed=seed)
    return VolumeResult(
        log_volume=lv,
        ci=ci,
        mean_log_radius=float(np.log(r).mean()),
        radii=r,
        dim=d,
        delta=float(delta),
        threshold=threshold,
        log_det=pre.log_det,
        preconditioner=pre.kind,
        unbounded=int(unb.sum()),
    )
