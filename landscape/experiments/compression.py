"""The compression / many-minima experiment.

**Claim tested.** A network with more parameters than it needs has exponentially more
parameterizations that reach low loss by *compressing* (few effective degrees of freedom)
than by *memorizing*; those solutions form large, degenerate basins, so training lands in
them. Not guaranteed: with random labels the network must memorize, and its basin should
then be smaller, sharper and less degenerate.

**Design.** Small ReLU MLPs are trained on a fixed training subset with a fraction of labels
replaced by uniformly random ones (label noise 0 … 1), for several widths and seeds, each
to the same training loss (``target_loss``, with an epoch cap; runs that miss it are
reported and left out of the tests). Every network is measured (LLC, basin volume with plain
and Hessian-preconditioned rays, Jacobian rank and effective rank, prunable fraction,
quantization bits, description length, λ_max, trace, test accuracy), and so is a
*function-preserving control*: the first layer scaled by ``control_factor`` and the second
by its inverse, which shows which measures move without the function changing. Minima of
the same cell (dataset, noise, width) are aligned (rebalancing + weight matching) and
counted as basins by loss barriers.

**Analysis.** Per cell: mean and bootstrap 95% interval over seeds. Per dataset and
measure: Spearman ρ with label noise and with the generalization gap (test − train loss),
computed within widths and averaged, with permutation p-values; Cohen's d between the
lowest and highest noise; Holm's correction over all tests. Verdict per measure: *supports*
when the noise correlation is significant (Holm p < α) in the direction the claim predicts,
*contradicts* when significant the other way, *inconclusive* otherwise.

Results go to a run directory: ``config.json``, ``runs/<id>.json`` (one per finished
network, so a rerun resumes), ``runs/<id>.pt`` (its parameters), ``cells/<cell>.json``
(basin counts), ``results.csv`` and ``results.nc`` (one row per run), ``summary.json``
(``compression`` section with cells, tests and verdicts) and ``verdict.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.basins.counting import count_basins
from landscape.basins.symmetry import check_same_function, rescale_layer_pair
from landscape.engine import ParamSpace
from landscape.errors import ConfigError, RunDirError
from landscape.experiments.basins_run import MEASURES, BasinsConfig, measure
from landscape.experiments.models import mlp
from landscape.experiments.train import TrainConfig, train
from landscape.io.data import DataSource, load_data
from landscape.io.model_bundle import ModelBundle
from landscape.io.presets import load_preset
from landscape.io.rundir import RunDir, atomic_write, versions, write_json
from landscape.progress import Progress, tracked
from landscape.stats import (
    bootstrap_mean_ci,
    cohens_d,
    holm,
    stratified_spearman,
)

PRESETS = {"default": "compression", "quick": "compression_quick", "gpu": "compression_gpu"}

# name, column in the per-run table, direction predicted by the claim as noise grows, label
MEASURE_SPECS: tuple[tuple[str, int, str], ...] = (
    ("llc", +1, "local learning coefficient λ̂"),
    ("log_volume", -1, "log basin volume (plain rays)"),
    ("log_volume_eigen", -1, "log basin volume (Hessian-preconditioned rays)"),
    ("jacobian_rank", +1, "Jacobian rank (column-normalized, eps tolerance)"),
    ("jacobian_effective_rank", +1, "Jacobian effective rank"),
    ("prunable_fraction", -1, "prunable fraction (magnitude, retrain-free)"),
    ("quant_bits", +1, "uniform quantization bits"),
    ("description_bits", +1, "description length (bits)"),
    ("lambda_max", +1, "Hessian λ_max"),
    ("trace", +1, "Hessian trace"),
)
CELL_SPECS: tuple[tuple[str, int, str], ...] = (
    ("mean_barrier", +1, "mean loss barrier between aligned minima of a cell"),
    ("num_basins", +1, "basins among a cell's seeds (barrier graph components)"),
)


@dataclass(frozen=True)
class TrainSettings:
    """How each network is trained (to ``target_loss``, at most ``max_epochs``)."""

    optimizer: str = "adam"
    lr: float = 0.01
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 0.0
    max_epochs: int = 1000
    target_loss: float = 0.05


@dataclass(frozen=True)
class CompressionConfig:
    """The experiment grid, training, measures and analysis.

    Attributes:
        datasets: ``digits`` and/or ``mnist1d``.
        label_noise: fractions of training labels replaced by uniform random labels.
        widths: hidden widths of the MLPs.
        depth: hidden layers.
        seeds: networks per cell.
        seed: base seed (every run's seed derives from it and the run's name).
        n_train: training samples (the first ``n_train`` of the dataset's training split).
        n_test: test samples (clean labels).
        train: training settings.
        basins: measures (the ``llc`` settings, Δ's, rays, ...).
        control: also measure the function-preserving rescaled copy.
        control_factor: first layer × factor, second layer × 1/factor.
        control_measures: which measures to repeat on the control.
        counting: count basins per cell.
        barrier_threshold: barrier below which two aligned minima share a basin.
        barrier_points: points on each linear path.
        bootstrap: bootstrap resamples for cell intervals.
        permutations: permutations for p-values.
        alpha: family-wise significance level (Holm).
        workers: processes running networks in parallel (1 runs in this process).
        device: where networks are trained and measured (``cpu`` when not given, ``cuda``
            for the GPU preset); data and models are moved there, the code is the same.
    """

    datasets: tuple[str, ...] = ("digits", "mnist1d")
    label_noise: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    widths: tuple[int, ...] = (32, 64, 128)
    depth: int = 1
    seeds: int = 10
    seed: int = 0
    n_train: int = 256
    n_test: int = 512
    train: TrainSettings = field(default_factory=TrainSettings)
    basins: BasinsConfig = field(default_factory=BasinsConfig)
    control: bool = True
    control_factor: float = 4.0
    control_measures: tuple[str, ...] = MEASURES
    counting: bool = True
    barrier_threshold: float = 0.1
    barrier_points: int = 11
    bootstrap: int = 2000
    permutations: int = 2000
    alpha: float = 0.05
    workers: int = 1
    device: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompressionConfig:
        """Build from a ``[compression]`` table (unknown keys are an error).

        Example:
            >>> CompressionConfig.from_dict({"seeds": 2, "train": {"lr": 0.1}}).train.lr
            0.1
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown compression settings {', '.join(unknown)}; remove them.")
        kw = dict(data)
        if "train" in kw:
            tnames = {f.name for f in dataclasses.fields(TrainSettings)}
            bad = sorted(set(kw["train"]) - tnames)
            if bad:
                raise ConfigError(f"unknown train settings {', '.join(bad)}; remove them.")
            kw["train"] = TrainSettings(**kw["train"])
        if "basins" in kw:
            kw["basins"] = BasinsConfig.from_dict(kw["basins"])
        for key in ("datasets", "label_noise", "widths", "control_measures"):
            if key in kw:
                kw[key] = tuple(kw[key])
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`ConfigError` on an impossible grid."""
        for d in self.datasets:
            if d not in ("digits", "mnist1d"):
                raise ConfigError(f"dataset {d!r} is not supported; use digits or mnist1d.")
        if not self.datasets or not self.label_noise or not self.widths:
            raise ConfigError("give at least one dataset, label-noise level and width.")
        if any(not 0 <= p <= 1 for p in self.label_noise):
            raise ConfigError("label_noise fractions must lie in [0, 1].")
        if any(w < 1 for w in self.widths) or self.depth < 1:
            raise ConfigError("widths and depth must be positive.")
        if self.seeds < 2:
            raise ConfigError("seeds must be at least 2 (intervals need two networks per cell).")
        if self.n_train < 8 or self.n_test < 1:
            raise ConfigError("n_train must be ≥ 8 and n_test ≥ 1.")
        if self.control_factor <= 0 or self.control_factor == 1:
            raise ConfigError("control_factor must be positive and not 1.")
        if self.workers < 1:
            raise ConfigError("workers must be ≥ 1.")
        self.torch_device()
        bad = [m for m in self.control_measures if m not in MEASURES]
        if bad:
            raise ConfigError(f"unknown control measure {bad[0]!r}; use {', '.join(MEASURES)}.")
        self.basins.validate()

    def torch_device(self) -> torch.device:
        """The device networks run on."""
        try:
            return torch.device(self.device or "cpu")
        except RuntimeError as exc:
            raise ConfigError(f"unknown device {self.device!r}; use cpu or cuda.") from exc

    def check_device(self) -> None:
        """Raise :class:`ConfigError` when the configured device is not available."""
        dev = self.torch_device()
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                "this configuration runs on a CUDA GPU but none is visible; use --preset default."
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready configuration."""
        d = asdict(self)
        for key in ("datasets", "label_noise", "widths", "control_measures"):
            d[key] = list(getattr(self, key))
        d["basins"] = self.basins.to_dict()
        return d


def load_config(
    preset: str | None = None, config_file: str | Path | None = None
) -> CompressionConfig:
    """Load a preset (``default``, ``quick``, ``gpu``) or a TOML file's ``[compression]`` table.

    Example:
        >>> load_config("quick").seeds >= 2
        True
    """
    if config_file is not None:
        table = load_preset(str(config_file), "compression")
    else:
        name = PRESETS.get(preset or "default")
        if name is None:
            raise ConfigError(
                f"unknown preset {preset!r}; use {', '.join(PRESETS)} or --config FILE.toml."
            )
        table = load_preset(name, "compression")
    return CompressionConfig.from_dict(table)


# -- one run -------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One network of the grid."""

    dataset: str
    noise: float
    width: int
    seed_index: int

    @property
    def run_id(self) -> str:
        """A file-safe name, e.g. ``digits-noise0.25-w64-s03``."""
        return f"{self.dataset}-noise{self.noise:.2f}-w{self.width}-s{self.seed_index:02d}"

    @property
    def cell(self) -> str:
        """The cell (dataset, noise, width) this run belongs to."""
        return f"{self.dataset}-noise{self.noise:.2f}-w{self.width}"


def run_specs(config: CompressionConfig) -> list[RunSpec]:
    """Every run of the grid, in a fixed order."""
    return [
        RunSpec(d, float(p), int(w), s)
        for d in config.datasets
        for p in config.label_noise
        for w in config.widths
        for s in range(config.seeds)
    ]


def run_seed(config: CompressionConfig, spec: RunSpec) -> int:
    """The run's seed (initialization, batch order, measures): a hash of its name."""
    return zlib.crc32(f"{config.seed}:{spec.run_id}".encode()) & 0x7FFFFFFF


def label_seed(config: CompressionConfig, spec: RunSpec) -> int:
    """Seed of the label noise, shared by every network of a cell (one loss per cell)."""
    return zlib.crc32(f"{config.seed}:labels:{spec.dataset}:{spec.noise:.4f}".encode()) & 0x7FFFFFFF


_DATA_CACHE: dict[tuple[str, int, int], tuple[torch.Tensor, ...]] = {}


def base_data(name: str, n_train: int, n_test: int) -> tuple[torch.Tensor, ...]:
    """Flattened inputs and clean labels: ``x_train, y_train, x_test, y_test``."""
    key = (name, n_train, n_test)
    if key not in _DATA_CACHE:
        src = load_data(name, seed=0)
        if src.x_test is None or src.y_test is None:
            raise ConfigError(f"dataset {name} has no test split.")
        if n_train > src.num_train:
            raise ConfigError(f"n_train {n_train} exceeds the {src.num_train} samples of {name}.")
        xtr = src.x_train[:n_train].reshape(n_train, -1).float()
        xte = src.x_test[:n_test].reshape(min(n_test, src.num_test), -1).float()
        _DATA_CACHE[key] = (xtr, src.y_train[:n_train].long(), xte, src.y_test[:n_test].long())
    return _DATA_CACHE[key]


def noisy_labels(y: torch.Tensor, fraction: float, classes: int, seed: int) -> torch.Tensor:
    """Replace ``round(fraction · n)`` labels (chosen at random) by uniform random labels.

    Example:
        >>> y = torch.zeros(100, dtype=torch.long)
        >>> int((noisy_labels(y, 0.0, 10, 0) != 0).sum())
        0
    """
    g = torch.Generator().manual_seed(seed)
    n = y.shape[0]
    k = int(round(fraction * n))
    idx = torch.randperm(n, generator=g)[:k]
    out = y.clone()
    out[idx] = torch.randint(0, classes, (k,), generator=g)
    return out


def init_mlp(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialize every ``nn.Linear`` like PyTorch's default, from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2 * bound - bound)
                if m.bias is not None:
                    m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 2 * bound - bound)
    return model


@contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _flat_measures(res: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Pick the scalar columns of the per-run table from ``measure``'s output."""
    row: dict[str, Any] = {}
    if "llc" in res:
        row["llc"] = res["llc"]["llc"]["mean"]
        row["llc_stderr"] = res["llc"]["llc"]["stderr"]
        row["llc_stable"] = res["llc"]["stable"]
    if "volume" in res:
        for kind, v in res["volume"].items():
            suffix = "" if kind == "none" else f"_{kind}"
            row[f"log_volume{suffix}"] = v["log_volume"]
            row[f"log_volume{suffix}_ci_low"] = v["ci"][0]
            row[f"log_volume{suffix}_ci_high"] = v["ci"][1]
            row[f"mean_log_radius{suffix}"] = v["mean_log_radius"]
            row[f"unbounded_rays{suffix}"] = v["unbounded"]
    if "jacobian" in res:
        row["jacobian_rank"] = res["jacobian"]["rank"]
        row["jacobian_rank_normalized"] = res["jacobian"]["normalized"]
        row["jacobian_effective_rank"] = res["jacobian"]["effective_rank"]
    if "compress" in res:
        c = res["compress"]
        row["prunable_fraction"] = c["prunable_fraction"]
        row["quant_bits"] = c["quant_bits"]
        row["description_bits"] = c["description_bits"]
    if "curvature" in res:
        row["lambda_max"] = res["curvature"]["lambda_max"]
        row["trace"] = res["curvature"]["trace"]["mean"]
        row["trace_stderr"] = res["curvature"]["trace"]["stderr"]
    return {prefix + k: v for k, v in row.items()}


def run_one(
    config: CompressionConfig, spec: RunSpec, *, progress: Progress | None = None
) -> tuple[dict[str, Any], torch.Tensor]:
    """Train and measure one network (and its rescaled control).

    Runs with one CPU thread (parallelism comes from ``workers``), so its numbers do not
    depend on the caller's thread settings.

    Returns:
        ``(record, theta)``: the JSON-ready record (one row of the results table, with the
        full measure output under ``details``) and the trained parameters.
    """
    with _threads(1):
        return _run_one(config, spec, progress=progress)


def _run_one(
    config: CompressionConfig, spec: RunSpec, *, progress: Progress | None = None
) -> tuple[dict[str, Any], torch.Tensor]:
    t0 = time.perf_counter()
    seed = run_seed(config, spec)
    xtr, ytr, xte, yte = base_data(spec.dataset, config.n_train, config.n_test)
    classes = 10
    y_noisy = noisy_labels(ytr, spec.noise, classes, label_seed(config, spec))
    dev = config.torch_device()
    data = DataSource(
        spec.dataset, xtr.to(dev), y_noisy.to(dev), xte.to(dev), yte.to(dev), batch_size=1024
    )
    model = init_mlp(mlp(xtr.shape[1], [spec.width] * config.depth, classes), seed).to(dev)
    ts = config.train
    hist = train(
        model,
        data,
        TrainConfig(
            epochs=ts.max_epochs,
            batch_size=ts.batch_size,
            lr=ts.lr,
            momentum=ts.momentum,
            weight_decay=ts.weight_decay,
            optimizer=ts.optimizer,
            seed=seed,
            target_loss=ts.target_loss,
        ),
        loss="cross_entropy",
    )
    t_train = time.perf_counter() - t0
    bundle = ModelBundle.from_module(model, data, "cross_entropy")
    space = ParamSpace(bundle)
    theta = space.theta0.detach().clone()
    tl, ta = space.evaluate(theta, "train")
    el, ea = space.evaluate(theta, "test")
    bcfg = config.basins.with_seed(seed)
    res, _ = measure(space, theta, bcfg, progress=progress)
    record: dict[str, Any] = {
        "run_id": spec.run_id,
        "cell": spec.cell,
        "dataset": spec.dataset,
        "noise": spec.noise,
        "width": spec.width,
        "seed_index": spec.seed_index,
        "run_seed": seed,
        "num_params": space.dim,
        "epochs": hist.epochs_run,
        "reached_target": bool(tl <= ts.target_loss),
        "train_loss": tl,
        "train_accuracy": ta,
        "test_loss": el,
        "test_accuracy": ea,
        "generalization_gap": el - tl,
        "accuracy_gap": ta - ea,
        "clean_label_fraction": float((y_noisy == ytr).float().mean()),
        "device": str(dev),
        **_flat_measures(res),
    }
    details: dict[str, Any] = {"measures": res}
    if config.control:
        theta_c = rescale_layer_pair(space, theta, 0, config.control_factor)
        record["control_function_diff"] = check_same_function(space, theta, theta_c, samples=256)
        record["control_train_loss"] = space.evaluate(theta_c, "train")[0]
        cres, _ = measure(
            space,
            theta_c,
            dataclasses.replace(bcfg, measures=config.control_measures),
            progress=progress,
        )
        record.update(_flat_measures(cres, "control_"))
        details["control_measures"] = cres
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["train_seconds"] = round(t_train, 3)
    record["details"] = details
    return record, theta


def _run_path(run: Path, spec: RunSpec) -> Path:
    return run / "runs" / f"{spec.run_id}.json"


def _run_and_save(config_dict: dict[str, Any], spec_tuple: tuple, run_path: str) -> str:
    """Worker entry point: run one spec and write its files (returns the run id)."""
    config = CompressionConfig.from_dict(config_dict)
    spec = RunSpec(*spec_tuple)
    with _threads(1):
        record, theta = run_one(config, spec)
    _save_run(Path(run_path), spec, record, theta)
    return spec.run_id


def _save_run(run: Path, spec: RunSpec, record: dict[str, Any], theta: torch.Tensor) -> None:
    pt = run / "runs" / f"{spec.run_id}.pt"
    atomic_write(pt, lambda p: torch.save(theta.detach().cpu().clone(), p))
    write_json(_run_path(run, spec), record)


def _load_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# -- counting -----------------------------------------------------------------------
def count_cell(config: CompressionConfig, run: Path, cell_specs: list[RunSpec]) -> dict[str, Any]:
    """Align the cell's minima (rebalance + weight matching) and count basins by barriers.

    All networks of a cell are trained on the same (noisy) labels, so their barriers are
    measured on one loss.
    """
    spec0 = cell_specs[0]
    xtr, ytr, xte, yte = base_data(spec0.dataset, config.n_train, config.n_test)
    labels = noisy_labels(ytr, spec0.noise, 10, label_seed(config, spec0))
    dev = config.torch_device()
    model = mlp(xtr.shape[1], [spec0.width] * config.depth, 10).to(dev)
    data = DataSource(spec0.dataset, xtr.to(dev), labels.to(dev), xte.to(dev), yte.to(dev))
    space = ParamSpace(ModelBundle.from_module(model, data))
    thetas = [
        torch.load(run / "runs" / f"{s.run_id}.pt", weights_only=True).to(dev) for s in cell_specs
    ]
    res = count_basins(
        space,
        thetas,
        threshold=config.barrier_threshold,
        align=True,
        rescale=True,
        points=config.barrier_points,
        seed=config.seed,
    )
    k = len(thetas)
    iu = np.triu_indices(k, 1)
    return {
        "cell": spec0.cell,
        "dataset": spec0.dataset,
        "noise": spec0.noise,
        "width": spec0.width,
        "num_minima": k,
        "num_basins": res.num_basins,
        "labels": [int(v) for v in res.labels],
        "mean_barrier": float(res.barriers[iu].mean()) if k > 1 else 0.0,
        "max_barrier": float(res.barriers[iu].max()) if k > 1 else 0.0,
        "barriers": res.barriers.tolist(),
        "threshold": config.barrier_threshold,
    }


# -- the whole experiment ------------------------------------------------------------
def _same_run(cfg: dict[str, Any]) -> dict[str, Any]:
    c = dict(cfg.get("compression", {}))
    c.pop("workers", None)
    return {"compression": c}


def run_compression(
    config: CompressionConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run (or resume) the experiment in ``out`` and return the ``compression`` summary.

    Finished networks (``runs/<id>.json``) and counted cells are never recomputed.

    Example:
        >>> import tempfile
        >>> cfg = load_config("quick")
        >>> s = run_compression(cfg, tempfile.mkdtemp() + "/c")  # doctest: +SKIP
    """
    config.validate()
    config.check_device()
    run = RunDir.create(
        out,
        {
            "command": "experiment compression",
            "compression": config.to_dict(),
            "versions": versions(),
        },
        resume=resume,
        overwrite=overwrite,
        compare_keys=_same_run,
    )
    root = run.path
    (root / "runs").mkdir(exist_ok=True)
    specs = run_specs(config)
    todo = [s for s in specs if _load_record(_run_path(root, s)) is None]
    computed = len(todo)
    t0 = time.perf_counter()
    with tracked(progress, "compression runs", len(specs)) as task:
        task.advance(len(specs) - len(todo))
        if config.workers > 1 and len(todo) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = mp.get_context("spawn")
            cfg_dict = config.to_dict()
            with ProcessPoolExecutor(max_workers=config.workers, mp_context=ctx) as pool:
                futs = [
                    pool.submit(_run_and_save, cfg_dict, dataclasses.astuple(s), str(root))
                    for s in todo
                ]
                for f in as_completed(futs):
                    f.result()
                    task.advance()
        else:
            with _threads(1):
                for s in todo:
                    record, theta = run_one(config, s)
                    _save_run(root, s, record, theta)
                    task.advance()
    records = []
    for s in specs:
        rec = _load_record(_run_path(root, s))
        if rec is None:
            raise RunDirError(f"run {s.run_id} has no result; rerun with --resume.")
        records.append(rec)
    cells: list[dict[str, Any]] = []
    cells_computed = 0
    if config.counting:
        by_cell: dict[str, list[RunSpec]] = {}
        for s in specs:
            by_cell.setdefault(s.cell, []).append(s)
        with tracked(progress, "basin counting", len(by_cell)) as task, _threads(1):
            for name, group in by_cell.items():
                path = root / "cells" / f"{name}.json"
                rec = _load_record(path)
                if rec is None:
                    rec = count_cell(config, root, group)
                    write_json(path, rec)
                    cells_computed += 1
                cells.append(rec)
                task.advance()
    summary = analyze(config, records, cells)
    summary["runs_computed"] = computed
    summary["runs_reused"] = len(specs) - computed
    summary["cells_computed"] = cells_computed
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    write_tables(run, records)
    run.update_summary({"name": root.name, "versions": versions(), "compression": summary})
    atomic_write(root / "verdict.md", lambda p: p.write_text(verdict_markdown(summary)))
    return summary


# -- tables and analysis ---------------------------------------------------------------
def _scalar_columns(records: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in records:
        for k, v in r.items():
            if k != "details" and k not in cols and not isinstance(v, dict | list):
                cols.append(k)
    return cols


def _num(v: Any) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return float("nan")
    return float("nan")


def write_tables(run: RunDir, records: list[dict[str, Any]]) -> None:
    """``results.csv`` and ``results.nc`` with one row per run."""
    import csv
    import io

    import xarray as xr

    cols = _scalar_columns(records)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in records:
        w.writerow([r.get(c, "") for c in cols])
    text = buf.getvalue()
    atomic_write(run.path / "results.csv", lambda p: p.write_text(text))
    text_cols = {"run_id", "cell", "dataset"}
    data_vars = {}
    for c in cols:
        if c in text_cols:
            data_vars[c] = ("run", np.array([str(r.get(c, "")) for r in records], dtype=object))
        else:
            data_vars[c] = ("run", np.array([_num(r.get(c)) for r in records]))
    ds = xr.Dataset(data_vars, coords={"run": np.arange(len(records))})
    ds.attrs["experiment"] = "compression"
    if run.results_path.exists():
        run.results_path.unlink()
    run.write_arrays(ds)


def _column(records: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([_num(r.get(key)) for r in records])


def analyze(
    config: CompressionConfig, records: list[dict[str, Any]], cells: list[dict[str, Any]]
) -> dict[str, Any]:
    """Cell means with intervals, correlations, effect sizes, Holm p-values and verdicts."""
    seed = config.seed
    reached = [r for r in records if r.get("reached_target")]
    not_reached = [
        {"run_id": r["run_id"], "train_loss": r["train_loss"], "epochs": r["epochs"]}
        for r in records
        if not r.get("reached_target")
    ]
    measure_names = [m for m, _, _ in MEASURE_SPECS if any(m in r for r in records)]
    extra = ["test_accuracy", "test_loss", "train_loss", "generalization_gap", "epochs"]
    # per-cell means and intervals (over the runs that reached the target)
    cell_rows: list[dict[str, Any]] = []
    keys = sorted({(r["dataset"], r["noise"], r["width"]) for r in records})
    for ds, noise, width in keys:
        grp = [r for r in reached if (r["dataset"], r["noise"], r["width"]) == (ds, noise, width)]
        row: dict[str, Any] = {
            "dataset": ds,
            "noise": noise,
            "width": width,
            "n": len(grp),
            "n_total": sum(
                1 for r in records if (r["dataset"], r["noise"], r["width"]) == (ds, noise, width)
            ),
        }
        for m in measure_names + extra:
            mean, lo, hi = bootstrap_mean_ci(
                [_num(r.get(m)) for r in grp], resamples=config.bootstrap, seed=seed
            )
            row[m] = {"mean": mean, "ci": [lo, hi]}
        cnt = next(
            (c for c in cells if (c["dataset"], c["noise"], c["width"]) == (ds, noise, width)),
            None,
        )
        if cnt is not None:
            row["num_basins"] = cnt["num_basins"]
            row["mean_barrier"] = cnt["mean_barrier"]
        cell_rows.append(row)
    # tests
    tests: list[dict[str, Any]] = []
    for ds in config.datasets:
        rs = [r for r in reached if r["dataset"] == ds]
        strata = [r["width"] for r in rs]
        noise = _column(rs, "noise")
        gap = _column(rs, "generalization_gap")
        lo_noise, hi_noise = min(config.label_noise), max(config.label_noise)
        for m, sign, label in MEASURE_SPECS:
            if m not in measure_names:
                continue
            y = _column(rs, m)
            for against, x in (("label_noise", noise), ("generalization_gap", gap)):
                rho, p, n = stratified_spearman(
                    x, y, strata, permutations=config.permutations, seed=seed
                )
                ds_eff = []
                for w in config.widths:
                    a = [
                        v
                        for v, r in zip(y, rs, strict=True)
                        if r["width"] == w and r["noise"] == lo_noise
                    ]
                    b = [
                        v
                        for v, r in zip(y, rs, strict=True)
                        if r["width"] == w and r["noise"] == hi_noise
                    ]
                    ds_eff.append(cohens_d(a, b))
                dvals = [d for d in ds_eff if np.isfinite(d)]
                tests.append(
                    {
                        "dataset": ds,
                        "measure": m,
                        "label": label,
                        "against": against,
                        "predicted_sign": sign,
                        "rho": rho,
                        "p": p,
                        "n": n,
                        "cohens_d": float(np.mean(dvals)) if dvals else float("nan"),
                    }
                )
        cs = [c for c in cells if c["dataset"] == ds]
        if len(cs) >= 3:
            for m, sign, label in CELL_SPECS:
                x = np.array([c["noise"] for c in cs], dtype=float)
                y = np.array([c[m] for c in cs], dtype=float)
                rho, p, n = stratified_spearman(
                    x, y, [c["width"] for c in cs], permutations=config.permutations, seed=seed
                )
                tests.append(
                    {
                        "dataset": ds,
                        "measure": m,
                        "label": label,
                        "against": "label_noise",
                        "predicted_sign": sign,
                        "rho": rho,
                        "p": p,
                        "n": n,
                        "cohens_d": float("nan"),
                    }
                )
    adj = holm([t["p"] for t in tests])
    for t, a in zip(tests, adj, strict=True):
        t["p_holm"] = float(a)
    control = control_summary(records)
    verdicts = make_verdicts(config, tests, control)
    return {
        "num_runs": len(records),
        "num_reached": len(reached),
        "not_reached": not_reached,
        "cells": cell_rows,
        "counting": [{k: v for k, v in c.items() if k != "barriers"} for c in cells],
        "tests": tests,
        "control": control,
        "verdict": verdicts,
        "alpha": config.alpha,
    }


def control_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How each measure changes under the function-preserving rescaling (median over runs)."""
    out: dict[str, Any] = {}
    if not any("control_function_diff" in r for r in records):
        return out
    diffs = _column(records, "control_function_diff")
    out["max_function_diff"] = float(np.nanmax(diffs))
    loss_d = np.abs(_column(records, "control_train_loss") - _column(records, "train_loss"))
    out["max_train_loss_diff"] = float(np.nanmax(loss_d))
    per: dict[str, Any] = {}
    for m, _, _ in MEASURE_SPECS:
        if not any(f"control_{m}" in r for r in records):
            continue
        a = _column(records, m)
        b = _column(records, f"control_{m}")
        ok = np.isfinite(a) & np.isfinite(b)
        if not ok.any():
            continue
        delta = b[ok] - a[ok]
        rel = delta / np.maximum(np.abs(a[ok]), 1e-12)
        per[m] = {
            "median_change": float(np.median(delta)),
            "median_relative_change": float(np.median(rel)),
            "max_abs_change": float(np.max(np.abs(delta))),
            "fraction_changed": float(np.mean(np.abs(delta) > 1e-9 * np.maximum(1, np.abs(a[ok])))),
            "invariant": bool(np.all(np.abs(delta) <= 1e-9 * np.maximum(1, np.abs(a[ok])))),
        }
    out["measures"] = per
    return out


def make_verdicts(
    config: CompressionConfig, tests: list[dict[str, Any]], control: dict[str, Any]
) -> list[dict[str, Any]]:
    """One plain-language verdict per dataset and measure (from the label-noise test)."""
    out = []
    for t in tests:
        if t["against"] != "label_noise":
            continue
        gap = next(
            (
                u
                for u in tests
                if u["dataset"] == t["dataset"]
                and u["measure"] == t["measure"]
                and u["against"] == "generalization_gap"
            ),
            None,
        )
        rho, p = t["rho"], t["p_holm"]
        if not np.isfinite(rho) or not np.isfinite(p) or p >= config.alpha:
            word = "inconclusive"
        elif np.sign(rho) == t["predicted_sign"]:
            word = "supports"
        else:
            word = "contradicts"
        pred = "rise" if t["predicted_sign"] > 0 else "fall"
        if np.isfinite(rho):
            direction = "rises" if rho > 0 else "falls"
            text = (
                f"{t['label']} {direction} with label noise (ρ = {rho:.2f}, Holm p = {p:.3g},"
                f" n = {t['n']}"
            )
            if np.isfinite(t.get("cohens_d", float("nan"))):
                text += f", d = {t['cohens_d']:.2f} from lowest to highest noise"
            text += f"); the claim predicts it should {pred}."
        else:
            text = (
                f"{t['label']}: no variation to test (constant within widths, or too few"
                f" values); the claim predicts it should {pred}."
            )
        if gap is not None and np.isfinite(gap["rho"]):
            text += (
                f" With the generalization gap: ρ = {gap['rho']:.2f}"
                f" (Holm p = {gap['p_holm']:.3g})."
            )
        ctl = control.get("measures", {}).get(t["measure"])
        if ctl is not None:
            if ctl["invariant"]:
                text += " Unchanged by the function-preserving rescaling."
            else:
                text += (
                    " Moves under the function-preserving rescaling (median relative change"
                    f" {100 * ctl['median_relative_change']:+.0f}%), so it is not a property"
                    " of the function alone."
                )
        out.append(
            {
                "dataset": t["dataset"],
                "measure": t["measure"],
                "verdict": word,
                "rho": rho,
                "p_holm": p,
                "n": t["n"],
                "gap_rho": gap["rho"] if gap else float("nan"),
                "gap_p_holm": gap["p_holm"] if gap else float("nan"),
                "cohens_d": t.get("cohens_d", float("nan")),
                "text": text,
            }
        )
    return out


def _fmt(x: Any, spec: str = ".3g") -> str:
    v = _num(x)
    return "—" if not np.isfinite(v) else format(v, spec)


def verdict_markdown(summary: dict[str, Any]) -> str:
    """The verdict table (and counts of unreached runs) as markdown."""
    lines = [
        "# Compression / many-minima experiment: verdict",
        "",
        f"{summary['num_reached']} of {summary['num_runs']} networks reached the target"
        " training loss and enter the tests.",
        "",
        "| dataset | measure | ρ with noise | Holm p | d (lowest→highest noise) |"
        " ρ with gap | Holm p (gap) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in summary["verdict"]:
        lines.append(
            f"| {v['dataset']} | {v['measure']} | {_fmt(v['rho'], '.2f')} |"
            f" {_fmt(v['p_holm'])} | {_fmt(v['cohens_d'], '.2f')} |"
            f" {_fmt(v['gap_rho'], '.2f')} | {_fmt(v['gap_p_holm'])} | **{v['verdict']}** |"
        )
    lines += ["", "## In words", ""]
    lines += [f"- *{v['dataset']}*, {v['measure']}: {v['text']}" for v in summary["verdict"]]
    ctl = summary.get("control", {})
    if ctl:
        lines += [
            "",
            "## Function-preserving rescaling control",
            "",
            f"Largest relative output change: {_fmt(ctl.get('max_function_diff'))};"
            f" largest train-loss change: {_fmt(ctl.get('max_train_loss_diff'))}.",
            "",
            "| measure | median change | median relative change | invariant |",
            "|---|---|---|---|",
        ]
        for m, c in ctl.get("measures", {}).items():
            lines.append(
                f"| {m} | {_fmt(c['median_change'])} |"
                f" {_fmt(100 * c['median_relative_change'], '+.1f')}% | {c['invariant']} |"
            )
    if summary["not_reached"]:
        lines += ["", "## Runs that did not reach the target loss", ""]
        lines += [
            f"- {r['run_id']}: train loss {_fmt(r['train_loss'])} after {r['epochs']} epochs"
            for r in summary["not_reached"]
        ]
    return "\n".join(lines) + "\n"


def default_out_dir() -> Path:
    """``runs/compression-<time>``."""
    from landscape.io.rundir import default_run_dir

    return default_run_dir("compression")


__all__ = [
    "CompressionConfig",
    "RunSpec",
    "TrainSettings",
    "analyze",
    "load_config",
    "run_compression",
    "run_one",
    "run_specs",
]
