"""VTK files of a surface for ParaView: a height-field ``.vts`` (1D/2D) or a ``.vti`` volume (3D)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landscape.io.rundir import atomic_write
from landscape.io.runs import open_run
from landscape.surface.result import Surface

HEIGHT_FRACTION = 0.5
"""The loss axis is drawn this tall, relative to the larger extent of the plane."""


@dataclass(frozen=True)
class HeightScale:
    """Map a loss to a height: ``z = (loss − offset) · scale``.

    The finite loss range is stretched to ``HEIGHT_FRACTION`` of the larger in-plane
    extent, so a surface looks the same whatever the magnitude of its loss.

    Example:
        >>> h = HeightScale.fit(np.array([1.0, 3.0]), extent=2.0)
        >>> float(h.apply(np.array(3.0)))
        1.0
    """

    offset: float
    scale: float
    log: bool = False

    @staticmethod
    def _x(loss: np.ndarray, log: bool) -> np.ndarray:
        x = np.asarray(loss, dtype=float)
        if log:
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.where(x > 0, np.log10(np.where(x > 0, x, 1.0)), np.nan)
        return x

    @classmethod
    def fit(
        cls,
        loss: np.ndarray,
        extent: float,
        fraction: float = HEIGHT_FRACTION,
        *,
        log: bool = False,
    ) -> HeightScale:
        """Map the finite range of ``loss`` (or ``log10(loss)``) onto ``[0, fraction·extent]``."""
        x = cls._x(loss, log)
        finite = x[np.isfinite(x)]
        if finite.size == 0:
            return cls(0.0, 1.0, log)
        lo, hi = float(finite.min()), float(finite.max())
        span = hi - lo
        scale = fraction * extent / span if span > 0 else 1.0
        return cls(lo, scale, log)

    def apply(self, loss: np.ndarray) -> np.ndarray:
        """Heights of ``loss`` (non-finite losses, and non-positive ones in log, give NaN)."""
        return (self._x(loss, self.log) - self.offset) * self.scale

    def describe(self) -> str:
        """Text for a scalar bar: how height relates to loss."""
        f = "log10(loss)" if self.log else "loss"
        return f"height = ({f} - {self.offset:.4g}) * {self.scale:.4g}"


def height_scale(surf: Surface, var: str = "train_loss", *, log: bool = False) -> HeightScale:
    """The :class:`HeightScale` of a 1D/2D surface's ``var`` over its plane extent."""
    extent = max(float(a[-1] - a[0]) for a in surf.axes[:2])
    return HeightScale.fit(surf.variables[var], extent, log=log)


def surface_grid(surf: Surface, *, log: bool = False) -> Any:
    """A ``pyvista.StructuredGrid`` of a 1D/2D surface with loss as height and as scalars.

    Points are ``(alpha, beta, height)`` (``beta = 0`` in 1D); the point arrays hold the
    raw ``train_loss``, ``test_loss``, accuracies and ``height``. Non-finite losses sit at
    height 0 and are hidden (VTK ghost points); the ``finite`` array flags them. With
    ``log`` the height follows ``log10(loss)`` (non-positive losses are hidden too).
    """
    import pyvista as pv

    alpha = surf.axes[0]
    beta = surf.axes[1] if surf.dims == 2 else np.zeros(1)
    a, b = np.meshgrid(alpha, beta, indexing="ij")
    loss = surf.variables["train_loss"].reshape(a.shape)
    hs = height_scale(surf, log=log)
    z = hs.apply(loss)
    finite = np.isfinite(z)
    z = np.where(finite, z, 0.0)
    grid = pv.StructuredGrid(a[..., None], b[..., None], z[..., None])
    for name, values in surf.variables.items():
        grid.point_data[name] = (
            np.asarray(values, dtype=np.float64).reshape(a.shape).ravel(order="F")
        )
    grid.point_data["height"] = z.ravel(order="F")
    grid.point_data["finite"] = finite.ravel(order="F").astype(np.uint8)
    grid.field_data["height_offset"] = np.array([hs.offset])
    grid.field_data["height_scale"] = np.array([hs.scale])
    grid.field_data["height_formula"] = np.array([hs.describe()])
    grid.field_data["surface_kind"] = np.array([surf.kind])
    if not finite.all():
        grid.hide_points(np.flatnonzero(~finite.ravel(order="F")))
    return grid


def is_uniform(axis: np.ndarray, rtol: float = 1e-9) -> bool:
    """Whether ``axis`` is evenly spaced.

    Example:
        >>> is_uniform(np.linspace(-1, 1, 5)), is_uniform(np.array([0.0, 1.0, 3.0]))
        (True, False)
    """
    d = np.diff(axis)
    return bool(np.allclose(d, d[0], rtol=rtol, atol=0.0))


def volume_grid(surf: Surface) -> Any:
    """A ``pyvista.ImageData`` (uniform axes) or ``RectilinearGrid`` of a 3D surface."""
    import pyvista as pv

    a, b, g = surf.axes
    if all(is_uniform(x) for x in surf.axes):
        grid: Any = pv.ImageData(
            dimensions=(len(a), len(b), len(g)),
            spacing=tuple(float((x[-1] - x[0]) / (len(x) - 1)) for x in surf.axes),
            origin=(float(a[0]), float(b[0]), float(g[0])),
        )
    else:
        grid = pv.RectilinearGrid(a, b, g)
    for name, values in surf.variables.items():
        grid.point_data[name] = np.asarray(values, dtype=np.float64).ravel(order="F")
    grid.point_data["finite"] = (
        np.isfinite(surf.variables["train_loss"]).ravel(order="F").astype(np.uint8)
    )
    grid.field_data["surface_kind"] = np.array([surf.kind])
    return grid


def _save(mesh: Any, path: Path) -> None:
    def write(tmp: Path) -> None:
        # VTK picks the writer from the extension, so write beside the target name.
        real = tmp.with_name(tmp.name + path.suffix)
        try:
            mesh.save(real, binary=True)
            real.replace(tmp)
        finally:
            real.unlink(missing_ok=True)

    atomic_write(path, write)


def write_vtk(run_dir: Path) -> list[Path]:
    """Write the run's surface as VTK files into ``RUN/vtk`` for ParaView.

    1D and 2D surfaces become ``vtk/surface.vts``: a structured grid whose points are
    ``(alpha, beta, height)`` with ``height = (loss − min) × scale`` (the finite loss range
    spans half the larger in-plane extent; offset and scale are stored as field data) and
    whose point data hold ``train_loss``, ``test_loss``, the accuracies and ``height``.
    3D surfaces become ``vtk/volume.vti`` (image data with the grid's origin and spacing),
    or ``vtk/volume.vtr`` when an axis is unevenly spaced.

    Args:
        run_dir: the run directory (with a surface in ``results.nc``).

    Returns:
        The written files.

    Example:
        >>> import tempfile, xarray as xr
        >>> from landscape.io.rundir import RunDir
        >>> run = RunDir.create(Path(tempfile.mkdtemp()) / "r", {})
        >>> a = np.linspace(-1, 1, 5)
        >>> run.write_arrays(xr.Dataset({"train_loss": ("alpha", a**2)}, coords={"alpha": a}))
        >>> [p.name for p in write_vtk(run.path)]
        ['surface.vts']
    """
    run = open_run(run_dir)
    surf = Surface.from_run(run.path)
    out = run.subdir("vtk")
    if surf.dims <= 2:
        path = out / "surface.vts"
        _save(surface_grid(surf), path)
    else:
        grid = volume_grid(surf)
        path = out / ("volume.vti" if type(grid).__name__ == "ImageData" else "volume.vtr")
        _save(grid, path)
    return [path]
