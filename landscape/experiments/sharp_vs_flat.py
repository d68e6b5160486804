"""Sharp vs flat minima: train one model two ways, then compare their flatness metrics.

The preset ``configs/sharp_vs_flat.toml`` trains a small ReLU MLP on digits with
large-batch, small-learning-rate SGD and with small-batch, larger-learning-rate SGD until
the same training loss (Keskar et al. 2017 predict the first lands in a sharper minimum),
and measures both with :func:`landscape.metrics.compute_metrics` for several seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from landscape.engine import ParamSpace
from landscape.errors import ConfigError
from landscape.io.checkpoint import build_from_factory
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle, parse_dtype
from landscape.io.presets import load_preset
from landscape.metrics import MetricsReport, compute_metrics
from landscape.progress import Progress, tracked
from landscape.training import TrainConfig, train

PRESET = "sharp_vs_flat"


@dataclass(frozen=True)
class RunResult:
    """One trained model and its metrics.

    Attributes:
        name: the run's name in the config (``sharp``, ``flat``).
        batch_size: training batch size.
        lr: learning rate.
        epochs_run: epochs until the target loss (or the cap).
        train_loss: final training loss (training dtype).
        grad_norm: ``‖∇L(θ)‖`` at the end: how far from a stationary point it stopped.
        metrics: the metrics report.
    """

    name: str
    batch_size: int
    lr: float
    epochs_run: int
    train_loss: float
    grad_norm: float
    metrics: MetricsReport

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "name": self.name,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "epochs_run": self.epochs_run,
            "train_loss": self.train_loss,
            "grad_norm": self.grad_norm,
            "metrics": self.metrics.to_dict(),
        }


@dataclass(frozen=True)
class SeedResult:
    """All runs of one seed.

    Attributes:
        seed: seed of initialization, batch order and metric probes.
        runs: run name → :class:`RunResult`.
        expected_sharper: the run expected to be sharper.
    """

    seed: int
    runs: Mapping[str, RunResult] = field(default_factory=dict)
    expected_sharper: str = "sharp"

    def ranked_as_expected(self, metric: str) -> bool:
        """Whether ``metric`` is largest for the run expected to be sharpest."""
        vals = {k: r.metrics.value(metric) for k, r in self.runs.items()}
        best = max(vals, key=lambda k: vals[k])
        return best == self.expected_sharper

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "seed": self.seed,
            "expected_sharper": self.expected_sharper,
            "runs": {k: r.to_dict() for k, r in self.runs.items()},
        }


def load_config(config_path_or_dict: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read and check a sharp-vs-flat configuration (preset name, TOML path or dict).

    Example:
        >>> cfg = load_config("sharp_vs_flat")
        >>> [r["name"] for r in cfg["runs"]]
        ['sharp', 'flat']
    """
    if isinstance(config_path_or_dict, Mapping):
        cfg = dict(config_path_or_dict)
    else:
        cfg = load_preset(str(config_path_or_dict))
    for key in ("data", "model", "train", "runs", "metrics"):
        if key not in cfg:
            raise ConfigError(
                f"sharp-vs-flat config has no [{key}] section; see configs/{PRESET}.toml."
            )
    runs = cfg["runs"]
    if not isinstance(runs, list) or len(runs) < 2:
        raise ConfigError("sharp-vs-flat config needs at least two [[runs]] to compare.")
    names = []
    for r in runs:
        for k in ("name", "batch_size", "lr"):
            if k not in r:
                raise ConfigError(f"every [[runs]] entry needs {k!r}; add it to the config.")
        names.append(r["name"])
    if len(set(names)) != len(names):
        raise ConfigError("[[runs]] names must be distinct.")
    sharper = cfg.get("expected_sharper", names[0])
    if sharper not in names:
        raise ConfigError(
            f"expected_sharper {sharper!r} is not one of the runs ({', '.join(names)})."
        )
    cfg["expected_sharper"] = sharper
    canon = cfg["metrics"].get("canonicalize", "auto")
    if canon not in ("auto", True, False):
        raise ConfigError(f'metrics.canonicalize must be "auto", true or false, got {canon!r}.')
    return cfg


def _train_run(
    cfg: dict[str, Any], run: Mapping[str, Any], seed: int, data: Any
) -> tuple[torch.nn.Module, Any]:
    tr = cfg["train"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_from_factory(cfg["model"]["factory"], dict(cfg["model"].get("kwargs", {})))
    tc = TrainConfig(
        epochs=int(tr.get("max_epochs", tr.get("epochs", 100))),
        batch_size=int(run["batch_size"]),
        lr=float(run["lr"]),
        momentum=float(run.get("momentum", tr.get("momentum", 0.9))),
        weight_decay=float(run.get("weight_decay", tr.get("weight_decay", 0.0))),
        optimizer=str(run.get("optimizer", tr.get("optimizer", "sgd"))),
        seed=seed,
        target_loss=tr.get("target_loss"),
    )
    return model, train(model, data, tc)


def run_sharp_vs_flat(
    config_path_or_dict: str | Path | Mapping[str, Any] = PRESET,
    seeds: Sequence[int] = (0, 1, 2),
    progress: Progress | None = None,
) -> list[SeedResult]:
    """Train every run of the config for each seed and measure its flatness.

    Args:
        config_path_or_dict: preset name, TOML path or an already parsed dict.
        seeds: seeds of initialization, batch order and metric probes.
        progress: optional progress reporter (one step per trained model).

    Returns:
        One :class:`SeedResult` per seed.

    Example:
        >>> cfg = load_config("sharp_vs_flat")
        >>> cfg["data"]["max_samples"], cfg["train"]["target_loss"] = 64, 1.5
        >>> cfg["metrics"]["names"] = ["loss", "lambda_max"]
        >>> res = run_sharp_vs_flat(cfg, seeds=(0,))
        >>> sorted(res[0].runs)
        ['flat', 'sharp']
    """
    cfg = load_config(config_path_or_dict)
    dc = cfg["data"]
    data = load_data(
        dc.get("name", "digits"),
        max_samples=dc.get("max_samples"),
        batch_size=int(dc.get("batch_size", 4096)),
        test_fraction=float(dc.get("test_fraction", 0.2)),
        seed=int(dc.get("split_seed", 0)),
    )
    mc = dict(cfg["metrics"])
    names = mc.pop("names", None)
    radius = float(mc.pop("radius", 0.05))
    sigma = float(mc.pop("sigma", 0.01))
    canon = mc.pop("canonicalize", "auto")
    dt = mc.pop("dtype", None)
    dtype = parse_dtype(dt) if dt is not None else None
    results: list[SeedResult] = []
    with tracked(progress, "sharp vs flat", len(seeds) * len(cfg["runs"])) as task:
        for seed in seeds:
            runs: dict[str, RunResult] = {}
            for run in cfg["runs"]:
                model, hist = _train_run(cfg, run, seed, data)
                bundle = ModelBundle.from_module(model, data, dtype=dtype)
                space = ParamSpace(bundle)
                _, g = space.value_and_grad()
                report = compute_metrics(
                    space,
                    names=names,
                    seed=seed,
                    canonicalize=None if canon == "auto" else bool(canon),
                    radius=radius,
                    sigma=sigma,
                    **mc,
                )
                runs[run["name"]] = RunResult(
                    name=run["name"],
                    batch_size=int(run["batch_size"]),
                    lr=float(run["lr"]),
                    epochs_run=hist.epochs_run,
                    train_loss=hist.train_loss[-1] if hist.train_loss else math.nan,
                    grad_norm=float(g.norm()),
                    metrics=report,
                )
                task.advance()
            results.append(SeedResult(seed, runs, cfg["expected_sharper"]))
    return results
