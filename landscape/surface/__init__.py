"""Loss surfaces: directions, 1D/2D/3D grids, resumable evaluation."""
