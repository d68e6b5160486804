"""Figures and renders: matplotlib paper figures, PyVista 3D views, HTML reports.

Plotting libraries are imported lazily inside the functions, so importing
``landscape.viz`` stays fast and works without a display.
"""
