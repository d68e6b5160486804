"""Loss surfaces: directions, 1D/2D/3D grids, resumable evaluation.

Example:
    >>> from torch import nn
    >>> from landscape.engine import ParamSpace
    >>> from landscape.io import ModelBundle, load_data
    >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
    >>> dirs = random_directions(space, 2, seed=0)
    >>> evaluate_surface(space, dirs, GridSpec.parse("5x5"), compile=False).shape
    (5, 5)
"""

from landscape.surface.directions import (
    Directions,
    eigen_directions,
    interpolation_direction,
    load_checkpoint_vector,
    load_checkpoints,
    load_directions,
    normalize_direction,
    orthogonalize,
    pca_directions,
    plane_directions,
    random_directions,
    save_directions,
    trajectory_files,
)
from landscape.surface.evaluate import (
    PointEvaluator,
    detect_first_layer,
    evaluate_points,
    evaluate_surface,
    quick_surface,
)
from landscape.surface.grid import GridSpec, axis_coordinates, parse_grid, parse_range
from landscape.surface.result import Surface

__all__ = [
    "Directions",
    "GridSpec",
    "PointEvaluator",
    "Surface",
    "axis_coordinates",
    "detect_first_layer",
    "eigen_directions",
    "evaluate_points",
    "evaluate_surface",
    "interpolation_direction",
    "load_checkpoint_vector",
    "load_checkpoints",
    "load_directions",
    "normalize_direction",
    "orthogonalize",
    "pca_directions",
    "parse_grid",
    "parse_range",
    "plane_directions",
    "quick_surface",
    "random_directions",
    "save_directions",
    "trajectory_files",
]
