"""Suite cases: HVP, top-5 eigenvalues, trace and a 2D surface against the anchors.

Setups: (a) ``digits_cnn`` — the small digits CNN on 1000 digits on the CPU; (b)
``resnet20`` / ``resnet56`` — CIFAR-style ResNets on CIFAR-shaped synthetic data on a
GPU (10k images for the Hessian cases, 50k for the 51×51 ResNet-56 surface). Anchors:
PyHessian (HVP, power iteration, Hutchinson), loss-landscapes (``random_plane``) and a
plain loop over grid points. ``quick`` shrinks every size so the suite runs in seconds.

Each case function takes ``(setup, quick, device)`` and returns a list of records.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.models import cifar_like, resnet20, resnet56
from bench.suite import record, rel_diff, sync, timed
from landscape.engine import CurvatureOperator, ParamSpace
from landscape.io.data import DataSource, load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import digits_cnn

GPU_SETUPS = ("resnet20", "resnet56")
CPU_SETUPS = ("digits_cnn",)


@dataclass
class Built:
    """A benchmark problem: our parameter space and the anchor's model and batches."""

    name: str
    space: ParamSpace
    model: nn.Module
    batches: list[tuple[torch.Tensor, torch.Tensor]]
    device: torch.device
    n: int

    @property
    def size(self) -> str:
        return f"{self.name}, {self.n} samples, {self.space.dim} params"


def _data(setup: str, quick: bool, purpose: str) -> DataSource:
    if setup == "digits_cnn":
        n = 100 if quick else 1000
        return load_data("digits", max_samples=n, batch_size=n, test_fraction=0.0, seed=0)
    if quick:
        return cifar_like(16, batch_size=16)
    n = 50_000 if purpose == "surface" else 10_000
    return cifar_like(n, batch_size=2500 if purpose == "surface" else 1000)


def build(setup: str, quick: bool, device: str, purpose: str = "hessian") -> Built:
    """Model, data and parameter space for a setup, on ``device`` (float32)."""
    torch.manual_seed(0)
    factories = {"digits_cnn": digits_cnn, "resnet20": resnet20, "resnet56": resnet56}
    if setup not in factories:
        raise ValueError(f"unknown setup {setup!r}; use one of {', '.join(factories)}")
    model = digits_cnn(4) if quick and setup == "digits_cnn" else factories[setup]()
    data = _data(setup, quick, purpose)
    bundle = ModelBundle.from_module(model, data, device=torch.device(device))
    anchor_model = copy.deepcopy(bundle.module).eval()
    batches = list(data.chunks("train"))
    return Built(setup, ParamSpace(bundle), anchor_model, batches, bundle.device, data.num_train)


def _pyhessian(b: Built) -> Any:
    from pyhessian import hessian

    return hessian(
        b.model, nn.CrossEntropyLoss(), dataloader=b.batches, cuda=b.device.type == "cuda"
    )


def _as_list(b: Built, v: torch.Tensor) -> list[torch.Tensor]:
    return [v[i.slice].view(i.shape).clone() for i in b.space.infos]


def _gpu_target(b: Built, value: float) -> float | None:
    return value if b.device.type == "cuda" and b.name in GPU_SETUPS else None


def hvp(setup: str, quick: bool, device: str) -> list[dict[str, Any]]:
    """One Hessian-vector product over the data: ours vs PyHessian's dataloader HVP."""
    b = build(setup, quick, device)
    op = CurvatureOperator(b.space)
    v = torch.randn(b.space.dim, generator=torch.Generator().manual_seed(0)).to(b.device)
    reps = 1 if quick else 3
    op.matvec(v)  # warm-up (and the cached graph on the CPU)
    ours, t_ours = timed(lambda: op.matvec(v), b.device, reps)
    h = _pyhessian(b)
    vl = _as_list(b, v)
    h.dataloader_hv_product(vl)
    (_, hv), t_anchor = timed(lambda: h.dataloader_hv_product(vl), b.device, reps)
    theirs = torch.cat([x.reshape(-1) for x in hv])
    return [
        record(
            "hvp",
            what="Hessian-vector product",
            size=b.size,
            device=str(b.device),
            ours_s=t_ours,
            anchor="pyhessian",
            anchor_s=t_anchor,
            disagreement=rel_diff(ours, theirs),
            strategy=op.strategy,
            target_ratio=_gpu_target(b, 5.0),
        )
    ]


def _warm_up(b: Built, h: Any) -> None:
    """One untimed product each (kernel selection, lazy initialisation) before timing."""
    v = torch.randn(b.space.dim, generator=torch.Generator().manual_seed(9)).to(b.device)
    CurvatureOperator(b.space).matvec(v)
    h.dataloader_hv_product(_as_list(b, v))
    sync(b.device)


def _count_hvps(h: Any) -> list[int]:
    count = [0]
    inner = h.dataloader_hv_product

    def counted(v: Any) -> Any:
        count[0] += 1
        return inner(v)

    h.dataloader_hv_product = counted
    return count


def top5(setup: str, quick: bool, device: str) -> list[dict[str, Any]]:
    """Top-5 Hessian eigenvalues: our Lanczos vs PyHessian's power iteration (tol 1e-3)."""
    from landscape.hessian import top_eigenpairs

    b = build(setup, quick, device)
    h = _pyhessian(b)
    _warm_up(b, h)
    op = CurvatureOperator(b.space)
    eig, t_ours = timed(lambda: top_eigenpairs(op, 5, tol=1e-3, seed=0), b.device)
    count = _count_hvps(h)
    torch.manual_seed(0)
    max_iter = 20 if quick else 100
    (vals, _), t_anchor = timed(
        lambda: h.eigenvalues(maxIter=max_iter, tol=1e-3, top_n=5), b.device
    )
    ours_vals = sorted((float(x) for x in eig.values), reverse=True)
    theirs = sorted((float(x) for x in vals), reverse=True)
    return [
        record(
            "top5",
            what="top-5 Hessian eigenvalues",
            size=b.size,
            device=str(b.device),
            ours_s=t_ours,
            anchor="pyhessian",
            anchor_s=t_anchor,
            disagreement=rel_diff(ours_vals, theirs),
            ours_values=ours_vals,
            anchor_values=theirs,
            ours_matvecs=op.matvecs,
            anchor_matvecs=count[0],
            ours_converged=bool(eig.all_converged),
            target_ratio=_gpu_target(b, 10.0),
        )
    ]


def trace(setup: str, quick: bool, device: str) -> list[dict[str, Any]]:
    """Hessian trace at equal accuracy: PyHessian's Hutchinson with its defaults, then our
    Hutch++ with the smallest budget whose standard error is no larger than PyHessian's.

    PyHessian stops when the running mean changes by less than ``tol`` (1e-3) between
    probes, which says nothing about its error; its standard error is that of its probe
    samples. Both standard errors are printed. The digits CNN here is untrained: its
    Hessian is indefinite, with a trace that is small against its Frobenius norm, so every
    estimator needs many probes for a small relative error (``ours_relative_stderr``).
    """
    import math

    import numpy as np

    from landscape.hessian import hutchpp_trace

    b = build(setup, quick, device)
    h = _pyhessian(b)
    _warm_up(b, h)
    count = _count_hvps(h)
    torch.manual_seed(0)
    samples, t_anchor = timed(lambda: h.trace(maxIter=5 if quick else 100, tol=1e-3), b.device)
    arr = np.asarray(samples, dtype=np.float64)
    theirs = float(arr.mean())
    theirs_se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else math.inf
    budget, tried, cap = 6, [], 60 if quick else 1500
    while True:
        op = CurvatureOperator(b.space)
        est = hutchpp_trace(op, budget, seed=0)
        tried.append(budget)
        if est.stderr <= theirs_se or budget >= cap:
            break
        budget = 3 * math.ceil(1.5 * budget / 3)
    op = CurvatureOperator(b.space)
    est, t_ours = timed(lambda: hutchpp_trace(op, budget, seed=0), b.device)
    return [
        record(
            "trace",
            what="Hessian trace at equal standard error",
            size=b.size,
            device=str(b.device),
            ours_s=t_ours,
            anchor="pyhessian",
            anchor_s=t_anchor,
            disagreement=abs(est.mean - theirs) / max(abs(est.mean), 1e-300),
            ours_value=est.mean,
            ours_stderr=est.stderr,
            ours_relative_stderr=est.stderr / max(abs(est.mean), 1e-300),
            anchor_value=theirs,
            anchor_stderr=theirs_se,
            equal_accuracy=bool(est.stderr <= theirs_se),
            within_joint_2_stderr=bool(
                abs(est.mean - theirs) <= 2 * math.hypot(est.stderr, theirs_se)
            ),
            ours_matvecs=op.matvecs,
            anchor_matvecs=count[0],
            budgets_tried=tried,
        )
    ]


# -- surfaces ----------------------------------------------------------------------------
def _directions(space: ParamSpace, seed: int = 0) -> torch.Tensor:
    """Two filter-normalized random directions (weights per row/filter; others zero)."""
    g = torch.Generator().manual_seed(seed)
    theta = space.theta0.detach().cpu()
    dirs = torch.zeros(2, space.dim, dtype=theta.dtype)
    for k in range(2):
        d = torch.randn(space.dim, generator=g, dtype=theta.dtype)
        for info in space.infos:
            if info.role != "weight":
                d[info.slice] = 0
                continue
            w = theta[info.slice].view(info.shape[0], -1)
            dv = d[info.slice].view(info.shape[0], -1)
            dv.mul_(w.norm(dim=1, keepdim=True) / dv.norm(dim=1, keepdim=True).clamp_min(1e-12))
        dirs[k] = d
    return dirs.to(space.device)


def _grid(points_per_axis: int) -> torch.Tensor:
    a = torch.linspace(-1.0, 1.0, points_per_axis, dtype=torch.float64)
    return torch.cartesian_prod(a, a)


def _surface_setup(b: Built, side: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Directions, grid points and our evaluation (the surface package when present)."""
    try:
        from landscape.surface import GridSpec, evaluate_surface, random_directions
    except ImportError:
        from landscape.surface.sharded import sharded_grid_eval

        dirs_t, pts = _directions(b.space), _grid(side)

        def engine_loop() -> tuple[Any, str, dict[str, Any]]:
            vals = sharded_grid_eval(b.space, pts, dirs_t, splits=("train",))
            assert vals is not None
            return vals.column("train_loss"), "engine.sharded_grid_eval", {}

        return dirs_t, pts, engine_loop
    dirs = random_directions(b.space, 2, normalization="filter", ignore="biasbn", seed=0)
    spec = GridSpec.parse(f"{side}x{side}", "-1:1")
    gpu = b.device.type == "cuda"

    def ours() -> tuple[Any, str, dict[str, Any]]:
        surf = evaluate_surface(b.space, dirs, spec, test=False, bf16=gpu)
        extra = {"surface_info": surf.info, "bf16_error": surf.bf16_error}
        return surf.train_loss.reshape(-1), "landscape.surface.evaluate_surface", extra

    pts = torch.as_tensor(spec.points())
    return torch.stack([v.detach() for v in dirs.vectors]), pts, ours


@torch.no_grad()
def _plain_loop(b: Built, dirs: torch.Tensor, pts: torch.Tensor) -> list[float]:
    """The anchor everyone writes: set the weights, loop over batches, sum the loss."""
    model = b.model
    params = [p for p in model.parameters() if p.requires_grad]
    theta0 = torch.nn.utils.parameters_to_vector(params).detach().clone()
    crit = nn.CrossEntropyLoss(reduction="sum")
    out = []
    for c in pts.to(device=b.device, dtype=theta0.dtype):
        torch.nn.utils.vector_to_parameters(theta0 + c @ dirs.to(theta0.dtype), params)
        total = 0.0
        for x, y in b.batches:
            total += float(crit(model(x.to(b.device)), y.to(b.device)))
        out.append(total / b.n)
    torch.nn.utils.vector_to_parameters(theta0, params)
    return out


def _loss_landscapes(b: Built, steps: int) -> tuple[float, str]:
    import loss_landscapes
    from loss_landscapes.metrics.metric import Metric

    class FullLoss(Metric):
        def __init__(self) -> None:
            super().__init__()
            self.crit = nn.CrossEntropyLoss(reduction="sum")

        def __call__(self, model_wrapper: Any) -> float:
            total = 0.0
            with torch.no_grad():
                for x, y in b.batches:
                    total += float(self.crit(model_wrapper.forward(x.to(b.device)), y.to(b.device)))
            return total / b.n

    for norm in ("filter", "layer"):
        torch.manual_seed(0)

        def plane(norm: str = norm) -> Any:
            return loss_landscapes.random_plane(
                b.model,
                FullLoss(),
                distance=1,
                steps=steps,
                normalization=norm,
                deepcopy_model=True,
            )

        try:
            _, t = timed(plane, b.device)
        except ZeroDivisionError:  # its filter normalization divides by zero on 1-D tensors
            continue
        return t, norm
    raise RuntimeError("loss-landscapes random_plane failed with filter and layer normalization")


def surface(setup: str, quick: bool, device: str) -> list[dict[str, Any]]:
    """A 2D filter-normalized loss surface: ours vs a plain loop and loss-landscapes.

    Full size: 21×21 for the digits CNN, 51×51 for the ResNets (ResNet-56 over 50k
    images: the ≤ 5 minute target on one H100). Anchors that would take too long are
    timed on a subset of points and extrapolated (``anchor_points`` says how many).
    ``ours_s`` (and so ``ratio``) is our whole ``evaluate_surface`` call at its defaults,
    run first in the process: evaluator set-up, warm-up and any compilation included;
    ``ours_s_per_point`` is its measured time per point.
    """
    b = build(setup, quick, device, purpose="surface")
    side = 5 if quick else (21 if setup == "digits_cnn" else 51)
    dirs, pts, ours_fn = _surface_setup(b, side)
    (ours, how, extra), t_ours = timed(ours_fn, b.device)
    n_anchor = len(pts) if quick or setup == "digits_cnn" else 20
    sub = torch.linspace(0, len(pts) - 1, n_anchor).round().long()
    t0 = time.perf_counter()
    theirs = _plain_loop(b, dirs, pts[sub])
    sync(b.device)
    t_loop = (time.perf_counter() - t0) * len(pts) / n_anchor
    size = f"{b.size}, {side}x{side} grid"
    target = 300.0 if b.device.type == "cuda" and setup == "resnet56" else None
    recs = [
        record(
            "surface",
            what="2D loss surface",
            size=size,
            device=str(b.device),
            ours_s=t_ours,
            anchor="plain loop",
            anchor_s=t_loop,
            anchor_points=n_anchor,
            disagreement=rel_diff(torch.as_tensor(ours)[sub], theirs),
            max_abs_diff=float(
                (torch.as_tensor(ours)[sub] - torch.as_tensor(theirs, dtype=torch.float64))
                .abs()
                .max()
            ),
            ours_s_per_point=t_ours / len(pts),
            ours_impl=how,
            **extra,
            target_seconds=target,
            meets_target=None if target is None else bool(t_ours <= target),
        )
    ]
    ll_steps = side if quick or setup == "digits_cnn" else 5
    t_ll, ll_norm = _loss_landscapes(b, ll_steps)
    t_ll *= (side * side) / (ll_steps * ll_steps)
    recs.append(
        record(
            "surface",
            what="2D loss surface",
            size=size,
            device=str(b.device),
            ours_s=t_ours,
            anchor="loss-landscapes",
            anchor_s=t_ll,
            anchor_points=ll_steps * ll_steps,
            disagreement=None,
            note=f"different random directions ({ll_norm}-normalized): timing only",
            ours_impl=how,
        )
    )
    return recs


def surface_side(which: str, setup: str, quick: bool, device: str) -> float:
    """Wall seconds of one side of the surface case, alone in this process.

    ``which`` is ``ours``, ``plain`` or ``loss_landscapes``; the time covers the whole
    call (set-up, warm-up, every grid point), as a user running only that tool waits.
    """
    b = build(setup, quick, device, purpose="surface")
    side = 5 if quick else (21 if setup == "digits_cnn" else 51)
    if which == "loss_landscapes":
        return _loss_landscapes(b, side)[0]
    dirs, pts, ours_fn = _surface_setup(b, side)
    if which == "ours":
        return timed(ours_fn, b.device)[1]
    t0 = time.perf_counter()
    _plain_loop(b, dirs, pts)
    sync(b.device)
    return time.perf_counter() - t0


def _own_process(which: str, setup: str, quick: bool, device: str) -> float:
    """Run :func:`surface_side` in a fresh Python process and return its seconds."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import json; from bench.cases import surface_side; "
        f"print(json.dumps(surface_side({which!r}, {setup!r}, {quick!r}, {device!r})))"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def surface_fresh(setup: str, quick: bool, device: str) -> list[dict[str, Any]]:
    """The surface case with every side alone in a fresh process, run back to back.

    In one process whoever runs first pays the allocator's first-touch page faults and
    later code profits from the memory it leaves behind; a user runs one tool per
    command, so this is the comparison of what each user waits for. Values are checked
    for agreement by :func:`surface`.
    """
    b = build(setup, quick, device, purpose="surface")
    side = 5 if quick else (21 if setup == "digits_cnn" else 51)
    size = f"{b.size}, {side}x{side} grid"
    t_ours = _own_process("ours", setup, quick, device)
    recs = []
    for which, name in (("plain", "plain loop"), ("loss_landscapes", "loss-landscapes")):
        recs.append(
            record(
                "surface_fresh",
                what="2D loss surface, each side in its own process",
                size=size,
                device=str(b.device),
                ours_s=t_ours,
                anchor=f"{name} (own process)",
                anchor_s=_own_process(which, setup, quick, device),
                disagreement=None,
                note="timing only; values agree as in the surface case",
            )
        )
    return recs


CASES = {
    "hvp": hvp,
    "top5": top5,
    "trace": trace,
    "surface": surface,
    "surface_fresh": surface_fresh,
}


def setups_for(quick: bool, gpu: bool) -> list[str]:
    """Setups to run: the CPU digits CNN always; the ResNets when there is a GPU.

    ``quick`` uses a narrow digits CNN on 100 digits and, on a GPU, ResNet-20 on 16 images.
    """
    if gpu:
        return [*CPU_SETUPS, "resnet20"] if quick else [*CPU_SETUPS, *GPU_SETUPS]
    return list(CPU_SETUPS)


def device_for(setup: str, gpu: bool) -> str:
    """(a) runs on the CPU; (b) on the GPU when there is one."""
    return "cuda" if gpu and setup in GPU_SETUPS else "cpu"
