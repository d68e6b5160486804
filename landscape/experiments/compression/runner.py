"""Train and measure every network of the compression experiment, resumably.

Each network is trained on its own draw of noisy labels (shared by
``seeds_per_label_draw`` seeds), in one or both training arms, measured at the canonical
representative of its ReLU-rescaling orbit, and measured again as a function-preserving
rescaled copy (the control). Networks of one label draw share a training loss, so their
basins are counted together. Results go to a run directory: ``runs/<id>.json`` and
``runs/<id>.pt`` per network (a rerun resumes), ``groups/<group>.json`` per counted label
draw, then ``results.csv``/``results.nc``, ``summary.json`` and ``verdict.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.basins.counting import count_basins
from landscape.basins.symmetry import canonicalize, check_same_function, rescale_layer_pair
from landscape.engine import ParamSpace
from landscape.errors import ConfigError, RunDirError
from landscape.experiments.basins_run import measure
from landscape.experiments.compression.analysis import CompressionSummary, analyze
from landscape.experiments.compression.config import (
    CompressionConfig,
    RunSpec,
    label_seed,
    run_seed,
    run_specs,
)
from landscape.experiments.compression.measures import BasinMeasures
from landscape.experiments.compression.report import verdict_markdown
from landscape.io.data import DataSource, load_data
from landscape.io.model_bundle import ModelBundle
from landscape.io.rundir import RunDir, atomic_write, versions, write_json
from landscape.models import mlp
from landscape.progress import Progress, tracked
from landscape.results import _json_float
from landscape.training import TrainConfig, train

CLASSES = 10
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


_POOL_CACHE: dict[str, torch.Tensor] = {}


def input_pool(name: str) -> torch.Tensor:
    """Every input of the dataset (training and test split), flattened.

    The functional dimension needs many inputs and no labels, so it uses all of them.
    """
    if name not in _POOL_CACHE:
        src = load_data(name, seed=0)
        parts = [src.x_train] + ([src.x_test] if src.x_test is not None else [])
        _POOL_CACHE[name] = torch.cat([p.reshape(p.shape[0], -1).float() for p in parts])
    return _POOL_CACHE[name]


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


def mean_margin(space: ParamSpace, theta: torch.Tensor) -> float:
    """Mean over training samples of the label's logit minus the largest other logit."""
    x = space.bundle.to_device(space.bundle.data.x_train)
    y = space.bundle.to_device(space.bundle.data.y_train)
    with torch.no_grad():
        out = space.forward(theta, x)
        own = out.gather(1, y.view(-1, 1)).squeeze(1)
        other = out.scatter(1, y.view(-1, 1), float("-inf")).max(dim=1).values
    return float((own - other).mean())


@dataclass(frozen=True)
class RunRecord:
    """One trained and measured network.

    Attributes:
        spec: where it sits in the grid.
        run_seed: its seed.
        num_params: parameters.
        steps: optimizer steps taken; ``epochs``: epochs.
        reached_target: whether the ``to_loss`` arm reached the target loss.
        train_loss, train_accuracy, test_loss, test_accuracy: at the end of training
            (test labels are clean).
        param_norm: ‖θ‖ of the canonical representative; ``raw_param_norm``: as trained.
        margin: mean logit margin on the (noisy) training labels.
        clean_label_fraction: training labels that are still correct.
        measures: the basin measures (at the canonical representative).
        control: the same measures on the rescaled copy (``None`` without a control).
        control_function_diff: largest relative output change of the rescaled copy.
        control_canonical_diff: ``‖canon(θ_control) − canon(θ)‖ / ‖canon(θ)‖``: how far
            apart the two are where they are measured (0 up to the balancing tolerance
            means every canonicalized measure is invariant, repeated or not).
        seconds, train_seconds: wall time.
        details: every measure's full output (JSON-ready).
    """

    spec: RunSpec
    run_seed: int
    num_params: int
    steps: int
    epochs: int
    reached_target: bool
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    param_norm: float
    raw_param_norm: float
    margin: float
    clean_label_fraction: float
    measures: BasinMeasures
    control: BasinMeasures | None
    control_function_diff: float
    control_canonical_diff: float
    seconds: float
    train_seconds: float
    details: dict[str, Any]

    @property
    def generalization_gap(self) -> float:
        """Test minus training loss."""
        return self.test_loss - self.train_loss

    @property
    def log_steps(self) -> float:
        """``log`` of the optimizer steps."""
        return math.log(max(1, self.steps))

    @property
    def enters_tests(self) -> bool:
        """``to_loss`` runs enter the tests only if they reached the target loss."""
        return self.spec.arm != "to_loss" or self.reached_target

    def value(self, name: str) -> float:
        """A measure, a null measure or a training quantity by name."""
        if name in BasinMeasures.__dataclass_fields__:
            return self.measures.value(name)
        if name == "noise":
            return self.spec.noise
        v = getattr(self, name)
        return float(v)

    def row(self) -> dict[str, Any]:
        """One flat row of the results table."""
        row: dict[str, Any] = {
            "run_id": self.spec.run_id,
            "cell": self.spec.cell,
            "group": self.spec.group,
            **dataclasses.asdict(self.spec),
            "run_seed": self.run_seed,
            "num_params": self.num_params,
            "steps": self.steps,
            "log_steps": self.log_steps,
            "epochs": self.epochs,
            "reached_target": self.reached_target,
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
            "generalization_gap": self.generalization_gap,
            "param_norm": self.param_norm,
            "raw_param_norm": self.raw_param_norm,
            "margin": self.margin,
            "clean_label_fraction": self.clean_label_fraction,
            **self.measures.to_dict(),
        }
        if self.control is not None:
            row.update({f"control_{k}": v for k, v in self.control.to_dict().items()})
            row["control_function_diff"] = self.control_function_diff
            row["control_canonical_diff"] = self.control_canonical_diff
        row["seconds"] = self.seconds
        return {k: (_json_float(v) if isinstance(v, float) else v) for k, v in row.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (``runs/<id>.json``)."""
        d = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("spec", "measures", "control", "details")
        }
        return {
            "spec": dataclasses.asdict(self.spec),
            **{k: (_json_float(v) if isinstance(v, float) else v) for k, v in d.items()},
            "measures": self.measures.to_dict(),
            "control": None if self.control is None else self.control.to_dict(),
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Read back :meth:`to_dict`."""
        kw = dict(data)
        kw["spec"] = RunSpec(**kw["spec"])
        kw["measures"] = BasinMeasures.from_dict(kw["measures"])
        kw["control"] = (
            None if kw.get("control") is None else BasinMeasures.from_dict(kw["control"])
        )
        for f in dataclasses.fields(cls):
            if f.type == "float":
                kw[f.name] = float(kw[f.name])
        return cls(**kw)


def _network(
    config: CompressionConfig, spec: RunSpec
) -> tuple[ParamSpace, torch.Tensor, nn.Module, DataSource]:
    """The untrained network of ``spec`` on its labels, and its clean labels."""
    xtr, ytr, xte, yte = base_data(spec.dataset, config.n_train, config.n_test)
    dev = config.torch_device()
    y = (
        ytr.clone()
        if config.negative_control
        else noisy_labels(ytr, spec.noise, CLASSES, label_seed(config, spec))
    )
    data = DataSource(
        spec.dataset, xtr.to(dev), y.to(dev), xte.to(dev), yte.to(dev), batch_size=1024
    )
    model = mlp(xtr.shape[1], [spec.width] * config.depth, CLASSES).to(dev)
    space = ParamSpace(ModelBundle.from_module(model, data, "cross_entropy"))
    return space, ytr, model, data


def run_one(
    config: CompressionConfig, spec: RunSpec, *, progress: Progress | None = None
) -> tuple[RunRecord, torch.Tensor]:
    """Train and measure one network (and its rescaled control).

    Runs with one CPU thread (parallelism comes from ``workers``), so its numbers do not
    depend on the caller's thread settings.

    Returns:
        ``(record, theta)``: the record and the trained parameters.

    Raises:
        ConfigError: if the rescaled control changed the network's outputs by more than
            ``function_tol`` (then it would not be a control).
    """
    with _threads(1):
        return _run_one(config, spec, progress=progress)


def _run_one(
    config: CompressionConfig, spec: RunSpec, *, progress: Progress | None = None
) -> tuple[RunRecord, torch.Tensor]:
    t0 = time.perf_counter()
    seed = run_seed(config, spec)
    _, ytr, _, data = _network(config, spec)
    model = init_mlp(mlp(data.x_train.shape[1], [spec.width] * config.depth, CLASSES), seed)
    model = model.to(config.torch_device())
    ts = config.train
    matched = spec.arm == "matched_steps"
    hist = train(
        model,
        data,
        TrainConfig(
            epochs=10**9 if matched else ts.max_epochs,
            batch_size=ts.batch_size,
            lr=ts.lr,
            momentum=ts.momentum,
            weight_decay=ts.weight_decay,
            optimizer=ts.optimizer,
            seed=seed,
            target_loss=None if matched else ts.target_loss,
            max_steps=ts.matched_steps if matched else None,
        ),
        loss="cross_entropy",
    )
    t_train = time.perf_counter() - t0
    space = ParamSpace(ModelBundle.from_module(model, data, "cross_entropy"))
    theta = space.theta0.detach().clone()
    tl, ta = space.evaluate(theta, "train")
    el, ea = space.evaluate(theta, "test")
    if config.negative_control and spec.noise > 0:
        theta = rescale_layer_pair(space, theta, 0, config.control_factor**spec.noise)
    theta_m = canonicalize(space, theta) if config.canonicalize else theta
    bcfg = config.basins.with_seed(seed)
    pool = input_pool(spec.dataset).to(config.torch_device())
    ms = measure(space, theta_m, bcfg, jacobian_inputs=pool, progress=progress)
    details: dict[str, Any] = {"measures": ms.to_dict()}
    control = None
    diff = cdiff = math.nan
    if config.control:
        theta_c = rescale_layer_pair(space, theta, 0, config.control_factor)
        diff = check_same_function(space, theta, theta_c, samples=256)
        if not diff <= config.function_tol:
            raise ConfigError(
                f"the rescaling control changed run {spec.run_id}'s outputs by {diff:.2g}"
                f" (> function_tol {config.function_tol:g}); it is not function-preserving."
            )
        theta_cm = canonicalize(space, theta_c) if config.canonicalize else theta_c
        cdiff = float((theta_cm - theta_m).norm() / theta_m.norm())
        cms = measure(
            space,
            theta_cm,
            dataclasses.replace(bcfg, measures=config.control_measures),
            jacobian_inputs=pool,
            progress=progress,
        )
        control = BasinMeasures.from_set(cms)
        details["control_measures"] = cms.to_dict()
    record = RunRecord(
        spec=spec,
        run_seed=seed,
        num_params=space.dim,
        steps=hist.steps,
        epochs=hist.epochs_run,
        reached_target=bool(tl <= ts.target_loss),
        train_loss=float(tl),
        train_accuracy=float(ta),
        test_loss=float(el),
        test_accuracy=float(ea),
        param_norm=float(theta_m.norm()),
        raw_param_norm=float(theta.norm()),
        margin=mean_margin(space, theta),
        clean_label_fraction=float((data.y_train.cpu() == ytr).float().mean()),
        measures=BasinMeasures.from_set(ms),
        control=control,
        control_function_diff=float(diff),
        control_canonical_diff=cdiff,
        seconds=round(time.perf_counter() - t0, 3),
        train_seconds=round(t_train, 3),
        details=details,
    )
    return record, theta


def _run_path(run: Path, spec: RunSpec) -> Path:
    return run / "runs" / f"{spec.run_id}.json"


def _run_and_save(config_dict: dict[str, Any], spec_dict: dict[str, Any], run_path: str) -> str:
    """Worker entry point: run one spec and write its files (returns the run id)."""
    config = CompressionConfig.from_dict(config_dict)
    spec = RunSpec(**spec_dict)
    record, theta = run_one(config, spec)
    _save_run(Path(run_path), record, theta)
    return spec.run_id


def _save_run(run: Path, record: RunRecord, theta: torch.Tensor) -> None:
    pt = run / "runs" / f"{record.spec.run_id}.pt"
    atomic_write(pt, lambda p: torch.save(theta.detach().cpu().clone(), p))
    write_json(_run_path(run, record.spec), record.to_dict())


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _load_record(path: Path) -> RunRecord | None:
    data = _load_json(path)
    if data is None:
        return None
    try:
        return RunRecord.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class GroupCount:
    """Basins among the networks of one label draw (they share one training loss).

    Attributes:
        group: the group's name; ``dataset``, ``arm``, ``noise``, ``width``, ``label_draw``.
        num_minima: networks counted.
        num_basins: connected components of the graph of barriers below the threshold.
        mean_barrier, max_barrier: over pairs, after alignment (max along the path minus
            the mean of the two endpoint losses).
        threshold: the barrier threshold.
        aligned: whether weight matching and rebalancing were applied.
        curve: whether a curve other than the straight line was tried (no: linear paths).
    """

    group: str
    dataset: str
    arm: str
    noise: float
    width: int
    label_draw: int
    num_minima: int
    num_basins: int
    mean_barrier: float
    max_barrier: float
    threshold: float
    aligned: bool = True
    curve: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        d = dataclasses.asdict(self)
        return {k: (_json_float(v) if isinstance(v, float) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupCount:
        """Read back :meth:`to_dict`."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def count_group(config: CompressionConfig, run: Path, specs: list[RunSpec]) -> GroupCount:
    """Align the group's minima (rebalance + weight matching) and count basins by barriers."""
    spec0 = specs[0]
    space, _, _, _ = _network(config, spec0)
    dev = config.torch_device()
    thetas = [torch.load(run / "runs" / f"{s.run_id}.pt", weights_only=True).to(dev) for s in specs]
    res = count_basins(
        space,
        thetas,
        threshold=config.barrier_threshold,
        align=True,
        rescale=True,
        points=config.barrier_points,
        seed=config.seed,
    )
    iu = np.triu_indices(len(thetas), 1)
    return GroupCount(
        group=spec0.group,
        dataset=spec0.dataset,
        arm=spec0.arm,
        noise=spec0.noise,
        width=spec0.width,
        label_draw=spec0.label_draw,
        num_minima=len(thetas),
        num_basins=int(res.num_basins),
        mean_barrier=float(res.barriers[iu].mean()),
        max_barrier=float(res.barriers[iu].max()),
        threshold=config.barrier_threshold,
        aligned=bool(res.aligned),
        curve=res.curve is not None,
    )


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
) -> CompressionSummary:
    """Run (or resume) the experiment in ``out`` and return its summary.

    Finished networks (``runs/<id>.json``) and counted groups are never recomputed.

    Example:
        >>> import tempfile
        >>> from landscape.experiments.compression import load_config
        >>> s = run_compression(load_config("quick"), tempfile.mkdtemp() + "/c")  # doctest: +SKIP
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
                    pool.submit(_run_and_save, cfg_dict, dataclasses.asdict(s), str(root))
                    for s in todo
                ]
                for fut in as_completed(futs):
                    fut.result()
                    task.advance()
        else:
            for s in todo:
                record, theta = run_one(config, s)
                _save_run(root, record, theta)
                task.advance()
    records: list[RunRecord] = []
    for s in specs:
        rec = _load_record(_run_path(root, s))
        if rec is None:
            raise RunDirError(f"run {s.run_id} has no result; rerun with --resume.")
        records.append(rec)
    groups: list[GroupCount] = []
    groups_computed = 0
    if config.counting and config.seeds_per_label_draw >= 2:
        by_group: dict[str, list[RunSpec]] = {}
        for s in specs:
            by_group.setdefault(s.group, []).append(s)
        with tracked(progress, "basin counting", len(by_group)) as task, _threads(1):
            for name, members in by_group.items():
                path = root / "groups" / f"{name}.json"
                data = _load_json(path)
                if data is None:
                    gc = count_group(config, root, members)
                    write_json(path, gc.to_dict())
                    groups_computed += 1
                else:
                    gc = GroupCount.from_dict(data)
                groups.append(gc)
                task.advance()
    summary = analyze(config, records, groups)
    summary = dataclasses.replace(
        summary,
        runs_computed=len(todo),
        runs_reused=len(specs) - len(todo),
        groups_computed=groups_computed,
        seconds=round(time.perf_counter() - t0, 2),
    )
    write_tables(run, records)
    run.update_summary(
        {"name": root.name, "versions": versions(), "compression": summary.to_dict()}
    )
    atomic_write(root / "verdict.md", lambda p: p.write_text(verdict_markdown(summary)))
    return summary


def _num(v: Any) -> float:
    if isinstance(v, bool | int | float):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def write_tables(run: RunDir, records: list[RunRecord]) -> None:
    """``results.csv`` and ``results.nc`` with one row per run."""
    import csv
    import io

    import xarray as xr

    rows = [r.row() for r in records]
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in rows:
        w.writerow([r.get(c, "") for c in cols])
    text = buf.getvalue()
    atomic_write(run.path / "results.csv", lambda p: p.write_text(text))
    text_cols = {"run_id", "cell", "group", "dataset", "arm"}
    data_vars = {}
    for c in cols:
        if c in text_cols:
            data_vars[c] = ("run", np.array([str(r.get(c, "")) for r in rows], dtype=object))
        else:
            data_vars[c] = ("run", np.array([_num(r.get(c)) for r in rows]))
    ds = xr.Dataset(data_vars, coords={"run": np.arange(len(rows))})
    ds.attrs["experiment"] = "compression"
    if run.results_path.exists():
        run.results_path.unlink()
    run.write_arrays(ds)


def default_out_dir() -> Path:
    """``runs/compression-<time>``."""
    from landscape.io.rundir import default_run_dir

    return default_run_dir("compression")
