"""Everything that applies to a run directory, in one call (used by ``landscape scan`` and ``render``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landscape.errors import RunDirError
from landscape.io.runs import has_spectrum, has_surface, open_run, read_results
from landscape.progress import Progress, tracked
from landscape.surface.result import Surface
from landscape.viz.style import check_formats, check_style


@dataclass(frozen=True)
class Step:
    """One rendering job: what it is and the call that makes its files."""

    name: str
    run: Callable[[], list[Path]]
    optional: bool = False


def plan(
    run_dir: Path,
    *,
    formats: tuple[str, ...] | str = ("png", "pdf"),
    style: str = "paper",
    log_levels: bool | None = None,
    camera: str = "iso",
    render: bool = True,
    render_volumes: bool = False,
    html: bool = False,
    vtk: bool = True,
    require: bool = False,
) -> list[Step]:
    """The rendering steps that apply to ``run_dir``, skipping what its files lack.

    Args:
        run_dir: the run directory.
        formats: figure formats.
        style: ``paper`` or ``talk``.
        log_levels: log-spaced contour levels (``None``: when the loss spans more than two
            decades; the 3D render stays linear unless True).
        camera: camera preset(s) of the 3D renders.
        render: PyVista renders of 2D surfaces.
        render_volumes: also PyVista renders of 3D grids.
        html: the interactive HTML page.
        vtk: the VTK files.
        require: raise :class:`RunDirError` when there is nothing to draw (and when
            ``html`` is asked for without a surface).
    """
    from landscape.viz import (
        html_scene,
        render3d,
        spectrum,
        surface_plots,
        vtk_export,
        weight_plots,
    )

    fmts = check_formats(formats)
    check_style(style)
    run = open_run(run_dir)
    if run.results_path.exists() or require:
        ds: Any = read_results(run.path)
    else:
        ds = {}
    summary = run.summary()
    steps: list[Step] = []
    surf = Surface.from_results(ds, str(run.results_path)) if has_surface(ds) else None
    weights = weight_plots.has_weights(ds, summary)
    if require and surf is None and not has_spectrum(ds, summary) and not weights:
        raise RunDirError(
            f"{run.results_path} holds no surface and no Hessian spectrum to draw; compute one"
            " with `landscape surface` or `landscape scan`."
        )
    if require and html and surf is None:
        raise RunDirError(
            f"{run.results_path} holds no surface (no train_loss) for --html; compute one with"
            " `landscape surface`."
        )
    if surf is not None:
        steps.append(
            Step(
                "surface figures",
                lambda: surface_plots.surface_figures(
                    run.path, formats=fmts, style=style, log_levels=log_levels
                ),
            )
        )
    if has_spectrum(ds, summary):
        steps.append(
            Step(
                "spectrum figure",
                lambda: spectrum.spectrum_figure(run.path, formats=fmts, style=style),
            )
        )
    if weights:
        steps.append(
            Step(
                "weight spectra figures",
                lambda: weight_plots.run_weight_figures(run.path, formats=fmts, style=style),
            )
        )
    if surf is not None and vtk:
        steps.append(Step("VTK files", lambda: vtk_export.write_vtk(run.path)))
    if surf is not None and (
        (render and surf.dims == 2) or (render and render_volumes and surf.dims == 3)
    ):
        steps.append(
            Step(
                "3D render",
                lambda: render3d.render_3d(run.path, camera=camera, log_scale=bool(log_levels)),
                optional=True,
            )
        )
    if surf is not None and html:
        steps.append(Step("HTML scene", lambda: [html_scene.render_html(run.path)]))
    return steps


def run_steps(
    steps: list[Step], *, progress: Progress | None = None, strict: bool = False
) -> list[Path]:
    """Run ``steps`` in order.

    Optional steps (3D renders) are skipped with a warning when off-screen OpenGL is
    unavailable, unless ``strict``, where they raise the one-line error instead.
    """
    from landscape.viz.render3d import offscreen_available, offscreen_backend

    paths: list[Path] = []
    with tracked(progress, "rendering figures", len(steps)) as task:
        for step in steps:
            if step.optional and not strict and not offscreen_available():
                warnings.warn(
                    f"skipped the {step.name}: off-screen OpenGL is unavailable"
                    f" ({offscreen_backend()}).",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                paths += step.run()
            task.advance()
    return paths


def scan_figures(
    run_dir: Path,
    *,
    formats: tuple[str, ...] | str = ("png", "pdf"),
    style: str = "paper",
    log_levels: bool | None = None,
    render: bool = True,
    progress: Progress | None = None,
) -> list[Path]:
    """Render everything that applies to a scan run; skip what the run does not hold.

    Surface figures (1D/2D/3D), the Hessian spectrum figure, a PyVista render of 2D
    surfaces (skipped with a warning where off-screen OpenGL is unavailable) and the VTK
    files. A run without a surface or spectrum gives no files.

    Args:
        run_dir: the run directory.
        formats: figure formats (``png``, ``pdf``, ``svg``).
        style: ``paper`` or ``talk``.
        log_levels: log-spaced contour levels (``None``: when the loss spans more than two
            decades; the 3D render stays linear unless True).
        render: make the PyVista render of a 2D surface.
        progress: progress reporter.

    Returns:
        The written files.

    Example:
        >>> import tempfile
        >>> from landscape.io.rundir import RunDir
        >>> run = RunDir.create(Path(tempfile.mkdtemp()) / "r", {})
        >>> _ = run.update_summary({"hessian": {"top_eigenvalues": [3.0, 1.0]}})
        >>> [p.name for p in scan_figures(run.path, formats=("png",))]
        ['hessian_spectrum.png']
    """
    steps = plan(run_dir, formats=formats, style=style, log_levels=log_levels, render=render)
    return run_steps(steps, progress=progress)
