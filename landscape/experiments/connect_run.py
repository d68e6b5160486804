"""The ``connect`` run: paths between two checkpoints, written to a run directory.

``summary.json`` gets a ``connect`` section with one entry per path (``linear``,
``aligned``, ``curve``): its barrier, ``t_max``, and the loss and accuracy arrays;
``results.nc`` gets the same arrays on a ``t`` dimension, and a trained curve's bend is
saved as ``curve_control.pt`` (a flat tensor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from landscape.basins.connect import Connectivity, CurveConfig, mode_connectivity
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.io.rundir import RunDir, atomic_write, versions
from landscape.progress import Progress

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
    return summary, result
