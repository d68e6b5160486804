"""The connect run: the curve plane holds the analytic loss of a 2-D toy, and the run files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.basins.connect import curve_point
from landscape.errors import ConfigError
from landscape.io.rundir import RunDir
from landscape.pipelines.connect import ConnectConfig, curve_plane, run_connect

A = torch.tensor([-1.0, 0.0], dtype=torch.float64)
B = torch.tensor([1.0, 0.0], dtype=torch.float64)
C = torch.tensor([0.0, 2.0], dtype=torch.float64)


def test_curve_plane_is_the_toy_loss_in_plane_coordinates(ring_space, ring_loss) -> None:
    ring = ring_space()
    surf = curve_plane(ring, A, C, B, "bezier", grid="7x6", margin=0.1)
    # A at (0, 0), B at (1, 0); the second axis is scaled to ‖B − A‖ = 2, so θ = A + 2(α, β)
    anchors = np.asarray(surf.anchors).T
    np.testing.assert_allclose(anchors, [[0, 0], [1, 0], [0.5, 1.0]], atol=1e-12)
    al, be = surf.axes
    assert al[0] < 0 < 1 < al[-1] and be[0] < 0 < 1 < be[-1]
    exact = np.array([[ring_loss(A + 2 * torch.tensor([x, y])) for y in be] for x in al])
    np.testing.assert_allclose(surf.train_loss, exact, rtol=1e-10, atol=1e-12)
    # the trajectory is the Bézier curve itself
    t = np.linspace(0, 1, 101)
    pts = np.stack([curve_point("bezier", float(s), A, C, B).numpy() for s in t])
    np.testing.assert_allclose(A.numpy() + 2 * surf.trajectory, pts, atol=1e-12)


def test_run_writes_paths_plane_and_control(ring_space, tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", {})
    cfg = ConnectConfig(points=9, curve="bezier", curve_steps=300, curve_lr=0.02, plane="5x5")
    space = ring_space((-1.0, 0.0))
    summary, res = run_connect(space, B, run, cfg)
    c = summary["connect"]
    assert c["linear"]["barrier"] == pytest.approx(1.1, rel=1e-12)
    assert c["curve"]["barrier"] < 0.11 and "aligned" in c["skipped"]
    assert c["plane"]["grid"] == [5, 5] and c["plane"]["anchors"]["b"] == [1.0, 0.0]
    ds = run.read_arrays()
    np.testing.assert_allclose(ds["linear_loss"].values, c["linear"]["loss"])
    assert ds["train_loss"].dims == ("alpha", "beta")
    control = torch.load(run.path / "curve_control.pt")
    torch.testing.assert_close(control, res.control)
    assert math.isclose(float(summary["connect"]["config"]["curve_lr"]), 0.02)
    with pytest.raises(ConfigError, match="needs a curve"):
        ConnectConfig(plane="5x5")
