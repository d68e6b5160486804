"""Options, loading and progress shared by the CLI commands."""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError, LandscapeError
from landscape.io.checkpoint import LoadedModel, load_model, parse_model_kwargs
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle, parse_device, parse_dtype

console = Console(stderr=True)
out_console = Console()

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(fn: F) -> F:
    """Turn :class:`LandscapeError` into a one-line message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LandscapeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


class RichProgress:
    """A :class:`landscape.progress.Progress` drawing rich progress bars on stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._progress: Progress | None = None
        self._open = 0

    def _ensure(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=False,
                disable=self.quiet,
            )
            self._progress.start()
        return self._progress

    def task(self, description: str, total: int | None) -> Any:
        """Start a bar."""
        p = self._ensure()
        self._open += 1
        return _RichTask(p, p.add_task(description, total=total))

    def finish(self, task: Any) -> None:
        """Complete a bar; stop drawing when none is open."""
        if self._progress is None:
            return
        t = self._progress.tasks[[x.id for x in self._progress.tasks].index(task.task_id)]
        if t.total is not None:
            self._progress.update(task.task_id, completed=t.total)
        self._open -= 1
        if self._open <= 0:
            self.close()

    def close(self) -> None:
        """Stop the live display."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._open = 0


@dataclass
class _RichTask:
    progress: Progress
    task_id: Any

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task_id, n)


@contextlib.contextmanager
def progress_bars(quiet: bool) -> Iterator[RichProgress]:
    """Yield a rich progress reporter and always stop it."""
    p = RichProgress(quiet)
    try:
        yield p
    finally:
        p.close()


# -- shared options -----------------------------------------------------------
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="Architecture factory MODULE:FACTORY or file.py:FACTORY."),
]
ModelKwargsOpt = Annotated[
    str | None, typer.Option("--model-kwargs", help="JSON keyword arguments of the factory.")
]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint", help="Allow unpickling arbitrary objects (runs code in the file)."
    ),
]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="digits, mnist1d, synthetic, a .npz/.pt file, or MODULE:FUNCTION.",
    ),
]
LossOpt = Annotated[
    str | None,
    typer.Option(
        "--loss",
        help="cross_entropy, mse (torch.nn.MSELoss), gaussian_nll[:SIGMA], next_token (lm)"
        " or MODULE:FUNCTION.",
    ),
]
MaxSamplesOpt = Annotated[
    int | None, typer.Option("--max-samples", help="Use at most this many samples.")
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Chunk size for streaming.")]
TestFractionOpt = Annotated[
    float, typer.Option("--test-fraction", help="Held-out fraction when data has no test split.")
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="Override the device (default: the model's).")
]
DtypeOpt = Annotated[
    str | None, typer.Option("--dtype", help="float32 or float64 (default: the model's).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every random choice.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Run directory (default runs/<name>-<time>).")
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace the results of an existing run in --out.")
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an existing run in --out.")]
ParamsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--params",
        help="Analyse only the parameters matching this glob over dotted names (repeat),"
        " e.g. 'enc.layers.0.*' or '*.self_attn.*'; the others are held fixed.",
    ),
]


# (name, annotated type, default) of the options every analysis command shares
LOAD_PARAMETERS: tuple[tuple[str, Any, Any], ...] = (
    ("model", ModelOpt, None),
    ("model_kwargs", ModelKwargsOpt, None),
    ("trust_checkpoint", TrustOpt, False),
    ("data", DataOpt, None),
    ("loss", LossOpt, None),
    ("max_samples", MaxSamplesOpt, None),
    ("batch_size", BatchSizeOpt, 1024),
    ("test_fraction", TestFractionOpt, 0.2),
    ("device", DeviceOpt, None),
    ("dtype", DtypeOpt, None),
    ("seed", SeedOpt, 0),
    ("params", ParamsOpt, None),
)


def with_load_options(
    *, checkpoint: str = "checkpoint", exclude: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the shared loading options, declared once, as ``opts: LoadOptions``.

    The decorated function takes ``opts`` (and may also declare any shared option it
    uses itself, such as ``seed``); the command's signature, which typer reads, gets every
    shared option in :data:`LOAD_PARAMETERS` that the function does not declare, minus
    ``exclude``.

    Args:
        checkpoint: the name of the command's checkpoint argument (``None`` in ``opts``
            when the command has none).
        exclude: shared options this command does not offer.

    Example:
        >>> @with_load_options()
        ... def cmd(checkpoint: Path, opts: LoadOptions, seed: int = 0) -> int:
        ...     return opts.batch_size + seed
        >>> cmd(checkpoint=Path("m.pt"), seed=1)
        1025
        >>> "batch_size" in inspect.signature(cmd).parameters
        True
    """

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in sig.parameters.values()
            if p.name != "opts"
        ]
        declared = {p.name for p in own}
        shared = [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=default,
                annotation=annotation,
            )
            for name, annotation, default in LOAD_PARAMETERS
            if name not in declared and name not in exclude
        ]
        defaults = {name: default for name, _, default in LOAD_PARAMETERS}
        passed = [p.name for p in own]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = dict(zip(passed, args, strict=False))
            bound.update(kwargs)
            values = {n: bound.get(n, defaults[n]) for n in defaults if n not in exclude}
            opts = LoadOptions(
                checkpoint=bound.get(checkpoint),  # type: ignore[arg-type]
                trust=bool(values.pop("trust_checkpoint", False)),
                **values,
            )
            return fn(**{n: bound[n] for n in passed if n in bound}, opts=opts)

        params = own + shared  # ``opts`` is the command's only keyword-only parameter
        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params} | {
            "return": hints.get("return", Any)
        }
        return wrapper

    return deco


@dataclass
class LoadOptions:
    """The model/data options every analysis command takes."""

    checkpoint: Path
    model: str | None = None
    model_kwargs: str | None = None
    trust: bool = False
    data: str | None = None
    loss: str | None = None
    max_samples: int | None = None
    batch_size: int = 1024
    test_fraction: float = 0.2
    device: str | None = None
    dtype: str | None = None
    seed: int = 0
    params: list[str] | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> LoadOptions:
        """The options from a command's parameters (``locals()`` at the top of its body).

        The trust flag may be named ``trust`` or ``trust_checkpoint``; other entries are
        ignored.
        """
        values = {f.name: params[f.name] for f in fields(cls) if f.name in params}
        if "trust" not in values:
            values["trust"] = params.get("trust_checkpoint", False)
        return cls(**values)

    def to_config(self, loaded: LoadedModel | None = None) -> dict[str, Any]:
        """The resolved options as JSON."""
        cfg: dict[str, Any] = {
            "checkpoint": str(self.checkpoint),
            "model": self.model,
            "model_kwargs": parse_model_kwargs(self.model_kwargs),
            "data": self.data,
            "loss": self.loss,
            "max_samples": self.max_samples,
            "batch_size": self.batch_size,
            "test_fraction": self.test_fraction,
            "device": self.device,
            "dtype": self.dtype,
            "seed": self.seed,
            "params": list(self.params) if self.params else None,
        }
        if loaded is not None:
            cfg["data"] = self.data or loaded.defaults.get("data")
            cfg["loss"] = self.loss or loaded.defaults.get("loss")
            cfg["checkpoint_sha256"] = loaded.sha256
            cfg["checkpoint_format"] = loaded.format
        return cfg


def load_bundle(opts: LoadOptions) -> tuple[ModelBundle, LoadedModel]:
    """Load the checkpoint, data and loss named by ``opts`` into a :class:`ModelBundle`."""
    loaded = load_model(
        opts.checkpoint,
        model=opts.model,
        model_kwargs=parse_model_kwargs(opts.model_kwargs),
        trust=opts.trust,
    )
    data_spec = opts.data or loaded.defaults.get("data")
    if data_spec is None:
        raise ConfigError(
            f"no data given for {opts.checkpoint}; pass --data (digits, mnist1d, synthetic,"
            " a .npz/.pt file or MODULE:FUNCTION)."
        )
    data = load_data(
        data_spec,
        max_samples=opts.max_samples,
        batch_size=opts.batch_size,
        test_fraction=opts.test_fraction,
        seed=opts.seed,
    )
    bundle = ModelBundle.from_module(
        loaded.module,
        data,
        opts.loss or loaded.defaults.get("loss"),
        device=parse_device(opts.device),
        dtype=parse_dtype(opts.dtype),
        provenance=loaded.provenance(),
        scripted=loaded.scripted,
    )
    return bundle, loaded


def param_space(bundle: ModelBundle, opts: LoadOptions) -> ParamSpace:
    """The bundle's parameter space, restricted to ``--params`` when given."""
    return ParamSpace(bundle, params=opts.params or None)


def run_name(path: Path) -> str:
    """A run name from a checkpoint path (``model.pt`` → ``model``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem) or "run"
