"""Figures and renders: matplotlib paper figures, PyVista 3D views, HTML reports.

Plotting libraries are imported lazily inside the functions, so importing
``landscape.viz`` stays fast and works without a display. The public functions are
loaded from their submodules on first use.

Example:
    >>> import landscape.viz as viz
    >>> callable(viz.surface_figures)
    True
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "surface_figures": "landscape.viz.surface_plots",
    "spectrum_figure": "landscape.viz.spectrum",
    "write_vtk": "landscape.viz.vtk_export",
    "render_3d": "landscape.viz.render3d",
    "offscreen_available": "landscape.viz.render3d",
    "render_html": "landscape.viz.html_scene",
    "scan_figures": "landscape.viz.run_figures",
    "weight_figures": "landscape.viz.weight_plots",
    "trajectory_figures": "landscape.viz.trajectory_plots",
    "set_style": "landscape.viz.style",
    "style_params": "landscape.viz.style",
    "axis_label": "landscape.viz.labels",
    "SINGLE_COLUMN_IN": "landscape.viz.style",
    "DOUBLE_COLUMN_IN": "landscape.viz.style",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'landscape.viz' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
