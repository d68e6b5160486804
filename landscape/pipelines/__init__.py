"""Pipelines that run the measures on checkpoints: a scan, a trajectory, a connection.

Each writes a run directory stage by stage (resumable) from a loaded bundle:
:mod:`~landscape.pipelines.scan` (one checkpoint), :mod:`~landscape.pipelines.trajectory`
(the checkpoints of a run) and :mod:`~landscape.pipelines.connect` (paths between two).
"""
