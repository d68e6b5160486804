"""``landscape render``: every figure, render, VTK file and HTML view that applies to a run."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from landscape.cli.app import app
from landscape.cli.common import QuietOpt, friendly_errors, out_console, progress_bars


class Style(str, Enum):
    """Figure styles: journal columns at 8 pt, or slides."""

    paper = "paper"
    talk = "talk"


class Camera(str, Enum):
    """3D render cameras (``all`` renders each)."""

    iso = "iso"
    top = "top"
    side = "side"
    all = "all"


@app.command("render")
@friendly_errors
def render(
    run: Annotated[Path, typer.Argument(help="Run directory written by scan or surface.")],
    formats: Annotated[
        str, typer.Option("--format", help="Figure formats, comma-separated: png,pdf,svg.")
    ] = "png,pdf,svg",
    style: Annotated[
        Style, typer.Option("--style", help="paper (journal columns, 8 pt) or talk (slides).")
    ] = Style.paper,
    log_levels: Annotated[
        bool | None,
        typer.Option(
            "--log-levels/--linear-levels",
            help="Log-spaced or linear contour levels (default: log-spaced when the loss"
            " spans more than two decades).",
        ),
    ] = None,
    camera: Annotated[
        Camera, typer.Option("--camera", help="3D render camera: iso, top, side or all.")
    ] = Camera.iso,
    html: Annotated[
        bool, typer.Option("--html", help="Also write an interactive surface.html.")
    ] = False,
    no_3d: Annotated[bool, typer.Option("--no-3d", help="Skip the PyVista 3D renders.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Render the figures of a run: surface plots, spectrum, 3D views, VTK and HTML."""
    from landscape.viz.render3d import check_camera
    from landscape.viz.run_figures import plan, run_steps

    check_camera(camera.value)
    steps = plan(
        run,
        formats=formats,
        style=style.value,
        log_levels=log_levels,
        camera=camera.value,
        render=not no_3d,
        render_volumes=not no_3d,
        html=html,
        require=True,
    )
    with progress_bars(quiet) as prog:
        paths = run_steps(steps, progress=prog, strict=True)
    root = Path(run)
    for p in paths:
        try:
            shown = p.relative_to(root)
        except ValueError:
            shown = p
        out_console.print(f"  {root / shown}", highlight=False)
    out_console.print(f"wrote {len(paths)} files under {root}", highlight=False)
