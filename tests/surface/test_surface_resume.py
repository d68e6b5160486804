from __future__ import annotations

import numpy as np
import pytest

from landscape.errors import RunDirError
from landscape.surface import GridSpec, evaluate_surface, random_directions


def _arrays(s):
    return [s.train_loss, s.train_accuracy, s.test_loss, s.test_accuracy]


@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_interrupted_run_resumes_bitwise_without_recomputing(tmp_path, mlp_space, method):
    dirs = random_directions(mlp_space, 2, seed=0)
    spec = GridSpec.parse("5x4", "-1:1,-0.5:1")
    opts = {"compile": False, "method": method, "points_per_batch": 3}
    full_seen: list[int] = []
    full = evaluate_surface(
        mlp_space,
        dirs,
        spec,
        progress_file=tmp_path / "full.npz",
        callback=lambda i: full_seen.extend(i),
        **opts,
    )
    assert sorted(full_seen) == list(range(20))

    seen: list[int] = []

    def interrupt(idx):
        seen.extend(idx.tolist())
        if len(seen) >= 7:
            raise KeyboardInterrupt

    path = tmp_path / "progress" / "surface.npz"
    with pytest.raises(KeyboardInterrupt):
        evaluate_surface(mlp_space, dirs, spec, progress_file=path, callback=interrupt, **opts)
    first = list(seen)
    assert len(first) == 9 and path.is_file()  # three whole batches, saved
    with np.load(path) as z:
        assert int(z["done"].sum()) == 9

    later: list[int] = []
    resumed = evaluate_surface(
        mlp_space,
        dirs,
        spec,
        progress_file=path,
        resume=True,
        callback=lambda i: later.extend(i),
        **opts,
    )
    assert resumed.info["points_evaluated"] == 11
    assert sorted(first + later) == list(range(20))  # every point exactly once
    assert not set(first) & set(later)
    for a, b in zip(_arrays(resumed), _arrays(full), strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.complete and resumed.center_loss == full.center_loss


def test_max_points_gives_partial_surface_then_resume(tmp_path, mlp_space):
    dirs = random_directions(mlp_space, 1, seed=0)
    spec = GridSpec.parse("9")
    path = tmp_path / "p.npz"
    part = evaluate_surface(
        mlp_space, dirs, spec, progress_file=path, max_points=4, points_per_batch=2, compile=False
    )
    assert not part.complete and part.info["points_evaluated"] == 4
    assert np.isfinite(part.train_loss[:4]).all() and np.isnan(part.train_loss[4:]).all()
    rest = evaluate_surface(
        mlp_space, dirs, spec, progress_file=path, resume=True, points_per_batch=2, compile=False
    )
    ref = evaluate_surface(mlp_space, dirs, spec, compile=False)
    assert rest.complete and rest.info["points_evaluated"] == 5
    np.testing.assert_array_equal(rest.train_loss, ref.train_loss)
    np.testing.assert_array_equal(part.train_loss[:4], ref.train_loss[:4])


def test_resume_refuses_a_different_configuration(tmp_path, mlp_space):
    path = tmp_path / "p.npz"
    spec = GridSpec.parse("3")
    evaluate_surface(
        mlp_space, random_directions(mlp_space, 1, seed=0), spec, progress_file=path, compile=False
    )
    with pytest.raises(RunDirError) as e:
        evaluate_surface(
            mlp_space,
            random_directions(mlp_space, 1, seed=1),
            spec,
            progress_file=path,
            resume=True,
            compile=False,
        )
    assert "\n" not in str(e.value)
    # without resume an old progress file is simply replaced
    again = evaluate_surface(
        mlp_space, random_directions(mlp_space, 1, seed=1), spec, progress_file=path, compile=False
    )
    assert again.info["points_evaluated"] == 3
