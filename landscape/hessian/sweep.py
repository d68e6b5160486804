"""One Krylov sweep for the whole spectrum: eigenpairs, trace, Frobenius norm and density.

A scan wants the top and bottom eigenpairs, the trace, the Frobenius norm and the
spectral density. Run separately they cost five Krylov or probe budgets; here they share
them:

1. **One Lanczos run** from a Rademacher start (full reorthogonalization, products
   ``A q_j`` kept) gives the top-k and bottom-k Ritz pairs at both ends of the same
   Krylov space, with explicit residuals. It stops as soon as every wanted pair meets
   ``tol`` (and the run is at least ``slq_steps`` long), or at its cap.
2. **The same run is the first SLQ run**: its start is a Rademacher vector, so its
   tridiagonal matrix is a Gauss quadrature of the density like any other run's. The
   other ``slq_runs − 1`` runs advance together.
3. **Trace and Frobenius norm, deflated by the Krylov basis** ``Q`` (Krylov-aware
   estimation in the spirit of Hutch++ and of Chen & Hallman 2023): with
   ``P = I − QᵀQ``, ``tr A = tr(Q A Qᵀ) + tr(P A P)`` and
   ``‖A‖_F² = ‖A Qᵀ‖_F² + ‖A P‖_F²``. The first terms are exact from the stored products.
   The second are estimated from the same probes: for a Rademacher ``g``,
   ``(P g)ᵀ A (P g)`` and ``‖A P g‖²`` are unbiased for ``tr(PAP)`` and ``‖AP‖_F²``, and
   ``A P g = A g − (A Qᵀ)(Q g)`` costs no product when ``A g`` is known, which it is for the
   start of every other SLQ run. Further probes (one product each) are drawn only until
   the trace and the Frobenius norm reach their relative tolerances, or the budget ends.

The trace's standard error is that of the residual Hutchinson mean, floored by the
Rademacher bound ``√(2‖PAP‖_F² / p)`` estimated from the same products (as in
:func:`~landscape.hessian.hutchpp.hutchpp_trace`). When the budget ends first, the result
says so (``trace_resolved`` false and a one-line ``trace_note``): a trace near zero
against a large Frobenius norm cannot be resolved by any probe count a scan can afford.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from landscape.engine import Operator
from landscape.errors import ConfigError
from landscape.hessian.eigenpairs import KEEP_PRODUCTS_MAX, default_max_iter
from landscape.hessian.hutchinson import mean_and_stderr
from landscape.hessian.lanczos import Lanczos
from landscape.hessian.probes import draw_probes, make_generator, probe_batch_size
from landscape.hessian.slq import batched_lanczos, density_from_tridiagonals
from landscape.progress import Progress, tracked
from landscape.results import Eigenpairs, Estimate, SpectralDensity

MIN_TRACE_PROBES = 4
"""Residual probes always taken (when the Krylov space is not the whole space)."""


@dataclass(frozen=True)
class Spectrum:
    """What one sweep measured.

    Attributes:
        top: the largest eigenpairs (descending), ``max(top_k, keep_top)`` of them.
        bottom: the smallest eigenpairs (ascending), or ``None`` for ``bottom_k = 0``.
        trace: ``tr A`` with its standard error (``n`` = residual probes).
        frobenius: ``‖A‖_F`` with its standard error.
        density: the SLQ spectral density (its first run is the eigenpair run).
        krylov_dim: Lanczos steps of the eigenpair run (the deflation rank).
        trace_resolved: whether the trace and Frobenius tolerances were met.
        trace_note: why not, in one line (``None`` when resolved).
        matvecs: operator products per part (``lanczos``, ``slq``, ``trace``, ``residuals``)
            and in all (``total``).
    """

    top: Eigenpairs
    bottom: Eigenpairs | None
    trace: Estimate
    frobenius: Estimate
    density: SpectralDensity
    krylov_dim: int
    trace_resolved: bool
    trace_note: str | None
    matvecs: dict[str, int] = field(default_factory=dict)

    method: str = "sweep"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scalars of the sweep (arrays stay in the typed fields)."""
        return {
            "krylov_dim": self.krylov_dim,
            "trace_resolved": self.trace_resolved,
            "trace_note": self.trace_note,
            "matvecs": dict(self.matvecs),
        }

    def summary(self, top_k: int | None = None) -> dict[str, Any]:
        """The scan's ``hessian`` section.

        Eigenpairs (the first ``top_k``), trace, Frobenius norm, whether the trace is
        resolved, and how the products were spent.
        """
        k = len(self.top.values) if top_k is None else top_k
        out: dict[str, Any] = {
            "top_eigenvalues": self.top.values[:k].tolist(),
            "top_residuals": self.top.residuals[:k].tolist(),
            "top_converged": [bool(c) for c in self.top.converged[:k]],
        }
        if self.bottom is not None:
            out["bottom_eigenvalues"] = self.bottom.values.tolist()
            out["bottom_residuals"] = self.bottom.residuals.tolist()
            out["bottom_converged"] = [bool(c) for c in self.bottom.converged]
        out["trace"] = self.trace.to_dict()
        out["frobenius"] = self.frobenius.to_dict()
        out["trace_resolved"] = bool(self.trace_resolved)
        out["trace_note"] = self.trace_note
        if self.method == "sweep":
            out["sweep"] = {"krylov_dim": self.krylov_dim, "matvecs": dict(self.matvecs)}
        return out

    def arrays(self, top_k: int | None = None) -> dict[str, tuple[str, np.ndarray]]:
        """``results.nc`` variables: the eigenvalues and the SLQ density with its stderr."""
        k = len(self.top.values) if top_k is None else top_k
        out = {"hessian_top_eigenvalues": ("top_k", np.asarray(self.top.values[:k]))}
        if self.bottom is not None:
            out["hessian_bottom_eigenvalues"] = ("bottom_k", np.asarray(self.bottom.values))
        out["slq_grid"] = ("slq_point", np.asarray(self.density.grid))
        out["slq_density"] = ("slq_point", np.asarray(self.density.density))
        out["slq_density_stderr"] = ("slq_point", np.asarray(self.density.density_stderr))
        return out


def separate_spectrum(
    op: Operator,
    *,
    top_k: int = 5,
    bottom_k: int = 3,
    tol: float = 1e-6,
    slq_runs: int = 5,
    slq_steps: int = 60,
    trace_matvecs: int = 99,
    frobenius_probes: int = 30,
    trace_tol: float = 0.01,
    seed: int = 0,
    progress: Progress | None = None,
) -> Spectrum:
    """The same quantities as :func:`spectrum`, each estimator with its own budget.

    Lanczos top-k and bottom-k runs, Hutch++ with ``trace_matvecs`` products, Hutchinson
    Frobenius with ``frobenius_probes`` and an SLQ density: the reference the sweep is
    measured against (``sweep = false`` in a scan preset).

    Example:
        >>> from landscape.engine import DenseOperator
        >>> a = torch.diag(torch.linspace(-1.0, 10.0, 300, dtype=torch.float64))
        >>> s = separate_spectrum(DenseOperator(a), top_k=2, bottom_k=1, slq_runs=2)
        >>> [round(float(v), 4) for v in s.top.values], s.method
        ([10.0, 9.9632], 'separate')
    """
    from landscape.hessian.eigenpairs import bottom_eigenpairs, top_eigenpairs
    from landscape.hessian.frobenius import frobenius_norm
    from landscape.hessian.hutchpp import hutchpp_trace
    from landscape.hessian.slq import slq_density

    dim = int(op.dim)
    start = int(op.matvecs)
    top = top_eigenpairs(op, min(top_k, dim), tol=tol, seed=seed, progress=progress)
    bottom = None
    if bottom_k > 0:
        bottom = bottom_eigenpairs(
            op, min(bottom_k, dim), tol=tol, seed=seed + 1, progress=progress
        )
    t_bot = int(op.matvecs)
    trace = hutchpp_trace(op, trace_matvecs, seed=seed + 2, progress=progress)
    fro = frobenius_norm(op, frobenius_probes, seed=seed + 3, progress=progress)
    t_tr = int(op.matvecs)
    density = slq_density(
        op, num_runs=slq_runs, num_steps=min(slq_steps, dim), seed=seed + 4, progress=progress
    )
    resolved = trace.stderr <= trace_tol * abs(trace.mean)
    note = None
    if not resolved:
        rel = trace.stderr / max(abs(trace.mean), 1e-300)
        note = (
            f"trace not resolved: relative standard error {rel:.0%} after {trace_matvecs}"
            " HVPs; raise --trace-matvecs."
        )
    return Spectrum(
        top=top,
        bottom=bottom,
        trace=trace,
        frobenius=fro,
        density=density,
        krylov_dim=0,
        trace_resolved=bool(resolved),
        trace_note=note,
        matvecs={
            "lanczos": t_bot - start,
            "trace": t_tr - t_bot,
            "slq": int(op.matvecs) - t_tr,
            "total": int(op.matvecs) - start,
        },
        method="separate",
    )


def _pairs(lz: Lanczos, op: Operator, which: str, k: int, tol: float, scale: float) -> Eigenpairs:
    vals, s, _ = lz.ritz(which, k)
    y, ay = lz.ritz_vectors(s)
    extra = 0
    if ay is None:
        ay = op.matmat(y).to(dtype=y.dtype)
        extra = y.shape[0]
    lam = torch.as_tensor(vals, device=y.device, dtype=y.dtype)
    res = torch.linalg.vector_norm(ay - lam[:, None] * y, dim=1).double().cpu().numpy()
    return Eigenpairs(
        values=np.asarray(vals, dtype=np.float64),
        vectors=None,
        residuals=res,
        converged=res <= tol * scale,
        iterations=lz.m,
        matvecs=lz.m + extra,
        which=which,
    )


def _scale(lz: Lanczos) -> float:
    return max(1.0, abs(lz.extreme("top")), abs(lz.extreme("bottom")))


def _converged(lz: Lanczos, which: str, k: int, tol: float, scale: float) -> bool:
    if k == 0:
        return True
    _, _, est = lz.ritz(which, k)
    return bool(np.all(est <= tol * scale))


def spectrum(
    op: Operator,
    *,
    top_k: int = 5,
    bottom_k: int = 3,
    keep_top: int = 0,
    tol: float = 1e-6,
    max_iter: int | None = None,
    slq_runs: int = 5,
    slq_steps: int = 60,
    trace_tol: float = 0.01,
    frobenius_tol: float = 0.02,
    trace_matvecs: int = 99,
    seed: int = 0,
    progress: Progress | None = None,
) -> Spectrum:
    """Top/bottom eigenpairs, trace, Frobenius norm and SLQ density from one sweep.

    Args:
        op: a symmetric operator.
        top_k: largest eigenpairs whose convergence the Lanczos run waits for.
        bottom_k: smallest eigenpairs it waits for (0: none reported).
        keep_top: also return this many top Ritz pairs (from the same basis, no wait).
        tol: relative residual tolerance of the eigenpairs (as in
            :func:`~landscape.hessian.top_eigenpairs`).
        max_iter: cap on the eigenpair run's steps; default
            ``min(dim, max(20·k, 100))`` for ``k = max(top_k, bottom_k)``.
        slq_runs: SLQ runs in all, the eigenpair run included.
        slq_steps: Lanczos steps of each further SLQ run (and the eigenpair run's minimum).
        trace_tol: relative standard error at which the trace stops drawing probes.
        frobenius_tol: relative standard error at which the Frobenius norm stops.
        trace_matvecs: most products spent on probes of their own (beyond the SLQ starts).
        seed: seed of every random vector.
        progress: optional progress reporter.

    Returns:
        A :class:`Spectrum`.

    Raises:
        ConfigError: on counts or tolerances that cannot work.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> a = torch.diag(torch.linspace(-1.0, 10.0, 300, dtype=torch.float64))
        >>> s = spectrum(DenseOperator(a), top_k=2, bottom_k=1, slq_runs=3, slq_steps=30)
        >>> [round(float(v), 4) for v in s.top.values], round(float(s.bottom.values[0]), 4)
        ([10.0, 9.9632], -1.0)
        >>> abs(s.trace.mean - float(a.trace())) < 3 * s.trace.stderr + 1e-9
        True
    """
    for name, v, lo in (("top_k", top_k, 1), ("bottom_k", bottom_k, 0), ("slq_runs", slq_runs, 1)):
        if not isinstance(v, int) or v < lo:
            raise ConfigError(f"{name} must be an integer ≥ {lo}, got {v!r}.")
    if not isinstance(slq_steps, int) or slq_steps < 2:
        raise ConfigError(f"slq_steps must be an integer ≥ 2, got {slq_steps!r}.")
    for name, t in (("tol", tol), ("trace_tol", trace_tol), ("frobenius_tol", frobenius_tol)):
        if not 0 < t < 1:
            raise ConfigError(f"{name} must be in (0, 1), got {t!r}.")
    if not isinstance(trace_matvecs, int) or trace_matvecs < 0:
        raise ConfigError(f"trace_matvecs must be an integer ≥ 0, got {trace_matvecs!r}.")
    dim = int(op.dim)
    if dim == 0:
        raise ConfigError("the operator has dimension 0; the model has no trainable parameters.")
    top_k, bottom_k = min(top_k, dim), min(bottom_k, dim)
    k_top = min(max(top_k, keep_top), dim)
    cap = default_max_iter(dim, max(top_k, bottom_k)) if max_iter is None else min(max_iter, dim)
    if cap < k_top:
        raise ConfigError(f"max_iter={max_iter} is smaller than the {k_top} eigenpairs asked for.")
    min_steps = min(cap, max(2 * max(top_k, bottom_k) + 2, min(slq_steps, dim), k_top))
    start_mv = int(op.matvecs)
    gen = make_generator(op.device, seed)
    z = draw_probes(gen, 1, dim, device=op.device, dtype=op.dtype)[0]
    keep = cap * dim <= KEEP_PRODUCTS_MAX
    lz = Lanczos(op, cap, seed=seed + 1, start=z, keep_products=keep)

    # 1. the eigenpair run (also SLQ run 1 and the deflation basis)
    with tracked(progress, f"Lanczos (top {top_k}, bottom {bottom_k})", cap) as task:
        while not lz.done:
            lz.step()
            task.advance()
            if lz.m < min_steps:
                continue
            scale = _scale(lz)
            if _converged(lz, "top", top_k, tol, scale) and _converged(
                lz, "bottom", bottom_k, tol, scale
            ):
                break
    m = lz.m
    scale = _scale(lz)
    top = _pairs(lz, op, "top", k_top, tol, scale)
    bottom = None
    if bottom_k > 0:
        bottom = _pairs(lz, op, "bottom", bottom_k, tol, scale)
    lanczos_mv = int(op.matvecs) - start_mv

    # 2. the other SLQ runs, whose starts double as residual probes
    q = lz.Q[:m]
    aq = lz.AQ[:m] if lz.AQ is not None else None
    starts = draw_probes(gen, slq_runs - 1, dim, device=op.device, dtype=op.dtype)
    firsts: list[torch.Tensor] = []
    tri = [lz.tridiagonal()]
    t0 = int(op.matvecs)
    if slq_runs > 1:
        tri += batched_lanczos(op, starts, min(slq_steps, dim), progress, first_products=firsts)
    slq_mv = int(op.matvecs) - t0
    density = density_from_tridiagonals(tri, matvecs=m + slq_mv)

    # 3. deflated trace and Frobenius norm
    d, e = lz.tridiagonal()
    exact_tr = float(d.sum())
    if aq is not None:
        exact_fro2 = float(aq.double().pow(2).sum())
    else:  # A Qᵀ = Qᵀ T + β_m q_{m+1} e_mᵀ
        last = 0.0 if math.isnan(lz.last_beta) else lz.last_beta
        exact_fro2 = float((d**2).sum() + 2 * (e**2).sum() + last**2)
    quad: list[torch.Tensor] = []
    sq: list[torch.Tensor] = []
    floor: list[torch.Tensor] = []

    def project(x: torch.Tensor) -> torch.Tensor:
        x = x - (x @ q.T) @ q
        return x - (x @ q.T) @ q

    def add(pg: torch.Tensor, apg: torch.Tensor) -> None:
        quad.append((pg * apg).sum(dim=1, dtype=torch.float64).cpu())
        sq.append(apg.pow(2).sum(dim=1, dtype=torch.float64).cpu())
        floor.append(project(apg).pow(2).sum(dim=1, dtype=torch.float64).cpu())

    full = m >= dim
    if not full and aq is not None and firsts:
        g = starts  # unnormalized Rademacher starts: A g = √dim · (A v₀)
        ag = firsts[0] * math.sqrt(dim)
        c = g @ q.T
        add(g - c @ q, ag - c @ aq)
    t1 = int(op.matvecs)

    def estimates() -> tuple[Estimate, Estimate]:
        if full or not quad:
            return (
                Estimate(exact_tr, 0.0, 0, "krylov-deflated"),
                Estimate(math.sqrt(max(exact_fro2, 0.0)), 0.0, 0, "krylov-deflated"),
            )
        tq, fq, bq = torch.cat(quad), torch.cat(sq), torch.cat(floor)
        p = tq.numel()
        mean, se = mean_and_stderr(tq)
        se = max(0.0 if math.isnan(se) else se, math.sqrt(2.0 * float(bq.mean()) / p))
        fmean, fse = mean_and_stderr(fq)
        fro2 = exact_fro2 + fmean
        fro = math.sqrt(max(fro2, 0.0))
        fse = 0.0 if math.isnan(fse) else fse
        return (
            Estimate(exact_tr + mean, se, p, "krylov-deflated"),
            Estimate(fro, fse / (2.0 * fro) if fro > 0 else 0.0, p, "krylov-deflated"),
        )

    def resolved(tr: Estimate, fro: Estimate) -> bool:
        if full:
            return True
        if tr.n < MIN_TRACE_PROBES:
            return False
        return tr.stderr <= trace_tol * abs(tr.mean) and fro.stderr <= frobenius_tol * fro.mean

    tr, fro = estimates()
    spent = 0
    with tracked(progress, "trace and Frobenius (deflated)", trace_matvecs) as task:
        while not full and not resolved(tr, fro) and spent < trace_matvecs:
            need = max(MIN_TRACE_PROBES - tr.n, 1)
            b = min(probe_batch_size(op, trace_matvecs - spent), trace_matvecs - spent)
            b = max(min(b, max(need, 4)), 1)
            g = project(draw_probes(gen, b, dim, device=op.device, dtype=op.dtype))
            add(g, op.matmat(g).to(dtype=op.dtype))
            spent += b
            task.advance(b)
            tr, fro = estimates()
    ok = resolved(tr, fro)
    note = None
    if not ok:
        rel = tr.stderr / abs(tr.mean) if tr.mean != 0 else math.inf
        frel = fro.stderr / fro.mean if fro.mean > 0 else math.inf
        what = (
            f"trace not resolved: relative standard error {rel:.0%} (target {trace_tol:.0%})"
            if rel > trace_tol
            else f"Frobenius norm not resolved: relative standard error {frel:.0%}"
            f" (target {frobenius_tol:.0%})"
        )
        note = f"{what} after {tr.n} residual probes; raise --trace-matvecs for a tighter value."
    matvecs = {
        "lanczos": lanczos_mv,
        "slq": slq_mv,
        "trace": int(op.matvecs) - t1,
        "total": int(op.matvecs) - start_mv,
    }
    return Spectrum(
        top=top,
        bottom=bottom,
        trace=tr,
        frobenius=fro,
        density=density,
        krylov_dim=m,
        trace_resolved=ok,
        trace_note=note,
        matvecs=matvecs,
        method="sweep",
    )
