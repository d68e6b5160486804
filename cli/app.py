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
    "basins",
    "experiment",
    "compare",
    "report",
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


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; bad input exits 2 with a one-line message and no traceback."""
    try:
        code = app(args=argv, standalone_mode=False)
    except LandscapeError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.secho("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.secho("interrupted; rerun with --resume to continue", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001
        import click

        if isinstance(exc, click.exceptions.UsageError):
            typer.secho(f"error: {exc.format_message()}", err=True, fg=typer.colors.RED)
            sys.exit(2)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
