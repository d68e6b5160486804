"""Research experiments and the shipped demos.

The compression experiment, sharp vs flat, Boolean functions, lottery tickets and the
demos. The model zoo is :mod:`landscape.models`, the training helpers
:mod:`landscape.training`, and the scan, trajectory and connection pipelines
:mod:`landscape.pipelines`.
"""
