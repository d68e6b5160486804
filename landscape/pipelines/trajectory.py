"""Geometry along a training run: the same measures at every checkpoint, and the PCA path.

Given the checkpoints of one training run, :func:`run_trajectory` measures each with one
configuration (the same data, loss and model options for every checkpoint):

* train and test loss and accuracy, and the gap ``test loss − train loss``;
* λmax and the trace of the Hessian from one Krylov sweep
  (:func:`~landscape.hessian.sweep.spectrum`), with error bars: the Ritz residual
  ``‖H v − λ v‖`` bounds ``|λ − λ_true|`` for the symmetric Hessian, and the trace carries
  the standard error of its residual probes;
* the local learning coefficient (:func:`~landscape.basins.llc.estimate_llc`, optional,
  with a cheap SGLD setting; it is only meaningful near a minimum, which the result's
  ``trustworthy`` flag and notes judge);
* the mean power-law exponent α of the weight spectra
  (:func:`~landscape.metrics.weight_spectra.weight_spectra`) over the layers where it is
  defined (NaN with a note otherwise);
* ‖θ‖, and the distances ``‖θ_t − θ_first‖`` and ``‖θ_t − θ_last‖``.

The path itself is summarized as in Li et al., *Visualizing the Loss Landscape of Neural
Nets* (2018), Fig. 9: the rows ``θ_t − θ_final`` are stacked, the top two principal
directions taken by SVD (:func:`~landscape.surface.directions.pca_directions`; raw, not
filter-normalized, so the path coordinates are the projections), and the loss is evaluated
on a 2D grid spanned by them around the final checkpoint. The explained-variance ratios
and each checkpoint's projection residual (the part of ``θ_t − θ_final`` outside the
plane, relative to its norm) say how much of the path the picture shows.

Results go to the run directory: ``summary.json`` (section ``trajectory``, one entry per
measured checkpoint as soon as it is done) and ``results.nc`` (every per-checkpoint value
over the ``step`` dimension, the surface on ``alpha``/``beta``). A rerun with ``resume``
skips checkpoints already measured (same step, same file hash).
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.basins.llc import LLCConfig
from landscape.engine.context import DistributedContext, resolve_context
from landscape.engine.data_parallel import DataParallel
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError, NotApplicable
from landscape.io.model_bundle import ModelBundle
from landscape.io.rundir import RunDir, versions
from landscape.progress import Progress, tracked
from landscape.results import Estimate
from landscape.surface.directions import CHECKPOINT_SUFFIXES
from landscape.surface.result import Surface

STEP_KEYS = ("step", "global_step")
"""Keys read as the training step: in a bundle's ``meta``, then at a checkpoint's top level."""

BundleLoader = Callable[[Path], ModelBundle]
"""Loads one checkpoint into a bundle (sharing the data and loss of the others)."""

_NAN = float("nan")


def _num(x: Any) -> float:
    """A float from a JSON value (``None`` and ``"nan"`` become NaN)."""
    return _NAN if x is None else float(x)


# -- finding and ordering checkpoints ----------------------------------------------
@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint file and its training step.

    Attributes:
        path: the file.
        step: the training step.
        source: where the step came from: ``meta`` (stored in the checkpoint) or ``name``
            (the last integer in the file name).
    """

    path: Path
    step: int
    source: str


def _step_from_object(obj: Any) -> int | None:
    if not isinstance(obj, dict):
        return None
    meta = obj.get("meta")
    places: list[dict[str, Any]] = [meta] if isinstance(meta, dict) else []
    places.append(obj)
    for place in places:
        for key in STEP_KEYS:
            v = place.get(key)
            if isinstance(v, int) and not isinstance(v, bool):
                return int(v)
            if isinstance(v, float) and v.is_integer():
                return int(v)
    return None


def stored_step(path: str | Path) -> int | None:
    """The training step stored in a checkpoint, or ``None`` if it holds none.

    Read from a landscape bundle's ``meta`` (``save(..., meta={"step": 100})``), from a
    ``step``/``global_step`` entry of a checkpoint dictionary (Lightning's ``global_step``)
    or from a safetensors header's metadata. Files that need trusted unpickling are not
    opened for this (their step comes from the name).

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> from landscape.io.save import save
        >>> p = save(nn.Linear(2, 2), tempfile.mktemp(suffix=".pt"), factory="torch.nn:Linear",
        ...          meta={"step": 40})
        >>> stored_step(p)
        40
    """
    p = Path(path)
    if p.suffix.lower() == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception:  # noqa: BLE001 - unreadable: the loader reports it later
            return None
        for key in STEP_KEYS:
            if str(meta.get(key, "")).lstrip("-").isdigit():
                return int(meta[key])
        return None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a plain torch.save of data: no stored step
        return None
    return _step_from_object(obj)


def name_step(path: str | Path) -> int | None:
    """The last integer in the file name (without its suffix), or ``None``.

    Example:
        >>> name_step("runs/ckpt_epoch3_step1200.pt"), name_step("final.pt")
        (1200, None)
    """
    found = re.findall(r"\d+", Path(path).stem)
    return int(found[-1]) if found else None


def find_checkpoints(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """The checkpoint files that folders, globs or files name (unordered, deduplicated).

    Args:
        spec: a folder (its checkpoint files), a glob, a file, or a list of these (as a
            shell expands an unquoted glob).

    Example:
        >>> find_checkpoints("/nonexistent/*.pt")
        Traceback (most recent call last):
        ...
        landscape.errors.ConfigError: no checkpoints match /nonexistent/*.pt; give a folder of checkpoints or a glob like 'ckpts/*.pt'.
    """
    specs = [spec] if isinstance(spec, str | Path) else list(spec)
    files: list[Path] = []
    for one in specs:
        p = Path(str(one)).expanduser()
        if p.is_dir():
            files += [
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in CHECKPOINT_SUFFIXES
            ]
        else:
            files += [Path(f) for f in globlib.glob(str(p), recursive=True) if Path(f).is_file()]
    files = sorted({f.resolve(): f for f in files}.values())
    if not files:
        text = " ".join(map(str, specs))
        raise ConfigError(
            f"no checkpoints match {text}; give a folder of checkpoints or a glob like"
            " 'ckpts/*.pt'."
        )
    return files


def order_checkpoints(paths: Sequence[str | Path]) -> list[CheckpointRef]:
    """Order checkpoints by training step.

    The step is the one stored in the checkpoint (:func:`stored_step`) when every file
    stores one, else the last integer in each file name (:func:`name_step`).

    Raises:
        ConfigError: a file without a step, two files with the same step, or some files
            with a stored step and others without.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> for n in ("e10.pt", "e2.pt"): (d / n).write_bytes(b"x")
        1
        1
        >>> [(r.path.name, r.step, r.source) for r in order_checkpoints(sorted(d.iterdir()))]
        [('e2.pt', 2, 'name'), ('e10.pt', 10, 'name')]
    """
    files = [Path(p) for p in paths]
    stored = {f: stored_step(f) for f in files}
    with_meta = [f for f in files if stored[f] is not None]
    if with_meta and len(with_meta) < len(files):
        missing = next(f for f in files if stored[f] is None)
        raise ConfigError(
            f"{with_meta[0].name} stores its training step but {missing.name} does not; give"
            " checkpoints of one run saved the same way."
        )
    refs: list[CheckpointRef] = []
    for f in files:
        if stored[f] is not None:
            refs.append(CheckpointRef(f, int(stored[f]), "meta"))  # type: ignore[arg-type]
            continue
        step = name_step(f)
        if step is None:
            raise ConfigError(
                f"cannot tell the training step of {f.name}: it stores none and its name has no"
                " number; save it with meta={'step': N} or name it like ckpt_N.pt."
            )
        refs.append(CheckpointRef(f, step, "name"))
    refs.sort(key=lambda r: r.step)
    for a, b in zip(refs, refs[1:], strict=False):
        if a.step == b.step:
            raise ConfigError(
                f"{a.path.name} and {b.path.name} both have step {a.step} (from their"
                f" {a.source}); keep one checkpoint per step."
            )
    return refs


def resolve_checkpoints(spec: str | Path | Sequence[str | Path]) -> list[CheckpointRef]:
    """Checkpoints named by folders, globs or files, ordered by step (at least two).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> for n in ("s5.pt", "s50.pt", "s7.pt"): (d / n).write_bytes(b"x")
        1
        1
        1
        >>> [r.step for r in resolve_checkpoints(d)]
        [5, 7, 50]
    """
    refs = order_checkpoints(find_checkpoints(spec))
    if len(refs) < 2:
        raise ConfigError(
            f"only one checkpoint matches ({refs[0].path.name}); a trajectory needs at least 2."
        )
    return refs


# -- configuration and results -----------------------------------------------------
def cheap_llc_config() -> LLCConfig:
    """The trajectory's default SGLD setting: 2 chains of 200 draws after 100 steps."""
    return LLCConfig(chains=2, draws=200, burn_in=100, batch_size=256, mala_every=0)


@dataclass(frozen=True)
class TrajectoryConfig:
    """What :func:`run_trajectory` measures at each checkpoint.

    Attributes:
        top_k: top Hessian eigenvalues of the sweep (λmax is the first).
        tol: relative residual tolerance of the eigenpairs.
        slq_runs: SLQ runs of the sweep (1: only the eigenpair run).
        slq_steps: least Lanczos steps of the eigenpair run.
        trace_tol: relative standard error at which the trace stops drawing probes.
        trace_matvecs: most products the trace probes spend.
        strategy: Hessian-vector product strategy.
        llc: estimate the local learning coefficient.
        llc_config: its SGLD setting.
        weights: fit the weight-spectrum α.
        surface: evaluate the 2D loss surface on the PCA plane.
        surface_grid: its grid.
        surface_margin: the grid covers the path's extent plus this fraction each side.
        surface_compile: ``compile`` option of the surface evaluation.
        params: globs restricting every measure to those parameters (``None``: all).
        seed: seed of every random choice.
    """

    top_k: int = 3
    tol: float = 1e-5
    slq_runs: int = 1
    slq_steps: int = 20
    trace_tol: float = 0.05
    trace_matvecs: int = 30
    strategy: str = "auto"
    llc: bool = True
    llc_config: LLCConfig = field(default_factory=cheap_llc_config)
    weights: bool = True
    surface: bool = True
    surface_grid: tuple[int, int] = (21, 21)
    surface_margin: float = 0.25
    surface_compile: bool | str = "auto"
    params: tuple[str, ...] | None = None
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` on values that cannot work."""
        if self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k}.")
        if self.slq_runs < 1 or self.slq_steps < 2:
            raise ConfigError("slq_runs must be ≥ 1 and slq_steps ≥ 2.")
        if len(self.surface_grid) != 2 or min(self.surface_grid) < 2:
            grid = "x".join(map(str, self.surface_grid))
            raise ConfigError(f"--grid {grid} must be two sizes of at least 2, like 21x21.")
        if not self.surface_margin >= 0:
            raise ConfigError(f"surface_margin must be ≥ 0, got {self.surface_margin}.")
        if self.llc:
            self.llc_config.validate()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready configuration."""
        d = asdict(self)
        d["surface_grid"] = list(self.surface_grid)
        d["params"] = None if self.params is None else list(self.params)
        return d


@dataclass(frozen=True)
class CheckpointMeasure:
    """Everything measured at one checkpoint.

    Attributes:
        step: training step.
        path: the checkpoint file.
        sha256: its hash (a resumed run re-measures a file whose hash changed).
        train_loss: mean training loss.
        train_accuracy: training accuracy (NaN for regression).
        test_loss: mean test loss (NaN without test data).
        test_accuracy: test accuracy.
        gap: ``test_loss − train_loss``.
        lambda_max: largest Hessian eigenvalue (Ritz value).
        lambda_max_error: its residual ``‖H v − λ v‖``, a bound on ``|λ − λ_true|``.
        lambda_max_converged: whether the residual met the tolerance.
        top_eigenvalues: the top-k Ritz values.
        trace: Hessian trace with its standard error.
        trace_resolved: whether the trace met its tolerance.
        frobenius: Frobenius norm of the Hessian with its standard error.
        llc: local learning coefficient (NaN when not estimated).
        llc_trustworthy: the estimator's verdict on its own run (``None``: not estimated).
        alpha: mean power-law exponent of the weight spectra over the fitted layers.
        alpha_note: why α is NaN (``None`` when defined).
        param_norm: ``‖θ‖``.
        distance_first: ``‖θ − θ_first‖``.
        distance_last: ``‖θ − θ_last‖``.
        pca: coordinates of ``θ − θ_final`` on the two PCA directions (NaN before PCA).
        pca_residual: ``‖r‖/‖θ − θ_final‖`` for the part ``r`` outside the PCA plane.
        matvecs: Hessian-vector products spent.
        seconds: wall time of the measurement.
    """

    step: int
    path: str
    sha256: str
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    gap: float
    lambda_max: float
    lambda_max_error: float
    lambda_max_converged: bool
    top_eigenvalues: tuple[float, ...]
    trace: Estimate
    trace_resolved: bool
    frobenius: Estimate
    llc: Estimate = Estimate(_NAN, _NAN, 0)
    llc_trustworthy: bool | None = None
    alpha: float = _NAN
    alpha_note: str | None = None
    param_norm: float = _NAN
    distance_first: float = _NAN
    distance_last: float = _NAN
    pca: tuple[float, float] = (_NAN, _NAN)
    pca_residual: float = _NAN
    matvecs: int = 0
    seconds: float = _NAN

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        d = asdict(self)
        for k in ("trace", "frobenius", "llc"):
            d[k] = getattr(self, k).to_dict()
        d["top_eigenvalues"] = list(self.top_eigenvalues)
        d["pca"] = list(self.pca)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointMeasure:
        """Rebuild from :meth:`to_dict` (as read back from ``summary.json``)."""

        def est(x: dict[str, Any]) -> Estimate:
            return Estimate(_num(x["mean"]), _num(x["stderr"]), int(x["n"]), x.get("method", ""))

        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            v = d[f.name]
            if f.name in ("trace", "frobenius", "llc"):
                v = est(v)
            elif f.name in ("top_eigenvalues", "pca"):
                v = tuple(_num(x) for x in v)
            elif f.type in ("float",):
                v = _num(v)
            kw[f.name] = v
        return cls(**kw)


@dataclass(frozen=True)
class PathPCA:
    """The PCA summary of the path (Li et al. 2018, Fig. 9).

    Attributes:
        explained_variance: the two directions' explained-variance ratios.
        directions: the two unit directions (flat, CPU float64), or ``None`` when not kept.
        coordinates: each checkpoint's projection, shape ``(steps, 2)``.
        residual: each checkpoint's relative projection residual.
    """

    explained_variance: tuple[float, float]
    coordinates: np.ndarray
    residual: np.ndarray
    directions: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass(frozen=True)
class Trajectory:
    """The measured trajectory.

    Attributes:
        points: one :class:`CheckpointMeasure` per checkpoint, by step.
        pca: the path's principal plane.
        surface: the loss on that plane around the final checkpoint (``None`` when off).
        measured: steps measured in this call (the others came from a resumed run).
        notes: plain statements (α undefined, LLC untrustworthy, ...).
    """

    points: tuple[CheckpointMeasure, ...]
    pca: PathPCA
    surface: Surface | None = None
    measured: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def steps(self) -> np.ndarray:
        """The training steps."""
        return np.array([p.step for p in self.points], dtype=np.int64)

    def to_dataset(self) -> Any:
        """An ``xarray.Dataset`` over ``step`` (and the surface on ``alpha``/``beta``)."""
        import xarray as xr

        pts = self.points

        def col(get: Callable[[CheckpointMeasure], float]) -> tuple[str, np.ndarray]:
            return ("step", np.array([get(p) for p in pts], dtype=np.float64))

        data = {
            "ckpt_train_loss": col(lambda p: p.train_loss),
            "ckpt_train_accuracy": col(lambda p: p.train_accuracy),
            "ckpt_test_loss": col(lambda p: p.test_loss),
            "ckpt_test_accuracy": col(lambda p: p.test_accuracy),
            "ckpt_gap": col(lambda p: p.gap),
            "lambda_max": col(lambda p: p.lambda_max),
            "lambda_max_error": col(lambda p: p.lambda_max_error),
            "trace": col(lambda p: p.trace.mean),
            "trace_stderr": col(lambda p: p.trace.stderr),
            "frobenius": col(lambda p: p.frobenius.mean),
            "frobenius_stderr": col(lambda p: p.frobenius.stderr),
            "llc": col(lambda p: p.llc.mean),
            "llc_stderr": col(lambda p: p.llc.stderr),
            "weight_alpha": col(lambda p: p.alpha),
            "param_norm": col(lambda p: p.param_norm),
            "distance_first": col(lambda p: p.distance_first),
            "distance_last": col(lambda p: p.distance_last),
            "pca_residual": col(lambda p: p.pca_residual),
            "path_pc1": col(lambda p: p.pca[0]),
            "path_pc2": col(lambda p: p.pca[1]),
        }
        ds = xr.Dataset(data, coords={"step": self.steps})
        ds.attrs["pca_explained_variance"] = [float(x) for x in self.pca.explained_variance]
        if self.surface is not None:
            sds = self.surface.to_dataset()
            if "step" in sds.dims:
                sds = sds.assign_coords(step=self.steps)
            ds = xr.merge([ds, sds], combine_attrs="override")
            ds.attrs["pca_explained_variance"] = [float(x) for x in self.pca.explained_variance]
        return ds

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the surface's scalars, not its grid)."""
        out: dict[str, Any] = {
            "steps": [int(s) for s in self.steps],
            "points": [p.to_dict() for p in self.points],
            "pca": {
                "explained_variance": list(self.pca.explained_variance),
                "max_residual": float(np.max(self.pca.residual)),
            },
            "notes": list(self.notes),
        }
        if self.surface is not None:
            out["surface"] = self.surface.to_dict()
        return out


# -- measuring ---------------------------------------------------------------------
def shared_loader(
    data: Any,
    loss: Any = None,
    *,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    trust: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> BundleLoader:
    """A :data:`BundleLoader` giving every checkpoint the same data and loss objects.

    Args:
        data: the :class:`~landscape.io.data.DataSource` (loaded once by the caller).
        loss: a loss spec or name (resolved once, on the first checkpoint).
        model: ``MODULE:FACTORY`` for plain state_dicts.
        model_kwargs: its keyword arguments.
        trust: allow unpickling arbitrary objects.
        device: device override.
        dtype: dtype override.

    Example:
        >>> import tempfile
        >>> from landscape.io import load_data
        >>> from landscape.io.save import save
        >>> from landscape.models import mlp
        >>> p = save(mlp(10, 4, 3), tempfile.mktemp(suffix=".pt"),
        ...          factory="landscape.models:mlp",
        ...          factory_kwargs={"in_features": 10, "hidden": 4, "num_classes": 3})
        >>> load = shared_loader(load_data("synthetic"))
        >>> load(p).data is load(p).data
        True
    """
    from landscape.io.checkpoint import load_model

    state: dict[str, Any] = {"loss": loss}

    def load(path: Path) -> ModelBundle:
        loaded = load_model(path, model=model, model_kwargs=model_kwargs, trust=trust)
        bundle = ModelBundle.from_module(
            loaded.module,
            data,
            state["loss"] or loaded.defaults.get("loss"),
            device=device,
            dtype=dtype,
            provenance=loaded.provenance(),
            scripted=loaded.scripted,
        )
        state["loss"] = bundle.loss
        return bundle

    return load


def _architecture(space: ParamSpace) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((i.name, i.shape) for i in space.infos)


def _check_same(
    first: tuple[tuple[str, tuple[int, ...]], ...],
    arch: tuple[tuple[str, tuple[int, ...]], ...],
    name0: str,
    name: str,
) -> None:
    if arch == first:
        return
    a, b = dict(first), dict(arch)
    diff = next(
        (k for k in list(a) + list(b) if a.get(k) != b.get(k)),
        "the parameter order",
    )
    raise ConfigError(
        f"{name} is not the architecture of {name0} ({diff}: {b.get(diff)} vs {a.get(diff)});"
        " give checkpoints of one model."
    )


def _alpha(bundle: ModelBundle, config: TrajectoryConfig) -> tuple[float, str | None]:
    from landscape.metrics.weight_spectra import weight_spectra

    try:
        ws = weight_spectra(bundle.module, params=config.params, seed=config.seed, traps=False)
    except NotApplicable as exc:
        return _NAN, str(exc)
    alpha = ws.averages()["alpha"]
    if math.isfinite(alpha):
        return alpha, None
    notes = {lay.power_law.note for lay in ws.layers if lay.power_law.note}
    why = "; ".join(sorted(notes)) or "no power-law tail could be fit"
    return _NAN, f"α undefined: no layer's spectrum was fit ({why})."


def measure_checkpoint(
    bundle: ModelBundle,
    ref: CheckpointRef,
    config: TrajectoryConfig,
    *,
    progress: Progress | None = None,
    context: DistributedContext | None = None,
) -> CheckpointMeasure:
    """Measure one checkpoint (distances and PCA coordinates are filled in later).

    Under torchrun (``context`` distributed) the losses and every curvature product are
    data-parallel over the ranks' shards and every rank gets the same numbers; the LLC
    sampler runs on rank 0 over all the data and its result is broadcast.

    Example:
        >>> from torch import nn
        >>> from landscape.io import load_data
        >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
        >>> m = measure_checkpoint(b, CheckpointRef(Path("a.pt"), 0, "name"),
        ...                        TrajectoryConfig(llc=False, surface=False))
        >>> m.lambda_max > 0 and m.trace.mean > 0
        True
    """
    from landscape.basins.llc import estimate_llc
    from landscape.hessian.sweep import spectrum

    t0 = time.perf_counter()
    space = ParamSpace(bundle, params=config.params)
    dp = DataParallel(bundle, context, space=space)
    loss, acc = dp.evaluate()
    tl, ta = dp.evaluate(split="test") if bundle.data.has_test else (_NAN, _NAN)
    op = dp.operator(strategy=config.strategy)
    sw = spectrum(
        op,
        top_k=min(config.top_k, space.dim),
        bottom_k=0,
        tol=config.tol,
        slq_runs=config.slq_runs,
        slq_steps=config.slq_steps,
        trace_tol=config.trace_tol,
        frobenius_tol=max(config.trace_tol, 0.02),
        trace_matvecs=config.trace_matvecs,
        seed=config.seed,
        progress=progress,
    )
    op.release()
    llc, trusted = Estimate(_NAN, _NAN, 0), None
    if config.llc:

        def sample() -> tuple[Estimate, bool]:
            r = estimate_llc(
                space,
                config=dataclasses.replace(config.llc_config, seed=config.seed),
                hessian_eigenvalues=np.asarray(sw.top.values),
                progress=progress,
            )
            return r.llc, bool(r.trustworthy)

        llc, trusted = dp.context.on_main(sample)
    alpha, note = _alpha(bundle, config) if config.weights else (_NAN, "weights off")
    return CheckpointMeasure(
        step=ref.step,
        path=str(ref.path),
        sha256=str(bundle.provenance.get("sha256", "")),
        train_loss=float(loss),
        train_accuracy=float(acc),
        test_loss=float(tl),
        test_accuracy=float(ta),
        gap=float(tl - loss),
        lambda_max=float(sw.top.values[0]),
        lambda_max_error=float(sw.top.residuals[0]),
        lambda_max_converged=bool(sw.top.converged[0]),
        top_eigenvalues=tuple(float(v) for v in sw.top.values[: config.top_k]),
        trace=sw.trace,
        trace_resolved=bool(sw.trace_resolved),
        frobenius=sw.frobenius,
        llc=llc,
        llc_trustworthy=trusted,
        alpha=float(alpha),
        alpha_note=note,
        param_norm=float(space.theta0.double().norm()),
        matvecs=int(op.matvecs),
        seconds=round(time.perf_counter() - t0, 4),
    )


def path_pca(thetas: Sequence[torch.Tensor], *, keep_directions: bool = False) -> PathPCA:
    """Top two principal directions of ``θ_t − θ_final`` and each checkpoint's projection.

    The rows ``θ_t − θ_final`` are centred and decomposed by SVD in float64, with the
    sign convention of :func:`~landscape.surface.directions.pca_directions` (the first
    checkpoint has non-positive coordinates). The residual of checkpoint ``t`` is ``‖(I − BBᵀ)(θ_t − θ_final)‖ / ‖θ_t − θ_final‖``
    (0 for the final checkpoint itself).

    Example:
        >>> e = torch.eye(33, dtype=torch.float64)
        >>> th = [a * e[0] + b * e[5] for a, b in ((2, 1), (1, 3), (0, 0))]
        >>> p = path_pca(th)
        >>> round(sum(p.explained_variance), 9), float(p.residual.max()) < 1e-12
        (1.0, True)
    """
    if len(thetas) < 2:
        raise ConfigError(f"a path needs at least 2 checkpoints, got {len(thetas)}.")
    final = thetas[-1].detach().to("cpu", torch.float64)
    rows = torch.stack([t.detach().to("cpu", torch.float64) - final for t in thetas])
    centred = rows - rows.mean(dim=0, keepdim=True)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)
    total = float((s**2).sum())
    if total == 0.0:
        raise ConfigError(
            "the checkpoints are all identical; give checkpoints from different training steps."
        )
    vecs = []
    for k in range(min(2, vt.shape[0])):
        v = vt[k].clone()
        first = float(rows[0] @ v)  # the same sign convention as pca_directions
        if first > 0 or (first == 0 and float(v[int(v.abs().argmax())]) < 0):
            v = -v
        vecs.append(v)
    basis = torch.stack(vecs)
    coords = (rows @ basis.T).numpy()
    ev = [float(x) for x in s[: len(vecs)] ** 2 / total]
    if len(vecs) == 1:
        coords = np.hstack([coords, np.zeros((coords.shape[0], 1))])
        ev.append(0.0)
    res = []
    for d in rows:
        nd = float(d.norm())
        r = d - basis.T @ (basis @ d)
        res.append(float(r.norm()) / nd if nd > 0 else 0.0)
    return PathPCA(
        (float(ev[0]), float(ev[1])),
        coords,
        np.asarray(res),
        tuple(vecs) if keep_directions and len(vecs) == 2 else None,  # type: ignore[arg-type]
    )


def _surface(
    space: ParamSpace, thetas: Sequence[torch.Tensor], config: TrajectoryConfig, progress: Any
) -> Surface:
    from landscape.surface.directions import pca_directions
    from landscape.surface.evaluate import evaluate_surface
    from landscape.surface.grid import GridSpec

    if len(thetas) < 3:
        raise NotApplicable("the PCA surface needs at least 3 checkpoints (2 give a segment).")
    dirs = pca_directions(space, thetas, 2, origin=thetas[-1])
    coords = np.vstack([np.asarray(dirs.trajectory), np.zeros((1, 2))])
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = hi - lo
    widest = float(span.max())
    ranges = []
    for k in range(2):
        pad = config.surface_margin * max(float(span[k]), 0.1 * widest) + 1e-12 * (1 + widest)
        ranges.append((float(lo[k]) - pad, float(hi[k]) + pad))
    grid = GridSpec(tuple(config.surface_grid), tuple(ranges))
    return evaluate_surface(space, dirs, grid, compile=config.surface_compile, progress=progress)


def run_trajectory(
    checkpoints: Sequence[CheckpointRef],
    load: BundleLoader,
    run: RunDir,
    config: TrajectoryConfig,
    *,
    progress: Progress | None = None,
    context: DistributedContext | None = None,
) -> Trajectory:
    """Measure every checkpoint of a training run into ``run`` (resuming what is there).

    Under torchrun every rank measures its data shard of each checkpoint (see
    :func:`measure_checkpoint`); rank 0 alone reports progress, draws the surface and
    writes.

    Args:
        checkpoints: the checkpoints, ordered by step (:func:`resolve_checkpoints`).
        load: turns a path into a bundle; give every checkpoint the same data and loss
            (:func:`shared_loader`).
        run: the run directory. Entries of ``summary["trajectory"]["measured"]`` with the
            same step and file hash are reused, not measured again.
        config: what to measure.
        progress: progress reporter.
        context: the distributed context (default: the current process group, if any).

    Returns:
        The :class:`Trajectory` (also written to ``summary.json`` and ``results.nc``).

    Raises:
        ConfigError: fewer than 2 checkpoints, steps out of order, or checkpoints of
            different architectures.

    Example:
        >>> import tempfile
        >>> from landscape.io import load_data
        >>> from landscape.io.save import save
        >>> from landscape.models import linear_model
        >>> d = Path(tempfile.mkdtemp())
        >>> for s in (1, 2, 3):
        ...     _ = torch.manual_seed(s)
        ...     _ = save(linear_model(10, 3), d / f"c{s}.pt", factory=
        ...              "landscape.models:linear_model",
        ...              factory_kwargs={"in_features": 10, "out_features": 3})
        >>> t = run_trajectory(resolve_checkpoints(d), shared_loader(load_data("synthetic")),
        ...                    RunDir.create(d / "run", {}),
        ...                    TrajectoryConfig(llc=False, surface=False))
        >>> t.steps.tolist(), t.points[-1].distance_last
        ([1, 2, 3], 0.0)
    """
    import xarray as xr

    config.validate()
    ctx = resolve_context(context)
    run = ctx.main_only(run)
    progress = progress if ctx.is_main else None
    refs = list(checkpoints)
    if len(refs) < 2:
        raise ConfigError(f"a trajectory needs at least 2 checkpoints, got {len(refs)}.")
    if any(a.step >= b.step for a, b in zip(refs, refs[1:], strict=False)):
        raise ConfigError(
            "checkpoints must be ordered by increasing step; use resolve_checkpoints."
        )
    summary = run.summary()
    section = summary.get("trajectory", {})
    measured: dict[str, Any] = dict(section.get("measured", {}))
    if "versions" not in summary:
        run.update_summary(
            {"versions": versions(), "trajectory": {"config": config.to_dict(), "measured": {}}}
        )
    points: list[CheckpointMeasure] = []
    thetas: list[torch.Tensor] = []
    arch0: tuple[tuple[str, tuple[int, ...]], ...] | None = None
    new: list[int] = []
    last_space: ParamSpace | None = None
    data_desc: dict[str, Any] | None = None
    with tracked(progress, "checkpoints", len(refs)) as task:
        for i, ref in enumerate(refs):
            bundle = load(ref.path)
            space = ParamSpace(bundle, params=config.params)
            arch = _architecture(space)
            if arch0 is None:
                arch0 = arch
                data_desc = bundle.data.describe()
            else:
                _check_same(arch0, arch, refs[0].path.name, ref.path.name)
            thetas.append(space.theta0.detach().to("cpu", torch.float64))
            old = measured.get(str(ref.step))
            sha = str(bundle.provenance.get("sha256", ""))
            point: CheckpointMeasure | None = None
            if (
                isinstance(old, dict)
                and old.get("sha256") == sha
                and old.get("path") == str(ref.path)
            ):
                try:
                    point = CheckpointMeasure.from_dict(old)
                except (KeyError, TypeError, ValueError):
                    point = None  # written by another version: measure it again
            if point is None:
                point = measure_checkpoint(bundle, ref, config, progress=progress, context=ctx)
                run.update_summary({"trajectory": {"measured": {str(ref.step): point.to_dict()}}})
                new.append(ref.step)
            points.append(point)
            if i == len(refs) - 1:
                last_space = space
            task.advance()
    assert last_space is not None
    first, last = thetas[0], thetas[-1]
    pca = path_pca(thetas)
    points = [
        dataclasses.replace(
            p,
            param_norm=float(th.norm()),
            distance_first=float((th - first).norm()),
            distance_last=float((th - last).norm()),
            pca=(float(pca.coordinates[k, 0]), float(pca.coordinates[k, 1])),
            pca_residual=float(pca.residual[k]),
        )
        for k, (p, th) in enumerate(zip(points, thetas, strict=True))
    ]
    notes: list[str] = []
    alpha_notes = {p.alpha_note for p in points if p.alpha_note and config.weights}
    notes.extend(sorted(alpha_notes))
    if config.llc:
        untrusted = [p.step for p in points if p.llc_trustworthy is False]
        if untrusted:
            notes.append(
                f"LLC not trustworthy at {len(untrusted)}/{len(points)} checkpoints (steps"
                f" {', '.join(map(str, untrusted[:6]))}{', …' if len(untrusted) > 6 else ''}):"
                " the cheap SGLD setting, or a point that is not a minimum; read it as a trend."
            )
    surface = None
    surf_key = [p.sha256 for p in points]
    old_surf = section.get("surface_checkpoints")
    if config.surface and ctx.is_main:
        if old_surf == surf_key and not new and run.results_path.exists():
            with xr.open_dataset(run.results_path, engine="h5netcdf") as ds:
                if "train_loss" in ds:
                    surface = Surface.from_dataset(ds.load())
        if surface is None:
            try:
                surface = _surface(last_space, thetas, config, progress)
            except NotApplicable as exc:
                notes.append(str(exc))
    result = Trajectory(tuple(points), pca, surface, tuple(new), tuple(notes))
    ds = result.to_dataset()
    run.write_arrays(ds)  # arrays on a grown step axis replace the stored ones
    run.update_summary(
        {
            "name": run.path.name,
            "data": data_desc,
            "loss_function": last_space.bundle.loss.name,
            "trajectory": {
                **result.to_dict(),
                "config": config.to_dict(),
                "num_checkpoints": len(points),
                "surface_checkpoints": surf_key if surface is not None else None,
            },
        }
    )
    return result
