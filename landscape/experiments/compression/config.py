"""Configuration of the compression experiment: the grid, training arms and analysis."""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from landscape.errors import ConfigError
from landscape.experiments.basins_run import MEASURES, BasinsConfig
from landscape.io.presets import checked_settings, load_preset

PRESETS = {"default": "compression", "quick": "compression_quick", "gpu": "compression_gpu"}

#: ``to_loss`` trains every network to the same training loss (random-label networks then
#: take many more steps); ``matched_steps`` gives every network the same number of
#: optimizer steps (random-label networks then end at a higher loss). A measure that tracks
#: memorization should move the same way in both.
ARMS = ("to_loss", "matched_steps")


@dataclass(frozen=True)
class TrainSettings:
    """How each network is trained.

    Attributes:
        optimizer: ``adam`` or ``sgd``.
        lr: learning rate.
        batch_size: minibatch size.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        max_epochs: epoch cap of the ``to_loss`` arm.
        target_loss: training loss at which the ``to_loss`` arm stops.
        matched_steps: optimizer steps of every network in the ``matched_steps`` arm.
    """

    optimizer: str = "adam"
    lr: float = 0.01
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 0.0
    max_epochs: int = 1000
    target_loss: float = 0.05
    matched_steps: int = 2000


@dataclass(frozen=True)
class CompressionConfig:
    """The experiment grid, training, measures and analysis.

    Attributes:
        datasets: ``digits`` and/or ``mnist1d``.
        label_noise: fractions of training labels replaced by uniform random labels.
        widths: hidden widths of the MLPs.
        depth: hidden layers.
        seeds: networks per cell (dataset, arm, noise, width).
        seeds_per_label_draw: networks that share one draw of the noisy labels. Labels are
            drawn afresh for every group of this many seeds, so a cell holds
            ``seeds / seeds_per_label_draw`` independent label draws; the tests use the
            draw as their unit (its networks' mean), and basins are counted among the
            networks of one draw (they share one loss).
        seed: base seed (every run's seed derives from it and the run's name).
        n_train: training samples (the first ``n_train`` of the dataset's training split).
        n_test: test samples (clean labels).
        arms: training arms (see :data:`ARMS`).
        train: training settings.
        basins: measures (the ``llc`` settings, the basin cutoff, rays, ...).
        canonicalize: measure every network at the minimum-norm representative of its
            ReLU-rescaling orbit (measures that are not invariant then become invariant).
        control: also measure a function-preserving rescaled copy of each network.
        control_factor: first layer × factor, second layer × 1/factor.
        control_measures: which measures to repeat on the control. The functional
            dimension is invariant by construction and the tuned LLC costly, so neither is
            repeated by default; the record's ``control_canonical_diff`` shows that both
            copies are measured at the same point.
        control_tol: relative change under the control above which a measure counts as
            moved by it.
        function_tol: largest relative output change the control may cause (larger is an
            error: the control would not be function-preserving).
        negative_control: replace label noise by a function-preserving rescaling: labels
            stay clean and the network at level ``p`` of ``label_noise`` is measured after
            scaling its first layer by ``control_factor ** p`` (and the next by the
            inverse). Nothing about the function changes with the level, so no measure
            may come out as supporting the claim.
        counting: count basins among the networks of each label draw.
        barrier_threshold: barrier below which two aligned minima share a basin.
        barrier_points: points on each linear path.
        bootstrap: bootstrap resamples for cell intervals.
        permutations: permutations for p-values (the smallest p-value is ``1/(1+permutations)``).
        alpha: family-wise significance level (Holm).
        workers: processes running networks in parallel (1 runs in this process).
        device: where networks are trained and measured (``cpu`` when not given).
    """

    datasets: tuple[str, ...] = ("digits", "mnist1d")
    label_noise: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    widths: tuple[int, ...] = (32, 64, 128)
    depth: int = 1
    seeds: int = 10
    seeds_per_label_draw: int = 2
    seed: int = 0
    n_train: int = 256
    n_test: int = 512
    arms: tuple[str, ...] = ARMS
    train: TrainSettings = field(default_factory=TrainSettings)
    basins: BasinsConfig = field(default_factory=BasinsConfig)
    canonicalize: bool = True
    control: bool = True
    control_factor: float = 4.0
    control_measures: tuple[str, ...] = ("mass", "compress", "curvature")
    control_tol: float = 1e-3
    function_tol: float = 1e-4
    negative_control: bool = False
    counting: bool = True
    barrier_threshold: float = 0.1
    barrier_points: int = 11
    bootstrap: int = 2000
    permutations: int = 20000
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
        kw = checked_settings(cls, data, "compression")
        if "train" in kw:
            kw["train"] = TrainSettings(**checked_settings(TrainSettings, kw["train"], "train"))
        if "basins" in kw:
            kw["basins"] = BasinsConfig.from_dict(kw["basins"])
        for key in ("datasets", "label_noise", "widths", "control_measures", "arms"):
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
        if self.seeds_per_label_draw < 1 or self.seeds % self.seeds_per_label_draw:
            raise ConfigError(
                f"seeds_per_label_draw must divide seeds ({self.seeds}); e.g. use 1 or 2."
            )
        if self.n_train < 8 or self.n_test < 1:
            raise ConfigError("n_train must be ≥ 8 and n_test ≥ 1.")
        if not self.arms or any(a not in ARMS for a in self.arms):
            raise ConfigError(f"arms must be some of {', '.join(ARMS)}.")
        if self.train.matched_steps < 1:
            raise ConfigError("train.matched_steps must be ≥ 1.")
        if self.control_factor <= 0 or self.control_factor == 1:
            raise ConfigError("control_factor must be positive and not 1.")
        if self.control_tol <= 0 or self.function_tol <= 0:
            raise ConfigError("control_tol and function_tol must be positive.")
        if self.workers < 1:
            raise ConfigError("workers must be ≥ 1.")
        if self.permutations < 1:
            raise ConfigError("permutations must be ≥ 1.")
        self.torch_device()
        bad = [m for m in self.control_measures if m not in MEASURES]
        if bad:
            raise ConfigError(f"unknown control measure {bad[0]!r}; use {', '.join(MEASURES)}.")
        extra = [m for m in self.control_measures if m not in self.basins.measures]
        if extra:
            raise ConfigError(
                f"control measure {extra[0]!r} is not among basins.measures; add it there."
            )
        self.basins.validate()

    @property
    def label_draws(self) -> int:
        """Independent label draws per cell."""
        return self.seeds // self.seeds_per_label_draw

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
        for key in ("datasets", "label_noise", "widths", "control_measures", "arms"):
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


@dataclass(frozen=True)
class RunSpec:
    """One network of the grid.

    Attributes:
        dataset: the dataset.
        noise: label-noise fraction.
        width: hidden width.
        seed_index: index of the network within its cell.
        arm: training arm.
        label_draw: which draw of the noisy labels it is trained on.
    """

    dataset: str
    noise: float
    width: int
    seed_index: int
    arm: str = "to_loss"
    label_draw: int = 0

    @property
    def network_id(self) -> str:
        """The network without its arm (both arms share initialization and labels)."""
        return f"{self.dataset}-noise{self.noise:.2f}-w{self.width}-s{self.seed_index:02d}"

    @property
    def run_id(self) -> str:
        """A file-safe name, e.g. ``digits-to_loss-noise0.25-w64-s03``."""
        return (
            f"{self.dataset}-{self.arm}-noise{self.noise:.2f}-w{self.width}-s{self.seed_index:02d}"
        )

    @property
    def cell(self) -> str:
        """The cell (dataset, arm, noise, width) this run belongs to."""
        return f"{self.dataset}-{self.arm}-noise{self.noise:.2f}-w{self.width}"

    @property
    def group(self) -> str:
        """The cell and label draw: networks that share one training loss."""
        return f"{self.cell}-d{self.label_draw:02d}"


def run_specs(config: CompressionConfig) -> list[RunSpec]:
    """Every run of the grid, in a fixed order.

    Example:
        >>> len(run_specs(load_config("quick"))) > 0
        True
    """
    k = config.seeds_per_label_draw
    return [
        RunSpec(d, float(p), int(w), s, arm, s // k)
        for arm in config.arms
        for d in config.datasets
        for p in config.label_noise
        for w in config.widths
        for s in range(config.seeds)
    ]


def _hash(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def run_seed(config: CompressionConfig, spec: RunSpec) -> int:
    """The network's seed (initialization, batch order, measures), shared by both arms."""
    return _hash(f"{config.seed}:{spec.network_id}")


def label_seed(config: CompressionConfig, spec: RunSpec) -> int:
    """Seed of the label noise: one draw per group of ``seeds_per_label_draw`` networks."""
    return _hash(f"{config.seed}:labels:{spec.dataset}:{spec.noise:.4f}:{spec.label_draw}")
