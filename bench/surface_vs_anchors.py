"""Loss-surface speed and agreement: landscape vs loss_landscapes vs a plain Li et al. loop.

One process, one model, one data set, the same two filter-normalized directions for all
three, the same grid points:

* ours: ``landscape.surface.evaluate_points`` at the default settings (CPU: the fused
  eager forward, BatchNorm folded into the convolutions, channels_last, the first
  convolution as one GEMM on cached patches; GPU: vmap over batches of points);
* ``loss_landscapes.random_plane`` (PyPI ``loss-landscapes``), fed our directions by
  replacing its random generators, with ``normalization=None``;
* a plain loop in the style of Li et al.'s ``plot_surface.py``: ``p.data.copy_(θ + x·d1 +
  y·d2)`` then the loss under ``no_grad``, row-major.

loss_landscapes steps its grid with in-place additions from ``θ − (steps/2)(s1 + s2)``; it
never visits θ itself (offsets are ``i − steps/2``), and every odd column is generated in
reverse after an even column that ended one step further, so even columns sit one step
higher along d2 than odd ones (a zig-zag). We reconstruct its true coordinates and give
those same points to ours and to the plain loop, so all three values are compared point by
point; ``loss_landscapes_zigzag_error`` shows how far its array is from the grid it claims.

The headline ratios (``ratio_*`` and ``seconds_total``) are whole calls: ours is the
first call in the process, timed from building the evaluator to the last value, so any
warm-up or compilation is inside it; each anchor is its fastest of ``--repeats`` runs
(after ours, so they start warm). ``per_point`` holds warm per-point figures beside
them. Agreement is reported as the largest relative and absolute differences from the
plain loop on the very same points.

Run: ``python bench/surface_vs_anchors.py`` (11×11 quick) or ``--full`` (21×21);
``--device cuda --model resnet`` measures a GPU on CIFAR-shaped synthetic data.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.engine import ParamSpace
from landscape.io.data import DataSource, load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import digits_cnn
from landscape.surface import (
    GridSpec,
    PointEvaluator,
    evaluate_points,
    evaluate_surface,
    random_directions,
)
from landscape.training import TrainConfig, train


# -- models and data ----------------------------------------------------------------------
class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(out)) + self.short(x))


class ResNetSmall(nn.Module):
    """A CIFAR-shaped ResNet (16-32-64 channels, one block per stage, ~75k parameters)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        self.layers = nn.Sequential(_Block(16, 16, 1), _Block(16, 32, 2), _Block(32, 64, 2))
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = self.layers(x)
        return self.head(x.mean(dim=(2, 3)))


def _setup(args: argparse.Namespace) -> tuple[nn.Module, DataSource, dict[str, Any]]:
    torch.manual_seed(0)
    if args.model == "digits":
        data = load_data("digits", test_fraction=0.0, batch_size=4096)
        model = digits_cnn()
        hist = train(model, data, TrainConfig(epochs=args.epochs, lr=0.05, seed=0))
        info = {"model": "digits_cnn", "train_loss": hist.train_loss[-1]}
    else:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(args.samples, 3, 32, 32, generator=g)
        w = torch.randn(3 * 32 * 32, 10, generator=g)
        y = (x.flatten(1) @ w).argmax(1)
        data = DataSource("synthetic-cifar", x, y, batch_size=args.samples)
        model = ResNetSmall()
        info = {"model": "resnet_small (untrained)"}
    model.eval()
    info["num_params"] = sum(p.numel() for p in model.parameters())
    info["num_samples"] = data.num_train
    return model, data, info


# -- loss_landscapes ------------------------------------------------------------------------
def _ll_coordinates(steps: int, h1: float, h2: float) -> np.ndarray:
    """The points loss_landscapes.random_plane really evaluates, as ``[i, j] -> (a, b)``."""
    pts = np.zeros((steps, steps, 2))
    for i in range(steps):
        for j in range(steps):
            pts[i, j, 0] = (i - steps / 2) * h1
            # even columns step before evaluating (offset j+1); odd ones are built in
            # reverse after stepping back (offset j)
            pts[i, j, 1] = ((j + 1) if i % 2 == 0 else j) * h2 - (steps / 2) * h2
    return pts


def _run_loss_landscapes(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    d1: list[torch.Tensor],
    d2: list[torch.Tensor],
    distance: float,
    steps: int,
) -> tuple[np.ndarray, float]:
    import loss_landscapes
    import loss_landscapes.main as llmain
    from loss_landscapes.metrics import Loss
    from loss_landscapes.model_interface.model_parameters import ModelParameters

    saved = (llmain.rand_u_like, llmain.orthogonal_to)
    llmain.rand_u_like = lambda _ex: ModelParameters([t.clone() for t in d1])
    llmain.orthogonal_to = lambda _v: ModelParameters([t.clone() for t in d2])
    try:
        metric = Loss(nn.CrossEntropyLoss(), x, y)
        t0 = time.perf_counter()
        vals = loss_landscapes.random_plane(
            model, metric, distance=distance, steps=steps, normalization=None, deepcopy_model=True
        )
        if x.is_cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    finally:
        llmain.rand_u_like, llmain.orthogonal_to = saved
    return np.asarray(vals, dtype=np.float64), dt


# -- the plain Li et al. loop ---------------------------------------------------------------
def _run_plain(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    d1: list[torch.Tensor],
    d2: list[torch.Tensor],
    coords: np.ndarray,
) -> tuple[np.ndarray, float]:
    net = copy.deepcopy(model).eval()
    params = list(net.parameters())
    base = [p.detach().clone() for p in params]
    crit = nn.CrossEntropyLoss()
    out = np.zeros(coords.shape[:-1])
    t0 = time.perf_counter()
    for idx in np.ndindex(*coords.shape[:-1]):
        a, b = (float(c) for c in coords[idx])
        for p, w, u, v in zip(params, base, d1, d2, strict=True):
            p.data.copy_(w + a * u + b * v)
        with torch.no_grad():
            out[idx] = float(crit(net(x), y))
    dt = time.perf_counter() - t0
    return out, dt


def _finite(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats as the strings "nan", "inf", "-inf"."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-12)))


def _abs(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[ok] - b[ok])))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="21x21 instead of 11x11")
    ap.add_argument("--steps", type=int, default=None, help="points per axis")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", choices=("digits", "resnet"), default=None)
    ap.add_argument("--samples", type=int, default=10000, help="resnet: synthetic samples")
    ap.add_argument("--epochs", type=int, default=3, help="digits: training epochs")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="ours: compile='auto' (the default), True or False",
    )
    ap.add_argument("--points-per-batch", type=int, default=16, help="GPU vmap batch")
    ap.add_argument("--bf16", action="store_true", help="GPU: bf16 autocast for ours")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats (min is kept)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model is None:
        args.model = "resnet" if args.device.startswith("cuda") else "digits"
    steps = args.steps or (21 if args.full else 11)
    dev = torch.device(args.device)

    model, data, info = _setup(args)
    model = model.to(dev)
    bundle = ModelBundle.from_module(model, data)
    space = ParamSpace(bundle)
    dirs = random_directions(space, 2, normalization="filter", ignore="biasbn", seed=0)
    d1 = [t.clone() for t in space.unflatten(dirs.vectors[0]).values()]
    d2 = [t.clone() for t in space.unflatten(dirs.vectors[1]).values()]
    assert [n for n, _ in model.named_parameters()] == space.names
    x = bundle.to_device(data.x_train)
    y = bundle.to_device(data.y_train)

    # loss_landscapes scales each direction to ‖θ‖/(distance·steps); pick distance so that
    # its step is our grid's step h = 2/(steps-1) in units of our directions.
    h = 2.0 / (steps - 1)
    theta_norm = float(space.theta0.double().norm())
    n1 = float(dirs.vectors[0].double().norm())
    n2 = float(dirs.vectors[1].double().norm())
    distance = theta_norm / (steps * n1 * h)
    h1 = theta_norm / (distance * steps * n1)
    h2 = theta_norm / (distance * steps * n2)
    ll_pts = _ll_coordinates(steps, h1, h2)
    flat_pts = ll_pts.reshape(-1, 2)
    npts = flat_pts.shape[0]

    # ours, the whole call as a user makes it (evaluator, warm-up, compilation included)
    cpu = dev.type == "cpu"
    compile_opt: bool | str = {"auto": "auto", "on": True, "off": False}[args.compile]
    opts: dict[str, Any] = {"compile": compile_opt, "chunk_size": data.num_train}
    if args.bf16:
        opts["bf16"] = True
    t0 = time.perf_counter()
    whole = evaluate_points(space, dirs, flat_pts, test=False, **opts)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    whole_call = time.perf_counter() - t0
    ours = whole["train_loss"].reshape(steps, steps)

    # warm per-point figures (the evaluator reused, its warm-up outside the timing)
    t0 = time.perf_counter()
    ev = PointEvaluator(space, dirs, splits=("train",), **opts)
    ev.evaluate(flat_pts[: (1 if cpu else args.points_per_batch)])
    if dev.type == "cuda":
        torch.cuda.synchronize()
    warmup = time.perf_counter() - t0
    ours_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        if cpu:
            ev.evaluate(flat_pts)
        else:
            for i in range(0, npts, args.points_per_batch):
                ev.evaluate(flat_pts[i : i + args.points_per_batch])
        if dev.type == "cuda":
            torch.cuda.synchronize()
        ours_times.append(time.perf_counter() - t0)

    # our full surface call on our own symmetric grid (centre included), warm
    spec = GridSpec.parse(f"{steps}x{steps}", "-1:1")
    t0 = time.perf_counter()
    surf = evaluate_surface(
        space,
        dirs,
        spec,
        test=False,
        points_per_batch=None if cpu else args.points_per_batch,
        **opts,
    )
    surface_seconds = time.perf_counter() - t0

    ll_times, plain_times = [], []
    ll_vals = plain = None
    for _ in range(args.repeats):
        ll_vals, dt = _run_loss_landscapes(model, x, y, d1, d2, distance, steps)
        ll_times.append(dt)
        plain, dt = _run_plain(model, x, y, d1, d2, ll_pts)
        plain_times.append(dt)
    assert ours is not None and ll_vals is not None and plain is not None

    # what loss_landscapes' array claims: one beta offset for every column
    claimed = ll_pts.copy()
    claimed[:, :, 1] = claimed[0, :, 1][None, :]
    claimed_plain, _ = _run_plain(model, x, y, d1, d2, claimed)

    per = {
        "ours": min(ours_times) / npts,
        "loss_landscapes": min(ll_times) / npts,
        "plain_loop": min(plain_times) / npts,
    }
    totals = {
        "ours": whole_call,
        "loss_landscapes": min(ll_times),
        "plain_loop": min(plain_times),
    }
    result: dict[str, Any] = {
        "benchmark": "surface_vs_anchors",
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        **info,
        "grid": f"{steps}x{steps}",
        "points": npts,
        "ours_path": {
            "method": ev.method,
            "compiled": ev.compiled,
            "first_layer_trick": ev.first is not None,
            "fused": ev.fused is not None,
            "bf16": args.bf16,
            "compile_option": args.compile,
        },
        "ratio_loss_landscapes_over_ours": round(totals["loss_landscapes"] / whole_call, 3),
        "ratio_plain_loop_over_ours": round(totals["plain_loop"] / whole_call, 3),
        "per_point": {
            "seconds": {k: round(v, 6) for k, v in per.items()},
            "ours_warmup_seconds": round(warmup, 3),
            "ratio_loss_landscapes_over_ours": round(per["loss_landscapes"] / per["ours"], 3),
            "ratio_plain_loop_over_ours": round(per["plain_loop"] / per["ours"], 3),
        },
        "ours_surface_call": {
            "grid": spec.label,
            "seconds": round(surface_seconds, 3),
            "seconds_per_point": round(surface_seconds / spec.size, 6),
            "compiled": surf.info["compiled"],
            "center_loss": surf.center_loss,
        },
        "max_rel_disagreement": {
            "ours_vs_plain_loop": _rel(ours, plain),
            "loss_landscapes_vs_plain_loop": _rel(ll_vals, plain),
            "loss_landscapes_zigzag_error": _rel(ll_vals, claimed_plain),
        },
        "max_abs_diff": {
            "ours_vs_plain_loop": _abs(ours, plain),
            "loss_landscapes_vs_plain_loop": _abs(ll_vals, plain),
        },
        "seconds_total": {k: round(v, 3) for k, v in totals.items()},
    }
    if args.bf16 and surf.bf16_error is not None:
        result["surface_bf16_error"] = surf.bf16_error
    result["target_met"] = bool(
        result["ratio_loss_landscapes_over_ours"] >= 3.0
        and result["max_rel_disagreement"]["ours_vs_plain_loop"] <= 1e-5
    )
    print(json.dumps(_finite(result), indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
