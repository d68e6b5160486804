"""The ``connect`` run: paths between two checkpoints, written to a run directory.

``summary.json`` gets a ``connect`` section with one entry per path (``linear``,
``aligned``, ``curve``): its barrier, ``t_max``, and the loss and accuracy arrays;
``results.nc`` gets the same arrays on a ``t`` dimension, and a trained curve's bend is
saved as ``curve_control.pt`` (a flat tensor). With ``plane`` set, the loss on the plane
through θ_a, θ_b and the bend θ_c (:func:`curve_plane`) is stored in ``results.nc`` as a
``plane`` surface (alpha, beta) with the curve as its trajectory and A, B, θ_c as anchors,
so the surface figures and ``landscape render`` draw it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from landscape.basins.connect import Connectivity, CurveConfig, curve_point, mode_connectivity
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.io.rundir import RunDir, atomic_write, versions
from landscape.progress import Progress
from landscape.results import _json_float
from landscape.surface.directions import plane_directions
from landscape.surface.evaluate import evaluate_surface
from landscape.surface.grid import GridSpec, parse_grid
from landscape.surface.result import Surface

CONTROL_FILE = "curve_control.pt"


@dataclass(frozen=True)
class ConnectConfig:
    """Settings of a ``connect`` run.

    Attributes:
        points: t-grid size of every path.
        align: also evaluate the permutation-aligned straight path.
        curve: ``bezier``, ``polychain`` or ``None``.
        curve_steps: optimizer steps of the curve's bend.
        curve_lr: its learning rate (Adam).
        curve_batch_size: samples per curve step.
        curve_endpoint: the curve ends at the ``raw`` or ``aligned`` second model.
        split: split whose loss defines the barriers.
        repair: recompute BatchNorm statistics along paths (``None``: when there is BN).
        seed: seed of the matching and of the curve's t draws and minibatches.
        plane: grid of the loss surface on the plane through θ_a, θ_b and the curve's bend
            (e.g. ``"21x21"``; ``None``: no surface; needs a curve).
        plane_margin: the plane's range beyond the anchors and curve, as a fraction of
            their extent.
    """

    points: int = 25
    align: bool = True
    curve: str | None = None
    curve_steps: int = 500
    curve_lr: float = 1e-2
    curve_batch_size: int = 128
    curve_endpoint: str = "raw"
    split: str = "train"
    repair: bool | None = None
    seed: int = 0
    plane: str | None = None
    plane_margin: float = 0.25

    def __post_init__(self) -> None:
        if self.points < 2:
            raise ConfigError(f"--points must be at least 2, got {self.points}.")
        if self.split not in ("train", "test"):
            raise ConfigError(f"--split must be train or test, got {self.split!r}.")
        if self.curve_endpoint not in ("raw", "aligned"):
            raise ConfigError(
                f"--curve-endpoint must be raw or aligned, got {self.curve_endpoint!r}."
            )
        self.curve_config()  # validates the curve settings
        if self.plane is not None:
            if self.curve is None:
                raise ConfigError("--plane needs a curve; add --curve bezier or polychain.")
            if len(parse_grid(self.plane)) != 2:
                raise ConfigError(f"--plane takes a 2-D grid like 21x21, got {self.plane!r}.")
        if not self.plane_margin >= 0:
            raise ConfigError(f"the plane margin must be ≥ 0, got {self.plane_margin}.")

    def curve_config(self) -> CurveConfig | None:
        """The curve's training settings (``None`` without a curve)."""
        if self.curve is None:
            return None
        return CurveConfig(
            kind=self.curve,
            steps=self.curve_steps,
            lr=self.curve_lr,
            batch_size=self.curve_batch_size,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "points": self.points,
            "align": self.align,
            "curve": self.curve,
            "curve_steps": self.curve_steps,
            "curve_lr": self.curve_lr,
            "curve_batch_size": self.curve_batch_size,
            "curve_endpoint": self.curve_endpoint,
            "split": self.split,
            "repair": self.repair,
            "seed": self.seed,
            "plane": self.plane,
            "plane_margin": self.plane_margin,
        }


def curve_plane(
    space: ParamSpace,
    theta_a: torch.Tensor,
    control: torch.Tensor,
    theta_b: torch.Tensor,
    kind: str,
    *,
    grid: str | tuple[int, int] = "21x21",
    margin: float = 0.25,
    points: int = 101,
    repair: bool = False,
    progress: Progress | None = None,
) -> Surface:
    """Train loss on the plane through θ_a, θ_b and a curve's bend θ_c (Garipov et al. 2018).

    The plane of :func:`~landscape.surface.directions.plane_directions`: A at (0, 0), B at
    (1, 0), θ_c at its anchor coordinates, axes scaled by ‖θ_b − θ_a‖. Both curves lie in
    this plane, so the returned surface's ``trajectory`` is the curve itself (``points``
    values of t) and its ``anchors`` are A, B and θ_c. The range covers all of them with
    ``margin`` times their extent on every side.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> e = torch.eye(sp.dim)
        >>> s = curve_plane(sp, sp.theta0, sp.theta0 + e[1], sp.theta0 + e[0], "bezier", grid="5x4")
        >>> s.train_loss.shape, s.trajectory[50].round(3).tolist()
        ((5, 4), [0.25, 0.5])
    """
    a = theta_a.detach().to(space.device, space.dtype)
    b = theta_b.detach().to(space.device, space.dtype)
    c = control.detach().to(space.device, space.dtype)
    dirs = plane_directions(space, a, b, c)
    assert dirs.anchors is not None
    anchor = torch.tensor(dirs.anchors, dtype=torch.float64).T  # rows A, B, C
    ts = np.linspace(0.0, 1.0, points)
    curve = np.stack(
        [curve_point(kind, float(t), anchor[0], anchor[2], anchor[1]).numpy() for t in ts]
    )
    pts = np.concatenate([anchor.numpy(), curve])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = margin * float(max(hi - lo))
    shape = parse_grid(grid)
    if len(shape) != 2:
        raise ConfigError(f"the plane takes a 2-D grid like 21x21, got {grid!r}.")
    spec = GridSpec(
        shape, tuple((float(l_) - pad, float(h) + pad) for l_, h in zip(lo, hi, strict=True))
    )
    surf = evaluate_surface(
        space, dirs, spec, test=False, recompute_bn=repair, compile=False, progress=progress
    )
    info = dict(surf.info)
    info["curve"] = kind
    return dataclasses.replace(surf, trajectory=curve, info=info)


def plane_summary(surf: Surface) -> dict[str, Any]:
    """JSON facts of a curve plane: grid, ranges, anchors and the loss range on it."""
    assert surf.anchors is not None
    anchors = np.asarray(surf.anchors, dtype=np.float64)
    if anchors.shape[0] == 2:  # per axis → per point
        anchors = anchors.T
    loss = np.asarray(surf.train_loss, dtype=np.float64)
    finite = loss[np.isfinite(loss)]
    return {
        "grid": [int(len(a)) for a in surf.axes],
        "ranges": [[float(a[0]), float(a[-1])] for a in surf.axes],
        "anchors": {
            k: [float(v) for v in row]
            for k, row in zip(("a", "b", "control"), anchors, strict=True)
        },
        "min_loss": _json_float(finite.min()) if finite.size else None,
        "max_loss": _json_float(finite.max()) if finite.size else None,
    }


def connectivity_arrays(result: Connectivity) -> dict[str, Any]:
    """``xarray`` variables ``<path>_loss`` / ``<path>_accuracy`` on the ``t`` dimension."""
    out: dict[str, Any] = {}
    for name, path in result.paths().items():
        out[f"{name}_loss"] = (("t",), np.asarray(path.loss, dtype=np.float64))
        out[f"{name}_accuracy"] = (("t",), np.asarray(path.acc, dtype=np.float64))
    return out


def run_connect(
    space: ParamSpace,
    theta_b: torch.Tensor,
    run: RunDir,
    config: ConnectConfig | None = None,
    *,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], Connectivity]:
    """Evaluate the paths from ``space.theta0`` to ``theta_b`` and write them to ``run``.

    Args:
        space: the first model's parameter space (its data and loss define the barriers).
        theta_b: the second model's parameters (same layout).
        run: the run directory.
        config: run settings.
        progress: optional progress reporter.

    Returns:
        The merged summary and the typed result.

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> run = RunDir.create(tempfile.mkdtemp() + "/r", {})
        >>> s, _ = run_connect(sp, sp.theta0 * 0.5, run, ConnectConfig(points=5))
        >>> len(s["connect"]["linear"]["loss"]), "aligned" in s["connect"]["skipped"]
        (5, True)
    """
    import xarray as xr

    cfg = config or ConnectConfig()
    result = mode_connectivity(
        space,
        space.theta0,
        theta_b.detach().to(space.device, space.dtype),
        align=cfg.align,
        curve=cfg.curve_config(),
        curve_endpoint=cfg.curve_endpoint,
        points=cfg.points,
        split=cfg.split,
        repair=cfg.repair,
        seed=cfg.seed,
        progress=progress,
    )
    section = result.to_dict()
    section["config"] = cfg.to_dict()
    bundle = space.bundle
    top: dict[str, Any] = {
        "name": run.path.name,
        "seed": cfg.seed,
        "versions": versions(),
        "model": {
            "num_params": space.dim,
            **{k: bundle.provenance.get(k) for k in ("format", "sha256", "factory", "path")},
        },
        "data": bundle.data.describe(),
        "loss_function": bundle.loss.name,
        "connect": section,
    }
    summary = run.update_summary(top)
    ds = xr.Dataset(connectivity_arrays(result), coords={"t": result.linear.t})
    run.write_arrays(ds)
    if result.control is not None:
        control = result.control.detach().cpu().clone()
        atomic_write(run.path / CONTROL_FILE, lambda p: torch.save(control, p))
    if cfg.plane is not None and result.control is not None and cfg.curve is not None:
        end = (
            result.alignment.theta
            if result.curve_endpoint == "aligned" and result.alignment is not None
            else theta_b
        )
        surf = curve_plane(
            space,
            space.theta0,
            result.control,
            end,
            cfg.curve,
            grid=cfg.plane,
            margin=cfg.plane_margin,
            repair=result.repaired,
            progress=progress,
        )
        run.write_arrays(surf.to_dataset())
        summary = run.update_summary({"connect": {"plane": plane_summary(surf)}})
    return summary, result
