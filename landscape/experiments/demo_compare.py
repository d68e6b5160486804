"""The shipped comparison example: sharp vs flat minima from batch size and learning rate.

A few small models are trained on scikit-learn's digits from ONE initialization, differing
only in batch size and learning rate (the classic large-batch/small-step vs
small-batch/large-step contrast), each until the same training loss so that the minima are
compared at equal fit, saved as landscape bundles, and scanned with one shared quick
configuration so their numbers are comparable. The comparison table, figures and
report are then written by ``landscape demo --compare`` (the CLI layer), because this
layer may not import :mod:`landscape.compare` or :mod:`landscape.viz`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landscape.experiments.demo import build_seeded
from landscape.io.checkpoint import load_model
from landscape.io.data import load_data
from landscape.io.losses import resolve_loss
from landscape.io.model_bundle import ModelBundle
from landscape.io.rundir import RunDir
from landscape.io.save import save
from landscape.models import digits_cnn, mlp
from landscape.pipelines.scan import ScanConfig, run_scan
from landscape.progress import Progress
from landscape.training import TrainConfig, evaluate, train

FACTORIES = {
    "digits_cnn": ("landscape.models:digits_cnn", digits_cnn),
    "mlp": ("landscape.models:mlp", mlp),
}


@dataclass(frozen=True)
class DemoRun:
    """One training recipe of the demo.

    Attributes:
        name: run name (also the checkpoint and run-directory name).
        batch_size: minibatch size.
        lr: SGD learning rate.
        epochs: the most passes over the data (training stops at the target loss).
        momentum: SGD momentum.
    """

    name: str
    batch_size: int
    lr: float
    epochs: int
    momentum: float = 0.9


#: Small batches with large steps find flatter minima than large batches with small steps.
DEMO_RUNS: tuple[DemoRun, ...] = (
    DemoRun("b16-lr0.05", 16, 0.05, 100),
    DemoRun("b64-lr0.05", 64, 0.05, 200),
    DemoRun("b256-lr0.05", 256, 0.05, 500),
    DemoRun("b64-lr0.02", 64, 0.02, 400),
)

#: Every run trains until its full training loss is at most this (equal fit).
TARGET_LOSS = 0.02

#: A quick, shared scan configuration (one for every run, so the numbers compare).
QUICK_SCAN = ScanConfig(
    top_k=3,
    bottom_k=1,
    trace_matvecs=30,
    frobenius_probes=10,
    slq_runs=2,
    slq_steps=30,
    tol=1e-4,
    surface=True,
    surface_grid=(15, 15),
    surface_range=1.0,
    metrics=True,
)


@dataclass(frozen=True)
class DemoModel:
    """The architecture trained by the demo.

    Attributes:
        factory: key of :data:`FACTORIES` (``digits_cnn`` or ``mlp``).
        kwargs: keyword arguments of the factory.
    """

    factory: str = "mlp"
    kwargs: dict[str, Any] = field(
        default_factory=lambda: {"in_features": 64, "hidden": 32, "num_classes": 10}
    )


@dataclass(frozen=True)
class DemoCompareResult:
    """What :func:`run_demo_compare` produced.

    Attributes:
        out_dir: the demo folder (``checkpoints/``, ``runs/``; the comparison goes here).
        run_dirs: one scanned run directory per recipe, in recipe order.
        checkpoints: the trained bundles.
        training: per run ``{train_loss, train_accuracy, test_loss, test_accuracy, seconds}``.
        scan_config: the shared scan configuration.
    """

    out_dir: Path
    run_dirs: tuple[Path, ...]
    checkpoints: tuple[Path, ...]
    training: tuple[dict[str, float], ...]
    scan_config: ScanConfig


def _scan_config_dict(
    path: Path, data: str, max_samples: int | None, seed: int, cfg: ScanConfig, loss: str
) -> dict[str, Any]:
    """The run configuration, in the shape ``landscape scan`` writes (so runs compare)."""
    return {
        "command": "scan",
        "checkpoint": str(path),
        "model": None,
        "model_kwargs": {},
        "data": data,
        "loss": loss,
        "max_samples": max_samples,
        "batch_size": 1024,
        "test_fraction": 0.2,
        "device": None,
        "dtype": None,
        "seed": seed,
        "scan": cfg.to_dict(),
    }


def run_demo_compare(
    out_dir: str | Path,
    *,
    seed: int = 0,
    quick: bool = True,
    progress: Progress | None = None,
    runs: Sequence[DemoRun] | None = None,
    model: DemoModel | None = None,
    max_samples: int | None = None,
    scan_config: ScanConfig | None = None,
    target_loss: float = TARGET_LOSS,
) -> DemoCompareResult:
    """Train the demo's runs from one initialization and scan them with one configuration.

    Checkpoints and finished scans already in ``out_dir`` are reused (a rerun resumes).

    Args:
        out_dir: the demo folder; holds ``checkpoints/<name>.pt`` and ``runs/<name>/``.
        seed: seed of the initialization, the data split, batch order and the scans.
        quick: use :data:`QUICK_SCAN` (fewer probes, 15×15 surface) instead of the
            ``scan_default`` settings.
        progress: progress reporter.
        runs: the recipes (default :data:`DEMO_RUNS`).
        model: the architecture (default an MLP 64-32-10, 2410 parameters).
        max_samples: cap on training and test samples (default: all of digits).
        scan_config: override of the shared scan configuration.
        target_loss: each run trains until its training loss is at most this.

    Returns:
        A :class:`DemoCompareResult`; compare ``result.run_dirs`` with
        :func:`landscape.compare.compare_runs`.

    Example:
        >>> import tempfile
        >>> tiny = ScanConfig(top_k=1, bottom_k=0, trace_matvecs=6, frobenius_probes=2,
        ...                   slq_runs=1, slq_steps=5, surface=False, metrics=False)
        >>> r = run_demo_compare(tempfile.mkdtemp(), runs=[DemoRun("a", 32, 0.05, 1),
        ...     DemoRun("b", 128, 0.05, 1)], model=DemoModel("mlp", {"in_features": 64,
        ...     "hidden": 8, "num_classes": 10}), max_samples=200, scan_config=tiny)
        >>> len(r.run_dirs)
        2
    """
    root = Path(out_dir)
    recipes = list(runs if runs is not None else DEMO_RUNS)
    arch = model or DemoModel()
    if arch.factory not in FACTORIES:
        from landscape.errors import ConfigError

        raise ConfigError(
            f"unknown demo model {arch.factory!r}; use one of {', '.join(FACTORIES)}."
        )
    factory_name, factory = FACTORIES[arch.factory]
    if scan_config is not None:
        cfg = scan_config
    elif quick:
        cfg = QUICK_SCAN
    else:
        from landscape.io.presets import load_preset

        preset = load_preset("scan_default", "scan")
        preset["surface_grid"] = tuple(preset["surface_grid"])
        cfg = ScanConfig(**preset)
    from dataclasses import replace

    cfg = replace(cfg, seed=seed)
    cfg.validate()
    data = load_data("digits", max_samples=max_samples, seed=seed)
    spec = resolve_loss("cross_entropy")
    ckpts, run_dirs, stats = [], [], []
    for recipe in recipes:
        ckpt = root / "checkpoints" / f"{recipe.name}.pt"
        if not ckpt.exists():
            t0 = time.perf_counter()
            net = build_seeded(factory, seed, **arch.kwargs)
            tcfg = TrainConfig(
                epochs=recipe.epochs,
                batch_size=recipe.batch_size,
                lr=recipe.lr,
                momentum=recipe.momentum,
                seed=seed,
                target_loss=target_loss,
            )
            hist = train(net, data, tcfg, loss=spec, progress=progress)
            tl, ta = evaluate(net, data.x_train, data.y_train, spec)
            assert data.x_test is not None and data.y_test is not None  # digits has a split
            vl, va = evaluate(net, data.x_test, data.y_test, spec)
            info = {
                "train_loss": tl,
                "train_accuracy": ta,
                "test_loss": vl,
                "test_accuracy": va,
                "epochs": float(hist.epochs_run),
                "seconds": round(time.perf_counter() - t0, 3),
            }
            save(
                net,
                ckpt,
                factory=factory_name,
                factory_kwargs=dict(arch.kwargs),
                data="digits",
                loss="cross_entropy",
                meta={"train": vars(tcfg), "recipe": vars(recipe), **info},
            )
        else:
            import torch

            meta = torch.load(ckpt, weights_only=True, map_location="cpu").get("meta", {})
            info = {k: float(meta.get(k, float("nan"))) for k in
                    ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epochs", "seconds")}  # fmt: skip
        loaded = load_model(ckpt)
        bundle = ModelBundle.from_module(
            loaded.module,
            data,
            spec,
            provenance=loaded.provenance(),
            scripted=loaded.scripted,
        )
        config = _scan_config_dict(ckpt, "digits", max_samples, seed, cfg, "cross_entropy")
        config["checkpoint_sha256"] = loaded.sha256
        config["checkpoint_format"] = loaded.format
        run = RunDir.create(root / "runs" / recipe.name, config, resume=True)
        run_scan(bundle, run, cfg, progress=progress)
        ckpts.append(ckpt)
        run_dirs.append(run.path)
        stats.append(info)
    return DemoCompareResult(root, tuple(run_dirs), tuple(ckpts), tuple(stats), cfg)
