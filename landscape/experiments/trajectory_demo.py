"""The trajectory example: a small MLP trained on digits, a checkpoint every few epochs.

:func:`save_training_run` trains the model with SGD and saves a landscape bundle (with
``meta={"step": ..., "epoch": ...}``) at initialization and every ``every`` epochs;
:func:`run_trajectory_demo` does that inside a run directory and measures the run with
:func:`~landscape.pipelines.trajectory.run_trajectory`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from landscape.errors import ConfigError
from landscape.experiments.demo import build_seeded
from landscape.io.data import load_data
from landscape.io.rundir import RunDir
from landscape.io.save import save
from landscape.models import mlp
from landscape.pipelines.trajectory import (
    Trajectory,
    TrajectoryConfig,
    resolve_checkpoints,
    run_trajectory,
    shared_loader,
)
from landscape.progress import Progress, tracked
from landscape.training import TrainConfig, train

FACTORY = "landscape.models:mlp"


@dataclass(frozen=True)
class DemoRun:
    """The training run of the example.

    Attributes:
        epochs: epochs in all.
        every: save a checkpoint every this many epochs (and at initialization).
        hidden: hidden width of the MLP (64 → hidden → 10).
        lr: learning rate of plain SGD (no momentum, so that training one epoch at a time
            between checkpoints is the same run as training straight through).
        batch_size: minibatch size.
        seed: seed of initialization, batches and data split.
    """

    epochs: int = 30
    every: int = 2
    hidden: int = 32
    lr: float = 0.1
    batch_size: int = 64
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` on settings that cannot run."""
        if self.epochs < 1 or self.every < 1 or self.every > self.epochs:
            raise ConfigError(
                f"the demo needs epochs ≥ 1 and 1 ≤ every ≤ epochs, got {self.epochs}, {self.every}."
            )
        if self.hidden < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ConfigError("the demo needs hidden ≥ 1, lr > 0 and batch_size ≥ 1.")


def save_training_run(
    folder: str | Path, run: DemoRun | None = None, *, progress: Progress | None = None
) -> list[Path]:
    """Train the example MLP on digits, saving a checkpoint every ``run.every`` epochs.

    Returns:
        The checkpoint files, in training order (``step_<N>.pt``, N the optimizer step).

    Example:
        >>> import tempfile
        >>> paths = save_training_run(tempfile.mkdtemp(), DemoRun(epochs=2, every=1, hidden=4))
        >>> [p.name for p in paths]
        ['step_0.pt', 'step_23.pt', 'step_46.pt']
    """
    cfg = run or DemoRun()
    cfg.validate()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data("digits", seed=cfg.seed)
    kwargs = {"in_features": 64, "hidden": cfg.hidden, "num_classes": 10}
    model = build_seeded(mlp, cfg.seed, **kwargs)
    step, paths = 0, []

    def keep(epoch: int) -> None:
        meta = {"step": step, "epoch": epoch, "lr": cfg.lr, "batch_size": cfg.batch_size}
        paths.append(
            save(
                model,
                out / f"step_{step}.pt",
                factory=FACTORY,
                factory_kwargs=kwargs,
                data="digits",
                loss="cross_entropy",
                meta=meta,
            )
        )

    keep(0)
    with tracked(progress, "training", cfg.epochs) as task:
        for epoch in range(1, cfg.epochs + 1):
            tc = TrainConfig(
                epochs=1, batch_size=cfg.batch_size, lr=cfg.lr, momentum=0.0, seed=cfg.seed + epoch
            )
            step += train(model, data, tc).steps
            if epoch % cfg.every == 0:
                keep(epoch)
            task.advance()
    return paths


def run_trajectory_demo(
    out: str | Path,
    run: DemoRun | None = None,
    config: TrajectoryConfig | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: Progress | None = None,
) -> tuple[RunDir, Trajectory]:
    """Train the example into ``out/checkpoints`` and measure its trajectory into ``out``.

    A resumed run keeps the checkpoints already there (the training is deterministic) and
    the measures already taken.

    Example:
        >>> import tempfile
        >>> rd, t = run_trajectory_demo(tempfile.mkdtemp() + "/d", DemoRun(epochs=2, every=1,
        ...     hidden=4), TrajectoryConfig(llc=False, surface=False))
        >>> t.steps.tolist()
        [0, 23, 46]
    """
    demo = run or DemoRun()
    demo.validate()
    cfg = config or TrajectoryConfig()
    rd = RunDir.create(
        out,
        {
            "command": "trajectory-demo",
            "demo": dataclasses.asdict(demo),
            "trajectory": cfg.to_dict(),
        },
        overwrite=overwrite,
        resume=resume,
    )
    folder = rd.path / "checkpoints"
    expected = demo.epochs // demo.every + 1
    have = sorted(folder.glob("step_*.pt")) if folder.is_dir() else []
    if len(have) != expected:
        for p in have:
            p.unlink()
        save_training_run(folder, demo, progress=progress)
    data = load_data("digits", seed=demo.seed)
    result = run_trajectory(
        resolve_checkpoints(folder), shared_loader(data), rd, cfg, progress=progress
    )
    return rd, result
