"""PyVista off-screen renders: a 2D surface as a lit height field, a 3D grid as slices and isosurfaces.

Off-screen rendering needs an OpenGL that works without a display. On Linux without
``DISPLAY`` the EGL render window is chosen (``VTK_DEFAULT_OPENGL_WINDOW``, unless the
user set it); with Mesa this renders on the CPU (llvmpipe). :func:`offscreen_available`
probes it once per process in a subprocess, because a failing OpenGL context can crash
the process instead of raising.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import ConfigError
from landscape.io.rundir import atomic_write
from landscape.io.runs import open_run
from landscape.surface.result import Surface

CAMERAS = ("iso", "top", "side")
FLOOR = -0.25
"""Height of the contour map under a surface, relative to the plane's extent."""

_PROBE = """
import vtkmodules.vtkRenderingOpenGL2
import vtkmodules.vtkRenderingCore as rc
w = rc.vtkRenderWindow()
w.SetOffScreenRendering(1)
w.SetSize(8, 8)
w.AddRenderer(rc.vtkRenderer())
w.Render()
print("OK", w.GetClassName(), int(w.SupportsOpenGL()))
"""


def configure_offscreen() -> None:
    """Choose EGL for VTK on a Linux machine without a display (unless already chosen)."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[bool, str]:
    configure_offscreen()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"probe failed ({type(exc).__name__})"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("OK ")]
    if proc.returncode == 0 and lines and lines[-1].endswith(" 1"):
        return True, lines[-1].split()[1]
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return False, f"exit status {proc.returncode}: {tail[-200:]}"


def offscreen_available() -> bool:
    """Whether VTK can render off-screen on this machine (probed once, in a subprocess).

    Example:
        >>> isinstance(offscreen_available(), bool)
        True
    """
    return _probe()[0]


def offscreen_backend() -> str:
    """The VTK render window class used off-screen, or why none works."""
    return _probe()[1]


def _require_offscreen() -> None:
    ok, why = _probe()
    if not ok:
        raise ConfigError(
            f"off-screen 3D rendering is unavailable here (VTK/OpenGL: {why}); pass --no-3d,"
            " or install an EGL or OSMesa OpenGL (e.g. libegl1 / libosmesa6)."
        )


def _pyvista() -> Any:
    configure_offscreen()
    import pyvista as pv

    pv.OFF_SCREEN = True
    return pv


def _bar(title: str, scale: float) -> dict[str, Any]:
    return {
        "title": title,
        "vertical": False,
        "position_x": 0.2,
        "position_y": 0.03,
        "width": 0.6,
        "height": 0.075,
        "n_labels": 5,
        "fmt": "%.3g",
        "title_font_size": max(8, int(round(20 * scale))),
        "label_font_size": max(8, int(round(18 * scale))),
        "color": "black",
        "font_family": "arial",
    }


def _theme(pv: Any, scale: float) -> Any:
    theme = pv.themes.DocumentTheme()
    theme.background = "white"
    theme.font.color = "black"
    theme.font.family = "arial"
    theme.font.size = max(8, int(round(18 * scale)))
    theme.font.title_size = max(8, int(round(20 * scale)))
    theme.font.label_size = max(8, int(round(17 * scale)))
    theme.show_scalar_bar = False
    theme.lighting = True
    theme.smooth_shading = True
    theme.anti_aliasing = None
    return theme


def _orientation(plotter: Any, labels: tuple[str, str, str]) -> None:
    """A small axes triad in the lower-left corner naming the directions."""
    plotter.add_axes(
        xlabel=labels[0],
        ylabel=labels[1],
        zlabel=labels[2],
        color="black",
        line_width=2,
        labels_off=False,
        viewport=(0.0, 0.0, 0.16, 0.24),
    )


def check_camera(camera: str, size: tuple[int, int] = (1200, 900)) -> list[str]:
    """Validate a camera preset (or ``all``) and an image size; return the presets."""
    cams = list(CAMERAS) if camera == "all" else [camera]
    for c in cams:
        if c not in CAMERAS:
            raise ConfigError(f"--camera {camera!r} is not known; use iso, top, side or all.")
    if len(size) != 2 or min(int(s) for s in size) < 16:
        raise ConfigError(f"render size {tuple(size)} is too small; give (width, height) ≥ 16 px.")
    return cams


def _screenshot(plotter: Any, path: Path) -> None:
    def write(tmp: Path) -> None:
        real = tmp.with_name(tmp.name + ".png")
        try:
            plotter.screenshot(str(real), transparent_background=False)
            real.replace(tmp)
        finally:
            real.unlink(missing_ok=True)

    atomic_write(path, write)


_DIRECTIONS = {
    # camera position relative to the scene, and the view-up vector
    "iso": ((-1.25, -1.9, 1.45), (0.0, 0.0, 1.0)),
    "top": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "side": ((0.0, -1.0, 0.12), (0.0, 0.0, 1.0)),
}


def _set_camera(
    plotter: Any,
    camera: str,
    bounds: tuple[float, ...],
    region: tuple[float, float, float, float] = (0.04, 0.17, 0.96, 0.97),
    points: np.ndarray | None = None,
) -> None:
    """Point a parallel-projection camera so ``bounds`` (or ``points``) fill ``region``.

    ``region`` is ``(x0, y0, x1, y1)`` in image fractions; the bottom is kept free for
    the horizontal scalar bar and the margins for the axis labels.
    """
    direction, up = (np.asarray(v, dtype=float) for v in _DIRECTIONS[camera])
    direction /= np.linalg.norm(direction)
    right = np.cross(-direction, up)
    right /= np.linalg.norm(right)
    upv = np.cross(right, -direction)
    x0, x1, y0, y1, z0, z1 = bounds
    corners = np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)])
    if points is not None and len(points):
        corners = np.asarray(points, dtype=float)
    centre = (corners.min(axis=0) + corners.max(axis=0)) / 2
    xs = (corners - centre) @ right
    ys = (corners - centre) @ upv
    w, h = plotter.window_size
    aspect = w / h
    rx0, ry0, rx1, ry1 = region
    half = max(
        (xs.max() - xs.min()) / ((rx1 - rx0) * 2 * aspect),
        (ys.max() - ys.min()) / ((ry1 - ry0) * 2),
        1e-12,
    )
    # Shift the focal point so the scene's centre lands on the region's centre.
    cx, cy = (xs.max() + xs.min()) / 2, (ys.max() + ys.min()) / 2
    dx = cx - ((rx0 + rx1) / 2 - 0.5) * 2 * half * aspect
    dy = cy - ((ry0 + ry1) / 2 - 0.5) * 2 * half
    focal = centre + dx * right + dy * upv
    dist = 4.0 * float(np.linalg.norm(corners.max(axis=0) - corners.min(axis=0)))
    plotter.camera_position = [tuple(focal + dist * direction), tuple(focal), tuple(up)]
    plotter.enable_parallel_projection()
    plotter.camera.parallel_scale = half
    plotter.renderer.ResetCameraClippingRange()


def _surface_scene(
    pv: Any,
    surf: Surface,
    camera: str,
    cmap: str,
    contours: bool,
    size: tuple[int, int],
    log: bool = False,
) -> Any:
    from landscape.viz.surface_plots import contour_levels, finite_range
    from landscape.viz.vtk_export import HEIGHT_FRACTION, height_scale, surface_grid

    scale = size[1] / 900.0
    grid = surface_grid(surf, log=log)
    hs = height_scale(surf, log=log)
    mesh = grid.threshold(0.5, scalars="finite", preference="point", all_scalars=True)
    mesh = (
        mesh.extract_surface(algorithm="dataset_surface")
        .triangulate()
        .compute_normals(cell_normals=False, split_vertices=False, auto_orient_normals=True)
    )
    loss = surf.variables["train_loss"]
    lo, hi = finite_range(loss) or (0.0, 1.0)
    extent = max(float(a[-1] - a[0]) for a in surf.axes)
    pl = pv.Plotter(off_screen=True, window_size=list(size), theme=_theme(pv, scale))
    pl.enable_anti_aliasing("ssaa")
    if log:
        positive = loss[np.isfinite(loss) & (loss > 0)]
        if positive.size == 0:
            contour_levels(-1.0, 1.0, log=True)  # the one-line --log-levels error
        lo = float(positive.min())
        title = (
            "train loss, log scale   (height: log10 loss range scaled to"
            f" {HEIGHT_FRACTION:g} x plane width)"
        )
    else:
        title = f"train loss   (height: loss range scaled to {HEIGHT_FRACTION:g} x plane width)"
    pl.add_mesh(
        mesh,
        scalars="train_loss",
        cmap=cmap,
        clim=(lo, hi),
        log_scale=log,
        smooth_shading=True,
        ambient=0.25,
        diffuse=0.75,
        specular=0.25,
        specular_power=20.0,
        show_scalar_bar=True,
        scalar_bar_args=_bar(title, scale),
        name="surface",
    )
    if contours:
        levels = contour_levels(lo, hi, n=13, log=log)[1:-1]
        lines = mesh.contour(isosurfaces=list(levels), scalars="train_loss")
        if lines.n_points:
            lines.points[:, 2] += 0.004 * extent
            pl.add_mesh(
                lines,
                color="white",
                line_width=max(1.0, 1.6 * scale),
                opacity=0.55,
                lighting=False,
                name="contours",
            )
    floor_shown = contours and camera != "side"
    if floor_shown:
        # Shadow of the surface on a floor below it: the filled contour map.
        levels = contour_levels(lo, hi, n=13, log=log)[1:-1]
        floor = mesh.copy()
        floor.points[:, 2] = FLOOR * extent
        pl.add_mesh(
            floor,
            scalars="train_loss",
            cmap=cmap,
            clim=(lo, hi),
            log_scale=log,
            lighting=False,
            show_scalar_bar=False,
            opacity=0.75,
            name="floor",
        )
        flines = floor.contour(isosurfaces=list(levels), scalars="train_loss")
        if flines.n_points:
            flines.points[:, 2] += 0.002 * extent
            pl.add_mesh(
                flines,
                color="black",
                line_width=max(1.0, scale),
                opacity=0.4,
                name="floor_contours",
            )
    rad = 0.018 * extent
    am = surf.argmin("train_loss")
    if am is not None:
        p = (*surf.point(am[0])[:2], float(hs.apply(np.array(am[1]))))
        pl.add_mesh(
            pv.Sphere(radius=rad, center=p), color="#ffd92f", name="minimum", smooth_shading=True
        )
    if surf.contains_center():
        c = surf.center_index()
        val = loss[c]
        if np.isfinite(val):
            p = (0.0, 0.0, float(hs.apply(np.array(val))))
            pl.add_mesh(
                pv.Sphere(radius=rad * 0.8, center=p),
                color="white",
                name="center",
                smooth_shading=True,
            )
    if surf.trajectory is not None and surf.trajectory.shape[1] >= 2:
        tr = surf.trajectory[:, :2]
        from scipy.interpolate import RegularGridInterpolator

        filled = np.where(np.isfinite(loss), loss, hi)
        interp = RegularGridInterpolator(surf.axes[:2], filled, bounds_error=False, fill_value=hi)
        z = hs.apply(interp(tr)) + 0.01 * extent
        pts = np.column_stack([tr, z])
        pl.add_mesh(
            pv.lines_from_points(pts),
            color="#d62728",
            line_width=max(2.0, 6 * scale),
            render_lines_as_tubes=True,
            name="trajectory",
        )
    zb = (FLOOR * extent) if floor_shown else 0.0
    bounds = (
        float(surf.axes[0][0]),
        float(surf.axes[0][-1]),
        float(surf.axes[1][0]),
        float(surf.axes[1][-1]),
        zb,
        float(HEIGHT_FRACTION * extent),
    )
    _orientation(pl, ("alpha", "beta", "loss"))
    fit = [mesh.points]
    if floor_shown:
        fit.append(floor.points)
    _set_camera(pl, camera, bounds, points=np.concatenate(fit))
    return pl


def _cutaway(camera: str, bounds: tuple[float, ...], centre: tuple[float, ...]) -> list[float]:
    """The box (the part of the volume facing the camera) cut out to open nested shells."""
    direction = np.asarray(_DIRECTIONS[camera][0], dtype=float)
    direction /= np.linalg.norm(direction)
    box: list[float] = []
    for k in range(3):
        b0, b1 = bounds[2 * k], bounds[2 * k + 1]
        pad = 0.01 * (b1 - b0)
        if direction[k] > 0.1:
            box += [centre[k], b1 + pad]
        elif direction[k] < -0.1:
            box += [b0 - pad, centre[k]]
        else:
            box += [b0 - pad, b1 + pad]
    return box


def _volume_scenes(
    pv: Any, surf: Surface, camera: str, cmap: str, contours: bool, size: tuple[int, int]
) -> list[tuple[str, Any]]:
    from landscape.viz.surface_plots import finite_range
    from landscape.viz.vtk_export import volume_grid

    scale = size[1] / 900.0
    vol = volume_grid(surf)
    loss = surf.variables["train_loss"]
    lo, hi = finite_range(loss) or (0.0, 1.0)
    bounds = tuple(float(b) for b in vol.bounds)
    bar = _bar("train loss", scale)
    c = surf.point(surf.center_index())
    scenes: list[tuple[str, Any]] = []

    pl = pv.Plotter(off_screen=True, window_size=list(size), theme=_theme(pv, scale))
    pl.enable_anti_aliasing("ssaa")
    slices = vol.slice_orthogonal(x=c[0], y=c[1], z=c[2])
    pl.add_mesh(
        slices,
        scalars="train_loss",
        cmap=cmap,
        clim=(lo, hi),
        lighting=False,
        scalar_bar_args=bar,
        nan_color="lightgray",
    )
    if contours:
        from landscape.viz.surface_plots import contour_levels

        for block in slices:
            if block is None or not block.n_points:
                continue
            lines = block.contour(
                isosurfaces=list(contour_levels(lo, hi, n=13)[1:-1]), scalars="train_loss"
            )
            if lines.n_points:
                pl.add_mesh(lines, color="black", line_width=max(1.0, scale), opacity=0.5)
    pl.add_mesh(vol.outline(), color="black", line_width=max(1.0, scale))
    _orientation(pl, ("alpha", "beta", "gamma"))
    _set_camera(pl, camera, bounds)
    scenes.append(("volume_slices", pl))

    pl = pv.Plotter(off_screen=True, window_size=list(size), theme=_theme(pv, scale))
    pl.enable_anti_aliasing("ssaa")
    finite = loss[np.isfinite(loss)]
    qs = np.unique(np.quantile(finite, [0.03, 0.1, 0.25, 0.5])) if finite.size else np.array([])
    iso_clim = (float(qs.min()), float(qs.max())) if qs.size > 1 else (lo, hi)
    iso_bar = _bar("train loss (isosurfaces at the 3, 10, 25, 50% quantiles; cut open)", scale)
    cut = _cutaway(camera, bounds, c)
    first = True
    for level in qs:
        iso = vol.contour(isosurfaces=[float(level)], scalars="train_loss")
        if iso.n_points:
            iso = iso.clip_box(cut, invert=True).extract_surface(algorithm="dataset_surface")
        if not iso.n_points:
            continue
        iso = iso.compute_normals(auto_orient_normals=False, split_vertices=False)
        iso.point_data["train_loss"] = np.full(iso.n_points, float(level))
        pl.add_mesh(
            iso,
            scalars="train_loss",
            cmap=cmap,
            clim=iso_clim,
            smooth_shading=True,
            ambient=0.2,
            specular=0.3,
            show_scalar_bar=first,
            scalar_bar_args=iso_bar,
        )
        first = False
    pl.add_mesh(vol.outline(), color="black", line_width=max(1.0, scale))
    am = surf.argmin("train_loss")
    if am is not None:
        rad = 0.02 * max(b1 - b0 for b0, b1 in zip(bounds[::2], bounds[1::2], strict=True))
        pl.add_mesh(
            pv.Sphere(radius=rad, center=surf.point(am[0])), color="#ffd92f", name="minimum"
        )
    _orientation(pl, ("alpha", "beta", "gamma"))
    _set_camera(pl, camera, bounds)
    scenes.append(("volume_isosurfaces", pl))
    return scenes


def render_3d(
    run_dir: Path,
    *,
    camera: str = "iso",
    cmap: str = "viridis",
    contours: bool = True,
    size: tuple[int, int] = (1200, 900),
    log_scale: bool = False,
) -> list[Path]:
    """Render the run's surface off-screen with PyVista into ``RUN/figures``.

    2D surfaces: ``surface3d_<camera>.png``, the loss as a lit height field (the finite
    loss range is drawn half as tall as the plane is wide; the scalar bar says so), with
    contour lines on it and a contour map on the floor, the minimum (gold) and the
    centre θ* (white) as spheres and a PCA trajectory when present. 3D grids:
    ``volume_slices_<camera>.png`` (orthogonal slices through the centre) and
    ``volume_isosurfaces_<camera>.png`` (nested isosurfaces at loss quantiles).

    Args:
        run_dir: the run directory (with a 2D or 3D surface).
        camera: ``iso``, ``top``, ``side``, or ``all`` for the three.
        cmap: colormap name.
        contours: draw contour lines (and the floor map).
        size: image size in pixels ``(width, height)``.
        log_scale: 2D surfaces: height and colour follow ``log10(loss)`` (needs positive
            losses), which shows the basin of a loss spanning decades.

    Returns:
        The written PNG files.

    Example:
        >>> import tempfile, xarray as xr
        >>> from landscape.io.rundir import RunDir
        >>> run = RunDir.create(Path(tempfile.mkdtemp()) / "r", {})
        >>> a = np.linspace(-1, 1, 9)
        >>> run.write_arrays(xr.Dataset({"train_loss": (("alpha", "beta"), np.add.outer(a**2, a**2))},
        ...                             coords={"alpha": a, "beta": a}))
        >>> [p.name for p in render_3d(run.path, size=(160, 120))]  # doctest: +SKIP
        ['surface3d_iso.png']
    """
    size = (int(size[0]), int(size[1]))
    cams = check_camera(camera, size)
    run = open_run(run_dir)
    surf = Surface.from_run(run.path)
    if surf.dims == 1:
        raise ConfigError(
            "a 3D render needs a 2D or 3D surface, this run's is 1D; use its 1D figure instead"
            " (or pass --no-3d)."
        )
    _require_offscreen()
    pv = _pyvista()
    out = run.subdir("figures")
    paths: list[Path] = []
    for cam in cams:
        if surf.dims == 2:
            scenes = [("surface3d", _surface_scene(pv, surf, cam, cmap, contours, size, log_scale))]
        else:
            scenes = _volume_scenes(pv, surf, cam, cmap, contours, size)
        for stem, pl in scenes:
            try:
                path = out / f"{stem}_{cam}.png"
                _screenshot(pl, path)
                paths.append(path)
            finally:
                pl.close()
    return paths
