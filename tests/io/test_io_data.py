"""Datasets: built-ins, files and factories load as seeded tensors; bad data is refused."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.errors import ConfigError, DataError
from landscape.io.data import load_data, synthetic_arrays


def test_digits() -> None:
    d = load_data("digits", seed=0)
    assert d.num_train + d.num_test == 1797
    assert d.num_test == round(0.2 * 1797)
    assert tuple(d.x_train.shape[1:]) == (1, 8, 8) and d.x_train.dtype == torch.float32
    assert d.y_train.dtype == torch.int64
    labels = torch.cat([d.y_train, d.y_test])
    assert sorted(labels.unique().tolist()) == list(range(10))
    assert float(d.x_train.min()) >= 0.0 and float(d.x_train.max()) <= 1.0
    again = load_data("digits", seed=0)
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test)
    other = load_data("digits", seed=1)
    assert not torch.equal(other.y_train, d.y_train)
    # the split is a partition: the published class counts of the 1797 images
    counts = torch.bincount(labels, minlength=10).tolist()
    assert counts == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    allx = torch.cat([d.x_train, d.x_test])
    assert torch.unique(allx.reshape(1797, 64), dim=0).shape[0] == 1797 - 0  # no duplicates
    assert torch.equal(allx * 16, (allx * 16).round())  # 4-bit gray levels / 16


def test_mnist1d_generated_offline_and_cached(tmp_path: Path, monkeypatch) -> None:
    import landscape.io.data as data_module

    assert data_module.MNIST1D_NUM_SAMPLES == 5000  # the published size (4000 + 1000)
    monkeypatch.setattr(data_module, "MNIST1D_NUM_SAMPLES", 1000)  # 5x faster to generate
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))
    np.random.seed(123)
    random.seed(123)
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    d = load_data("mnist1d")
    assert np.array_equal(np.random.get_state()[1], np_before)  # global RNG untouched
    assert random.getstate() == py_before
    assert (d.num_train, d.num_test) == (800, 200)  # the package's own 80/20 split
    assert tuple(d.x_train.shape[1:]) == (40,) and d.x_train.dtype == torch.float32
    assert sorted(d.y_train.unique().tolist()) == list(range(10))
    cached = list((tmp_path / "cache").iterdir())
    assert [c.name for c in cached] == ["mnist1d-seed42-n1000.npz"]  # no temp files left
    again = load_data("mnist1d")
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test)
    # read from the cache, not regenerated: a marker value written into it comes back
    with np.load(cached[0]) as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays["x"][0, 0] = 123.0
    np.savez(cached[0], **arrays)
    assert float(load_data("mnist1d").x_train[0, 0]) == 123.0


def test_synthetic_is_seeded() -> None:
    a = load_data("synthetic", seed=3)
    b = load_data("synthetic", seed=3)
    c = load_data("synthetic", seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    x, y = synthetic_arrays(n=50, dim=4, classes=2, seed=0)
    assert x.shape == (50, 4) and set(np.unique(y)) <= {0, 1}


def test_npz_with_and_without_test_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 5)).astype(np.float64), rng.integers(0, 3, 30)
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=y)
    d = load_data(str(p), test_fraction=0.2, seed=0)
    assert (d.num_train, d.num_test) == (24, 6)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    both = torch.cat([d.x_train, d.x_test]).double()
    assert torch.allclose(both.sort(dim=0).values, torch.as_tensor(x).sort(dim=0).values, atol=1e-6)
    q = tmp_path / "dt.npz"
    np.savez(q, x=x, y=y, x_test=x[:4], y_test=y[:4])
    d = load_data(str(q))
    assert (d.num_train, d.num_test) == (30, 4)
    assert torch.equal(d.y_train, torch.as_tensor(y))  # given split: kept in order


def test_uint8_images_become_float(tmp_path: Path) -> None:
    x = np.arange(24, dtype=np.uint8).reshape(6, 1, 2, 2) * 10
    p = tmp_path / "img.npz"
    np.savez(p, x=x, y=np.arange(6, dtype=np.uint8) % 2)
    d = load_data(str(p), test_fraction=0.0)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert torch.equal(d.x_train, torch.as_tensor(x).float())  # same values, not rescaled


def test_pt_dict_of_tensors(tmp_path: Path) -> None:
    x = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randn(12, generator=torch.Generator().manual_seed(1))
    p = tmp_path / "d.pt"
    torch.save({"x": x, "y": y, "x_test": x[:2], "y_test": y[:2]}, p)
    d = load_data(str(p))
    assert torch.equal(d.x_train, x) and torch.equal(d.y_train, y) and d.num_test == 2


def test_pt_with_pickled_objects_is_refused(tmp_path: Path, one_line) -> None:
    p = tmp_path / "d.pt"
    torch.save({"x": torch.zeros(3, 2), "y": torch.zeros(3), "f": torch.nn.ReLU()}, p)
    with pytest.raises(DataError) as ei:
        load_data(str(p))
    one_line(ei.value, "dict of tensors")


FACTORIES = """
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

X = torch.arange(40, dtype=torch.float32).reshape(20, 2)
Y = torch.arange(20) % 3

def as_tuple():
    return X, Y

def as_tuple4():
    return X, Y, X[:5], Y[:5]

def as_dict():
    return {"x": X.numpy(), "y": Y.numpy()}

def as_dataset():
    return TensorDataset(X, Y)

class Pairs(Dataset):
    def __len__(self):
        return 20
    def __getitem__(self, i):
        return X[i].numpy(), int(Y[i])

def as_custom_dataset():
    return Pairs()

class Stream(IterableDataset):
    def __iter__(self):
        return iter(zip(X, Y))

def as_iterable():
    return Stream()

def as_loader():
    return DataLoader(TensorDataset(X, Y), batch_size=6, shuffle=False)

def as_dict_loader():
    return DataLoader([{"x": X[i], "y": Y[i]} for i in range(20)], batch_size=7)

def empty():
    return torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)

def broken():
    raise RuntimeError("cannot reach the data server")

def wrong_type():
    return 42
"""


@pytest.fixture()
def factories(tmp_path: Path) -> str:
    f = tmp_path / "mydata.py"
    f.write_text(FACTORIES)
    return str(f)


@pytest.mark.parametrize(
    "name",
    [
        "as_tuple",
        "as_dict",
        "as_dataset",
        "as_custom_dataset",
        "as_iterable",
        "as_loader",
        "as_dict_loader",
    ],
)
def test_module_function_sources(factories: str, name: str) -> None:
    d = load_data(f"{factories}:{name}", test_fraction=0.0)
    expect_x = torch.arange(40, dtype=torch.float32).reshape(20, 2)
    assert torch.equal(d.x_train, expect_x)
    assert torch.equal(d.y_train, torch.arange(20) % 3)
    assert not d.has_test


def test_module_function_with_test_split(factories: str) -> None:
    d = load_data(f"{factories}:as_tuple4")
    assert (d.num_train, d.num_test) == (20, 5)


def test_max_samples_batch_size_and_chunks() -> None:
    d = load_data("synthetic", max_samples=100, batch_size=32, seed=0)
    assert d.num_train == 100 and d.num_test <= 100
    sizes = [x.shape[0] for x, _ in d.chunks()]
    assert sizes == [32, 32, 32, 4]
    assert torch.equal(torch.cat([x for x, _ in d.chunks()]), d.x_train)
    assert [x.shape[0] for x, _ in d.chunks("test", 50)] == [50, 50]
    full = load_data("synthetic", seed=0)
    assert torch.equal(full.x_train[:100], d.x_train)  # a prefix of the seeded split
    assert d.describe()["num_samples"] == 100
    with pytest.raises(DataError):
        list(d.chunks("validation"))


@pytest.mark.parametrize(
    ("arrays", "needles"),
    [
        ({"x": np.zeros((0, 4)), "y": np.zeros(0)}, ("empty",)),
        ({"x": np.zeros((10, 4)), "y": np.zeros(9)}, ("10", "9", "must match")),
        ({"x": np.full((5, 2), np.nan), "y": np.zeros(5)}, ("NaN", "clean the data")),
        ({"inputs": np.zeros((5, 2)), "y": np.zeros(5)}, ("'x'", "inputs", "store inputs as")),
        ({"x": np.zeros((5, 2)), "y": np.zeros(5), "x_test": np.zeros((2, 2))}, ("x_test", "both")),
        (
            {
                "x": np.zeros((5, 2)),
                "y": np.zeros(5),
                "x_test": np.zeros((2, 3)),
                "y_test": np.zeros(2),
            },
            ("test inputs", "(3,)", "(2,)"),
        ),
        (
            {
                "x": np.zeros((5, 2)),
                "y": np.zeros(5),
                "x_test": np.zeros((2, 2)),
                "y_test": np.zeros(3),
            },
            ("test", "must match"),
        ),
    ],
    ids=["empty", "mismatch", "nan", "no-x", "half-test", "test-shape", "test-mismatch"],
)
def test_bad_npz(tmp_path: Path, one_line, arrays, needles) -> None:
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError) as ei:
        load_data(str(p))
    one_line(ei.value, *needles)


def test_bad_specs(tmp_path: Path, factories: str, one_line) -> None:
    cases = [
        ("imagenet", DataError, ("unknown data", "digits")),
        (str(tmp_path / "missing.npz"), DataError, ("does not exist",)),
        (f"{factories}:empty", DataError, ("empty",)),
        (f"{factories}:broken", DataError, ("RuntimeError", "cannot reach")),
        (f"{factories}:wrong_type", DataError, ("int", "Dataset")),
        (f"{factories}:nope", ConfigError, ("no attribute",)),
        ("no_such_pkg_xyz:data", ConfigError, ("cannot import",)),
    ]
    for spec, err, needles in cases:
        with pytest.raises(err) as ei:
            load_data(spec)
        one_line(ei.value, *needles)
    txt = tmp_path / "d.csv"
    txt.write_text("1,2\n")
    with pytest.raises(DataError) as ei:
        load_data(str(txt))
    one_line(ei.value, "unsupported type", ".npz")
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(DataError) as ei:
        load_data(str(garbage))
    one_line(ei.value, "cannot read", "numpy.savez")
    for kw, needle in (
        ({"batch_size": 0}, "--batch-size"),
        ({"max_samples": 0}, "--max-samples"),
        ({"test_fraction": 1.0}, "--test-fraction"),
    ):
        with pytest.raises(DataError) as ei:
            load_data("synthetic", **kw)
        one_line(ei.value, needle)
