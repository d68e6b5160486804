"""Datasets as in-memory tensors with a train/test split.

Data lives on the CPU (or wherever the user put it); the engine streams chunks to the
model's device, so the whole dataset is never moved to the accelerator at once.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.errors import DataError
from landscape.io.importing import resolve_object

BUILTIN_DATASETS = ("digits", "mnist1d", "synthetic")
MNIST1D_NUM_SAMPLES = 5000  # the published MNIST-1D: 4000 train + 1000 test sequences


@dataclass(frozen=True)
class DataSource:
    """Training (and optional test) data held as tensors.

    Attributes:
        name: where the data came from (``digits``, a path, ``MODULE:FUNCTION``).
        x_train: inputs, first dimension is the sample.
        y_train: targets.
        x_test: held-out inputs or ``None``.
        y_test: held-out targets or ``None``.
        batch_size: chunk size for streaming through the model.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    batch_size: int = 1024
    input_keys: tuple[str, ...] = ()
    input_dtypes: tuple[torch.dtype, ...] = ()

    @property
    def keyed(self) -> bool:
        """Whether inputs are keyword tensors (``input_ids``, ``attention_mask``, ...).

        Keyed inputs are stored stacked as ``(N, len(input_keys), seq)`` integer tensors;
        the model is called as ``model(**{key: x[:, i]})`` with each key's own dtype.
        """
        return bool(self.input_keys)

    @property
    def num_train(self) -> int:
        """Number of training samples."""
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test samples (0 when there is no test split)."""
        return 0 if self.x_test is None else int(self.x_test.shape[0])

    @property
    def has_test(self) -> bool:
        """Whether a test split is present."""
        return self.x_test is not None and self.num_test > 0

    def chunks(
        self, split: str = "train", batch_size: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` chunks of the chosen split in order."""
        if split not in ("train", "test"):
            raise DataError(f"unknown split {split!r}; use 'train' or 'test'.")
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        if x is None or y is None:
            return
        bs = batch_size or self.batch_size
        for i in range(0, x.shape[0], bs):
            yield x[i : i + bs], y[i : i + bs]

    def subset(self, max_samples: int | None) -> DataSource:
        """Return the first ``max_samples`` training samples (test split kept, also capped)."""
        if max_samples is None:
            return self
        xt = self.x_test[:max_samples] if self.x_test is not None else None
        yt = self.y_test[:max_samples] if self.y_test is not None else None
        return replace(
            self,
            x_train=self.x_train[:max_samples],
            y_train=self.y_train[:max_samples],
            x_test=xt,
            y_test=yt,
        )

    def describe(self) -> dict[str, Any]:
        """Return a JSON-ready description of the data."""
        out: dict[str, Any] = {
            "name": self.name,
            "num_samples": self.num_train,
            "num_test_samples": self.num_test,
            "input_shape": list(self.x_train.shape[1:]),
            "batch_size": self.batch_size,
        }
        if self.keyed:
            out["input_keys"] = list(self.input_keys)
            out["input_shape"] = list(self.x_train.shape[2:])
        return out


def _as_tensor(a: Any, name: str) -> torch.Tensor:
    """Tensor of a data array: float64 → float32, small ints → int64, uint8 inputs → float32.

    ``uint8`` inputs are images: they become float32 with the same values (not rescaled),
    so that the model's layers accept them; other integer inputs (token ids) stay integers.
    """
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(a))
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"data array {name!r} is not numeric ({exc}); store numbers.") from exc
    if t.dtype == torch.float64:
        t = t.float()
    elif t.dtype == torch.uint8 and name.startswith("x"):
        t = t.float()
    elif t.dtype in (torch.int32, torch.int16, torch.uint8, torch.int8):
        t = t.long()
    elif not (t.is_floating_point() or t.dtype in (torch.int64, torch.bool) or t.is_complex()):
        raise DataError(
            f"data array {name!r} has dtype {t.dtype}; store numbers (floats or integers)."
        )
    return t


def _split(
    x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    if test_fraction <= 0:
        return x, y, None, None
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=g)
    n_test = int(round(test_fraction * x.shape[0]))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's digits as ``(1797, 1, 8, 8)`` float32 images in [0, 1] and labels.

    Example:
        >>> x, y = digits_arrays()
        >>> x.shape, int(y.max())
        ((1797, 1, 8, 8), 9)
    """
    x, y = _digits_cached()
    return x.copy(), y.copy()


@functools.lru_cache(maxsize=1)
def _digits_cached() -> tuple[np.ndarray, np.ndarray]:
    # Read scikit-learn's bundled CSV directly: importing sklearn.datasets costs seconds.
    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        csv = Path(loc) / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            data = np.loadtxt(csv, delimiter=",")
            images, target = data[:, :-1], data[:, -1]
            break
    else:
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:
            raise DataError(
                "--data digits needs scikit-learn; install it with `pip install scikit-learn`."
            ) from exc
        d = load_digits()
        images, target = d.data, d.target
    x = (images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return x, target.astype(np.int64)


def cache_dir() -> Path:
    """Where generated datasets are cached: ``$LANDSCAPE_CACHE`` or ``~/.cache/landscape``."""
    env = os.environ.get("LANDSCAPE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "landscape"


def mnist1d_arrays(
    seed: int = 42, num_samples: int = 5000
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate MNIST-1D offline with the ``mnist1d`` package, cached under :func:`cache_dir`.

    The defaults are the package's own (the published dataset: 4000 train and 1000 test
    sequences of length 40). Generation does not disturb the global random state.

    Args:
        seed: the generator's seed.
        num_samples: train plus test samples (split 80/20 by the package).

    Returns:
        ``x_train (N, 40) float32, y_train int64, x_test, y_test``.

    Example:
        >>> x, y, xt, yt = mnist1d_arrays(num_samples=100)  # doctest: +SKIP
        >>> x.shape, xt.shape  # doctest: +SKIP
        ((80, 40), (20, 40))
    """
    if num_samples < 10:
        raise DataError(f"mnist1d needs at least 10 samples (one per class), got {num_samples}.")
    cache = cache_dir()
    path = cache / f"mnist1d-seed{seed}-n{num_samples}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return z["x"], z["y"], z["x_test"], z["y_test"]
        except Exception:  # noqa: BLE001 - a damaged cache file is regenerated
            pass
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise DataError(
            "--data mnist1d needs the mnist1d package; install it with"
            " `pip install 'landscape-geometry[mnist1d]'`."
        ) from exc
    import random

    args = get_dataset_args()
    args.seed = seed
    args.num_samples = num_samples
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    out = (
        np.asarray(d["x"], dtype=np.float32),
        np.asarray(d["y"], dtype=np.int64),
        np.asarray(d["x_test"], dtype=np.float32),
        np.asarray(d["y_test"], dtype=np.int64),
    )
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{path.stem}.", suffix=".npz")
        os.close(fd)
        try:
            np.savez(tmp, x=out[0], y=out[1], x_test=out[2], y_test=out[3])
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass  # an unwritable cache only costs regeneration next time
    return out


def synthetic_arrays(
    n: int = 1024, dim: int = 10, classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded Gaussian inputs labelled by a random linear teacher."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    w = rng.standard_normal((dim, classes))
    y = np.argmax(x @ w + 0.5 * rng.standard_normal((n, classes)), axis=1).astype(np.int64)
    return x, y


Keys = tuple[tuple[str, torch.dtype], ...]
Arrays = tuple[Any, Any, Any, Any, Keys]
TOKEN_KEYS = ("input_ids", "attention_mask", "labels")
IGNORE_INDEX = -100


def _token_split(m: dict[str, Any], name: str, sfx: str) -> tuple[torch.Tensor, torch.Tensor, Keys]:
    """Stack ``input_ids`` (and ``attention_mask``) of one split; labels, padding → -100."""
    ids = _as_tensor(m[f"input_ids{sfx}"], f"input_ids{sfx}")
    if ids.is_floating_point() or ids.dtype == torch.bool or ids.dim() != 2:
        raise DataError(
            f"{name}: input_ids{sfx} must be an integer array of shape (N, seq), got"
            f" {ids.dtype} {tuple(ids.shape)}; store token ids."
        )
    parts, keys = [ids], [("input_ids", ids.dtype)]
    mask = None
    if f"attention_mask{sfx}" in m:
        mask = _as_tensor(m[f"attention_mask{sfx}"], f"attention_mask{sfx}")
        if mask.is_floating_point() or tuple(mask.shape) != tuple(ids.shape):
            raise DataError(
                f"{name}: attention_mask{sfx} must be an integer or bool array shaped like"
                f" input_ids {tuple(ids.shape)}, got {mask.dtype} {tuple(mask.shape)}."
            )
        parts.append(mask.long())
        keys.append(("attention_mask", mask.dtype))
    labels = _as_tensor(m[f"labels{sfx}"], f"labels{sfx}") if f"labels{sfx}" in m else ids
    if labels.is_floating_point() or tuple(labels.shape) != tuple(ids.shape):
        raise DataError(
            f"{name}: labels{sfx} must be integer token ids shaped like input_ids"
            f" {tuple(ids.shape)}, got {labels.dtype} {tuple(labels.shape)}."
        )
    labels = labels.long()
    if mask is not None:
        labels = torch.where(mask == 0, torch.full_like(labels, IGNORE_INDEX), labels)
    return torch.stack(parts, dim=1), labels, tuple(keys)


def _from_tokens(m: dict[str, Any], name: str) -> Arrays:
    x, y, keys = _token_split(m, name, "")
    if "input_ids_test" not in m:
        return x, y, None, None, keys
    xt, yt, keys_t = _token_split(m, name, "_test")
    if [k for k, _ in keys_t] != [k for k, _ in keys]:
        raise DataError(
            f"{name}: the test split has keys {[k for k, _ in keys_t]} but the training split"
            f" {[k for k, _ in keys]}; give both the same (e.g. attention_mask_test)."
        )
    return x, y, xt, yt, keys


def _from_mapping(m: dict[str, Any], name: str) -> Arrays:
    if "input_ids" in m and "x" not in m:
        return _from_tokens(m, name)
    for k in ("x", "y"):
        if k not in m:
            raise DataError(
                f"{name} has no array {k!r} (found: {', '.join(sorted(map(str, m))) or 'none'});"
                " store inputs as 'x' and targets as 'y' (or token ids as 'input_ids')."
            )
    return m["x"], m["y"], m.get("x_test"), m.get("y_test"), ()


def _batch_xy(batch: Any, name: str) -> tuple[Any, Any]:
    if isinstance(batch, dict):
        missing = [k for k in ("x", "y") if k not in batch]
        if missing:
            raise DataError(
                f"{name} yields dict batches without {missing[0]!r} (found:"
                f" {', '.join(sorted(map(str, batch)))}); use keys 'x' and 'y'."
            )
        return batch["x"], batch["y"]
    if isinstance(batch, tuple | list) and len(batch) >= 2:
        return batch[0], batch[1]
    raise DataError(
        f"{name} yields {type(batch).__name__} items; yield (x, y) pairs or dicts with 'x', 'y'."
    )


def _stack(items: list[Any], what: str, name: str) -> torch.Tensor:
    try:
        return torch.stack([torch.as_tensor(np.asarray(i)) for i in items])
    except Exception as exc:  # noqa: BLE001
        raise DataError(
            f"{name}: the {what} of its samples cannot be stacked into one tensor ({exc});"
            " give every sample the same shape."
        ) from exc


def _cat(items: list[Any], what: str, name: str) -> torch.Tensor:
    try:
        return torch.cat([torch.as_tensor(np.asarray(i)) for i in items])
    except Exception as exc:  # noqa: BLE001
        raise DataError(
            f"{name}: the {what} of its batches cannot be concatenated ({exc}); give every"
            " batch the same per-sample shape."
        ) from exc


def _token_items(items: list[Any], name: str, join: str) -> Arrays | None:
    """Dict batches (or samples) with ``input_ids``: concatenated (or stacked) per key."""
    if not items or not all(isinstance(i, dict) and "input_ids" in i for i in items):
        return None
    merge = _cat if join == "cat" else _stack
    keys = [k for k in TOKEN_KEYS if k in items[0]]
    return _from_tokens({k: merge([i[k] for i in items], k, name) for k in keys}, name)


def _from_user_object(obj: Any, name: str) -> Arrays:
    from torch.utils.data import DataLoader, Dataset, IterableDataset

    if isinstance(obj, dict):
        return _from_mapping(obj, name)
    if isinstance(obj, tuple | list) and len(obj) in (2, 4):
        if len(obj) == 2:
            return obj[0], obj[1], None, None, ()
        return obj[0], obj[1], obj[2], obj[3], ()
    if isinstance(obj, DataLoader):
        batches = list(obj)
        tokens = _token_items(batches, name, "cat")
        if tokens is not None:
            return tokens
        xs, ys = [], []
        for batch in batches:
            x, y = _batch_xy(batch, name)
            xs.append(x)
            ys.append(y)
        if not xs:
            raise DataError(f"data {name!r} is empty; give at least one sample.")
        return _cat(xs, "inputs", name), _cat(ys, "targets", name), None, None, ()
    if isinstance(obj, Dataset | IterableDataset):
        if isinstance(obj, IterableDataset) or not hasattr(obj, "__len__"):
            items = list(iter(obj))
        else:
            items = [obj[i] for i in range(len(obj))]  # type: ignore[arg-type]
        if not items:
            raise DataError(f"data {name!r} is empty; give at least one sample.")
        tokens = _token_items(items, name, "stack")
        if tokens is not None:
            return tokens
        pairs = [_batch_xy(i, name) for i in items]
        return (
            _stack([p[0] for p in pairs], "inputs", name),
            _stack([p[1] for p in pairs], "targets", name),
            None,
            None,
            (),
        )
    raise DataError(
        f"{name} returned {type(obj).__name__}; return a Dataset, DataLoader, (x, y) tensors"
        " or a dict with 'x' and 'y'."
    )


def _check_pair(x: torch.Tensor, y: torch.Tensor, spec: str, what: str) -> None:
    if x.dim() == 0 or y.dim() == 0:
        raise DataError(
            f"data {spec!r}: {what} inputs and targets must have a sample dimension first;"
            " give arrays of shape (N, ...)."
        )
    if x.shape[0] == 0:
        raise DataError(f"data {spec!r} has no {what} samples (it is empty); give at least one.")
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"data {spec!r} has {x.shape[0]} {what} inputs but {y.shape[0]} targets;"
            " they must match."
        )
    if x.is_floating_point() or x.is_complex():
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise DataError(
                f"data {spec!r} contains {bad} NaN or Inf {what} input value(s); clean the data."
            )
    if y.is_floating_point() and not torch.isfinite(y).all():
        raise DataError(f"data {spec!r} contains NaN or Inf {what} targets; clean the data.")


def load_data(
    spec: str,
    *,
    max_samples: int | None = None,
    batch_size: int = 1024,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DataSource:
    """Load a dataset by name, file or factory.

    Args:
        spec: ``digits`` (1797 8×8 images), ``mnist1d`` (its own 4000/1000 split, so
            ``seed`` and ``test_fraction`` do not apply), ``synthetic``, a ``.npz`` file
            with arrays ``x``, ``y``
            (and optional ``x_test``, ``y_test``), a ``.pt`` dict of tensors, or
            ``MODULE:FUNCTION`` returning a Dataset, DataLoader, tensors or a dict.
            Language-model data: instead of ``x``/``y``, token ids ``input_ids``
            ``(N, seq)`` with optional ``attention_mask`` and ``labels`` (default: the
            ids; positions with mask 0 become -100) and their ``*_test`` variants, also
            as dict samples or batches of a Dataset/DataLoader. The model is then called
            as ``model(input_ids=..., attention_mask=...)``.
        max_samples: cap on training (and test) samples.
        batch_size: chunk size used when streaming.
        test_fraction: held-out fraction when the source has no test split.
        seed: seed of the split.

    Returns:
        The loaded :class:`DataSource`.

    Raises:
        DataError: if the data is missing, empty or malformed.

    Example:
        >>> load_data("synthetic", max_samples=100).num_train
        100
    """
    if batch_size <= 0:
        raise DataError(f"--batch-size must be positive, got {batch_size}.")
    if max_samples is not None and max_samples <= 0:
        raise DataError(f"--max-samples must be positive, got {max_samples}.")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"--test-fraction must be in [0, 1), got {test_fraction}.")
    xt: Any = None
    yt: Any = None
    keys: Keys = ()
    key = spec.strip().lower()
    if key == "digits":
        x, y = digits_arrays()
    elif key == "mnist1d":
        x, y, xt, yt = mnist1d_arrays(num_samples=MNIST1D_NUM_SAMPLES)
    elif key == "synthetic":
        x, y = synthetic_arrays(seed=seed)
    else:
        x, y, xt, yt, keys = _load_external(spec)
    x_t, y_t = _as_tensor(x, "x"), _as_tensor(y, "y")
    _check_pair(x_t, y_t, spec, "")
    if (xt is None) != (yt is None):
        raise DataError(f"data {spec!r} has only one of x_test / y_test; give both or neither.")
    if xt is None:
        x_tr, y_tr, x_te, y_te = _split(x_t, y_t, test_fraction, seed)
    else:
        x_tr, y_tr = x_t, y_t
        x_te, y_te = _as_tensor(xt, "x_test"), _as_tensor(yt, "y_test")
        _check_pair(x_te, y_te, spec, "test")
        if tuple(x_te.shape[1:]) != tuple(x_tr.shape[1:]):
            raise DataError(
                f"data {spec!r}: test inputs have shape {tuple(x_te.shape[1:])} per sample but"
                f" training inputs {tuple(x_tr.shape[1:])}; they must match."
            )
    src = DataSource(
        spec,
        x_tr,
        y_tr,
        x_te,
        y_te,
        batch_size=batch_size,
        input_keys=tuple(k for k, _ in keys),
        input_dtypes=tuple(d for _, d in keys),
    )
    return src.subset(max_samples)


def _load_external(spec: str) -> Arrays:
    """Arrays from a ``.npz`` / ``.pt`` file or a ``MODULE:FUNCTION`` reference."""
    path = Path(spec).expanduser()
    if path.suffix.lower() in {".npz", ".pt", ".pth"}:
        if not path.is_file():
            raise DataError(f"data file {spec} does not exist; check the path.")
        if path.suffix.lower() == ".npz":
            try:
                with np.load(path, allow_pickle=False) as z:
                    return _from_mapping({k: z[k] for k in z.files}, spec)
            except DataError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise DataError(
                    f"cannot read {spec} as .npz ({type(exc).__name__}); re-save it with"
                    " numpy.savez(path, x=X, y=Y)."
                ) from exc
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise DataError(
                f"cannot read {spec} as a dict of tensors ({type(exc).__name__});"
                " save a dict like {'x': X, 'y': Y} with torch.save."
            ) from exc
        if not isinstance(obj, dict):
            raise DataError(f"{spec} holds {type(obj).__name__}; save a dict with 'x', 'y'.")
        return _from_mapping(obj, spec)
    if ":" in spec:
        fn = resolve_object(spec, "--data")
        try:
            obj = fn() if callable(fn) else fn
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - user code can raise anything
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(
                f"--data {spec!r} failed ({type(exc).__name__}: {first[:160]}); it must"
                " take no arguments and return the data."
            ) from exc
        return _from_user_object(obj, spec)
    if path.exists():
        raise DataError(
            f"data file {spec} has an unsupported type; save it as .npz with arrays x, y"
            " (numpy.savez) or as a .pt dict of tensors."
        )
    raise DataError(
        f"unknown data {spec!r}; use digits, mnist1d, synthetic, a .npz/.pt file"
        " or MODULE:FUNCTION."
    )
