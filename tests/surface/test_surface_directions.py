from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.errors import ConfigError
from landscape.models import mlp
from landscape.surface.directions import (
    Directions,
    eigen_directions,
    interpolation_direction,
    load_checkpoints,
    load_directions,
    pca_directions,
    plane_directions,
    random_directions,
    save_directions,
    trajectory_files,
)


def _parts(space, v):
    return {i.name: (i, v[i.slice].view(i.shape)) for i in space.infos}


def test_filter_norms_match_theta_per_filter(cnn_space):
    d = random_directions(cnn_space, 2, normalization="filter", seed=0)
    th = _parts(cnn_space, cnn_space.theta0)
    n_weight = 0
    for v in d.vectors:
        for name, (info, seg) in _parts(cnn_space, v).items():
            t = th[name][1]
            if info.role == "weight":
                n_weight += 1
                torch.testing.assert_close(
                    seg.reshape(info.shape[0], -1).norm(dim=1),
                    t.reshape(info.shape[0], -1).norm(dim=1),
                    rtol=1e-8,
                    atol=0,
                )
            else:  # biases and BatchNorm parameters are zeroed by default
                assert torch.count_nonzero(seg) == 0, name
    assert n_weight == 2 * 3  # two convs and one linear, in both directions
    assert {i.role for i in cnn_space.infos} == {"weight", "bias", "norm"}


def test_layer_normalization_matches_tensor_norms_and_differs_from_filter(cnn_space):
    lay = random_directions(cnn_space, 1, normalization="layer", seed=0).vectors[0]
    fil = random_directions(cnn_space, 1, normalization="filter", seed=0).vectors[0]
    th = _parts(cnn_space, cnn_space.theta0)
    differ = False
    for name, (info, seg) in _parts(cnn_space, lay).items():
        if info.role != "weight":
            continue
        torch.testing.assert_close(seg.norm(), th[name][1].norm(), rtol=1e-8, atol=0)
        fseg = fil[info.slice].view(info.shape)
        rows_l = seg.reshape(info.shape[0], -1).norm(dim=1)
        rows_f = fseg.reshape(info.shape[0], -1).norm(dim=1)
        differ |= not torch.allclose(rows_l, rows_f, rtol=1e-3)
    assert differ, "layer normalization must not equal filter normalization"


def test_none_normalization_is_the_raw_gaussian(mlp_space):
    d = random_directions(mlp_space, 1, normalization="none", ignore="none", seed=5).vectors[0]
    g = torch.Generator().manual_seed(5)
    ref = torch.randn(mlp_space.dim, generator=g, dtype=torch.float64)
    torch.testing.assert_close(d, ref, rtol=0, atol=0)


def test_keep_biases_normalizes_them_as_one_element_filters(cnn_space):
    d = random_directions(cnn_space, 1, normalization="filter", ignore="none", seed=2).vectors[0]
    for info in cnn_space.infos:
        if info.role != "weight":
            seg = d[info.slice]
            torch.testing.assert_close(
                seg.abs(), cnn_space.theta0[info.slice].abs(), rtol=1e-8, atol=1e-9
            )
            nz = cnn_space.theta0[info.slice] != 0
            assert bool((seg[nz] != 0).all())
            assert int(nz.sum()) == 0 or torch.count_nonzero(seg) > 0


def test_seeds_are_explicit_and_prefix_consistent(mlp_space):
    a = random_directions(mlp_space, 2, seed=3)
    b = random_directions(mlp_space, 2, seed=3)
    c = random_directions(mlp_space, 1, seed=3)
    e = random_directions(mlp_space, 2, seed=4)
    assert torch.equal(a.vectors[1], b.vectors[1])
    assert torch.equal(a.vectors[0], c.vectors[0])
    assert not torch.equal(a.vectors[0], e.vectors[0])


def test_orthogonalization(mlp_space):
    d = random_directions(mlp_space, 3, seed=0, orthogonalize_=True)
    raw = random_directions(mlp_space, 3, seed=0)
    v = [x.double() for x in d.vectors]
    for i in range(3):
        for j in range(i):
            assert abs(float(v[i] @ v[j])) < 1e-10 * float(v[i].norm() * v[j].norm())
        torch.testing.assert_close(v[i].norm(), raw.vectors[i].double().norm())
    assert torch.equal(d.vectors[0], raw.vectors[0])
    assert abs(float(raw.vectors[0] @ raw.vectors[1])) > 1e-6  # not orthogonal by chance


def test_save_load_roundtrip_and_mismatch(tmp_path, mlp_space, cnn_space):
    d = random_directions(mlp_space, 2, seed=0)
    p = save_directions(tmp_path / "directions.pt", d)
    raw = torch.load(p, weights_only=True)
    assert set(raw) >= {"d1", "d2", "names", "shapes"}
    back = load_directions(p, mlp_space)
    assert torch.equal(back.vectors[1], d.vectors[1]) and back.seed == 0
    with pytest.raises(ConfigError) as e:
        load_directions(p, cnn_space)
    assert "\n" not in str(e.value) and "architecture" in str(e.value)
    torch.save({"x": 1}, tmp_path / "bad.pt")
    with pytest.raises(ConfigError):
        load_directions(tmp_path / "bad.pt", mlp_space)


def test_interpolation_and_plane_through_checkpoints(mlp_space):
    g = torch.Generator().manual_seed(0)
    t = mlp_space.theta0
    a, b, c = (t + 0.3 * torch.randn(t.shape, generator=g, dtype=t.dtype) for _ in range(3))
    line = interpolation_direction(mlp_space, a, b)
    torch.testing.assert_close(line.point([1.0]), b, rtol=0, atol=1e-14)
    assert torch.equal(line.point([0.0]), a)
    plane = plane_directions(mlp_space, a, b, c)
    d1, d2 = (v.double() for v in plane.vectors)
    assert abs(float(d1 @ d2)) < 1e-10 * float(d1.norm() * d2.norm())
    torch.testing.assert_close(d1.norm(), d2.norm())
    (ax, ay) = plane.anchors
    assert (ax[0], ay[0], ax[1], ay[1]) == (0.0, 0.0, 1.0, 0.0)
    for (x, y), target in zip(zip(ax, ay, strict=True), (a, b, c), strict=True):
        torch.testing.assert_close(plane.point([x, y]), target, rtol=0, atol=1e-12)
    with pytest.raises(ConfigError):
        plane_directions(mlp_space, a, b, a + 2 * (b - a))  # collinear


def test_pca_recovers_known_plane_and_variance(mlp_space):
    dim = mlp_space.dim
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(dim, 2, generator=g, dtype=torch.float64))
    u, v = q[:, 0], q[:, 1]
    # coordinates with zero mean and uncorrelated columns: variances 9 and 1 (ratio 0.9, 0.1)
    s = torch.tensor([-1.0, 1.0, -1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    a = 3.0 * torch.tensor([-1.0, -1.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    a, b = a * (6 / 4) ** 0.5, s * (6 / 4) ** 0.5
    final = mlp_space.theta0
    traj = [final + a[i] * u + b[i] * v + 0.7 * u for i in range(6)]
    d = pca_directions(mlp_space, traj, 2)
    np.testing.assert_allclose(d.explained_variance, [0.9, 0.1], atol=1e-10)
    basis = torch.stack(d.vectors).double()
    # the recovered plane equals span{u, v}: singular values of the projection are 1
    sv = torch.linalg.svdvals(basis @ q)
    torch.testing.assert_close(sv, torch.ones(2, dtype=torch.float64), atol=1e-10, rtol=0)
    # the projected trajectory reproduces each checkpoint (it lies in the plane)
    for k, t in enumerate(traj):
        torch.testing.assert_close(d.point(d.trajectory[k]), t, atol=1e-10, rtol=0)
    assert d.trajectory[0][0] <= 0 and d.trajectory[0][1] <= 0
    with pytest.raises(ConfigError):
        pca_directions(mlp_space, traj[:1], 2)


def test_checkpoint_files_load_as_vectors(tmp_path, mlp_space):
    torch.manual_seed(7)
    files = []
    for k in (10, 2, 1):
        m = mlp(64, 12, 10, activation="tanh").double()
        p = tmp_path / f"step{k}.pt"
        torch.save(m.state_dict(), p)
        files.append((k, p, torch.cat([t.detach().reshape(-1) for t in m.parameters()])))
    names = [p.name for p in trajectory_files(tmp_path)]
    assert names == ["step1.pt", "step2.pt", "step10.pt"]
    vecs = load_checkpoints(mlp_space, [p for _, p, _ in files])
    for v, (_, _, ref) in zip(vecs, files, strict=True):
        assert torch.equal(v, ref)
    torch.save(mlp(64, 5, 10).state_dict(), tmp_path / "other.pt")
    from landscape.errors import CheckpointError

    with pytest.raises(CheckpointError):
        load_checkpoints(mlp_space, [tmp_path / "other.pt"])


def test_eigen_directions_from_vectors_and_solver(quad_space):
    dim = quad_space.dim
    h = torch.func.hessian(lambda t: quad_space.loss(t))(quad_space.theta0)
    evals, evecs = torch.linalg.eigh(h)
    top = evecs[:, torch.argsort(evals, descending=True)[:2]].T

    class Pairs:
        values = np.sort(evals.numpy())[::-1][:2]
        vectors = top.numpy()

    def solver(op, k, *, seed, return_vectors, progress):
        assert return_vectors and op.dim == dim
        return Pairs()

    for src in (top.numpy(), Pairs(), solver):
        d = eigen_directions(quad_space, src, 2)
        for v, ref in zip(d.vectors, top, strict=True):
            torch.testing.assert_close(v, ref, atol=1e-12, rtol=0)
    assert d.info["eigenvalues"][0] >= d.info["eigenvalues"][1]


def test_directions_point_formula():
    d = Directions(
        (torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])),
        torch.tensor([1.0, 1.0]),
        ("w",),
        ((2,),),
    )
    assert d.point([2.0, 0.5]).tolist() == [3.0, 2.0]
