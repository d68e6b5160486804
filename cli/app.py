"""The typer application and the entry point that turns errors into one-line messages."""

from __future__ import annotations

import sys

import typer

from landscape.errors import LandscapeError

app = typer.Typer(
    name="landscape",
    help="Loss-landscape geometry of trained PyTorch checkpoints: Hessian spectra, flatness,"
    " filter-normalized surfaces, basins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


COMMAND_MODULES = (
    "scan",
    "demo",
    "surface",
    "render",
    "metrics",
    "weights",
    "basins",
    "connect",
    "experiment",
    "compare",
    "report",
    "trajectory",
)


def _register() -> None:
    """Import the command modules present; each adds its commands to ``app``."""
    import importlib
    import importlib.util

    for name in COMMAND_MODULES:
        full = f"landscape.cli.{name}"
        if importlib.util.find_spec(full) is not None:
            importlib.import_module(full)


_register()


def _click_exception_types() -> tuple[type[Exception], ...]:
    """The ``ClickException`` classes the installed typer may raise.

    typer 0.2x carries its own copy of click (``typer._click``) whose exceptions are not
    subclasses of the standalone ``click`` package's; older typer raises ``click``'s own.
    """
    found: list[type[Exception]] = []
    try:
        from typer import _click as vendored  # type: ignore[attr-defined]

        found.append(vendored.exceptions.ClickException)
    except (ImportError, AttributeError):
        pass
    try:
        import click

        found.append(click.ClickException)
    except ImportError:
        pass
    return tuple(found)


def _click_exit_types() -> tuple[type[Exception], ...]:
    """The ``Exit`` classes (``ctx.exit``) the installed typer and click may raise."""
    found: list[type[Exception]] = [typer.Exit]
    try:
        import click

        found.append(click.exceptions.Exit)
    except ImportError:
        pass
    return tuple(found)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; bad input exits 2 with a short message and no traceback.

    Usage errors (unknown option, missing argument, bad choice or type) print click's usage
    line, a pointer to ``--help`` and the error (with click's "Did you mean" hint) and exit 2.
    """
    try:
        code = app(args=argv, prog_name="landscape", standalone_mode=False)
    except LandscapeError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.secho("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.secho("interrupted; rerun with --resume to continue", err=True)
        sys.exit(130)
    except _click_exit_types() as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except _click_exception_types() as exc:
        exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 1))
    sys.exit(code if isinstance(code, int) else 0)
