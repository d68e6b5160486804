"""Datasets as in-memory tensors with a train/test split.

Data lives on the CPU (or wherever the user put it); the engine streams chunks to the
model's device, so the whole dataset is never moved to the accelerator at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.errors import DataError
from landscape.io.importing import resolve_object

BUILTIN_DATASETS = ("digits", "mnist1d", "synthetic")


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
        return {
            "name": self.name,
            "num_samples": self.num_train,
            "num_test_samples": self.num_test,
            "input_shape": list(self.x_train.shape[1:]),
            "batch_size": self.batch_size,
        }


def _as_tensor(a: Any, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(a))
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"data array {name!r} is not numeric ({exc}); store numbers.") from exc
    if t.dtype == torch.float64:
        t = t.float()
    elif t.dtype in (torch.int32, torch.int16, torch.uint8, torch.int8):
        t = t.long()
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
    """Return scikit-learn's digits as ``(N, 1, 8, 8)`` float32 images in [0, 1] and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    return x, d.target.astype(np.int64)


def mnist1d_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate MNIST-1D offline (cached under ``~/.cache/landscape``).

    Returns:
        ``x_train (N, 40), y_train, x_test, y_test``.
    """
    cache = Path(os.environ.get("LANDSCAPE_CACHE", Path.home() / ".cache" / "landscape"))
    path = cache / f"mnist1d-seed{seed}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["x"], z["y"], z["x_test"], z["y_test"]
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise DataError(
            "--data mnist1d needs the mnist1d package; install it with"
            " `pip install 'landscape-geometry[mnist1d]'`."
        ) from exc
    args = get_dataset_args()
    args.seed = seed
    d = make_dataset(args)
    out = (
        d["x"].astype(np.float32),
        d["y"].astype(np.int64),
        d["x_test"].astype(np.float32),
        d["y_test"].astype(np.int64),
    )
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, x=out[0], y=out[1], x_test=out[2], y_test=out[3])
    os.replace(tmp, path)
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


def _from_mapping(m: dict[str, Any], name: str) -> tuple[Any, Any, Any, Any]:
    for k in ("x", "y"):
        if k not in m:
            raise DataError(
                f"{name} has no array {k!r} (found: {', '.join(sorted(map(str, m))) or 'none'});"
                " store inputs as 'x' and targets as 'y'."
            )
    return m["x"], m["y"], m.get("x_test"), m.get("y_test")


def _from_user_object(obj: Any, name: str) -> tuple[Any, Any, Any, Any]:
    from torch.utils.data import DataLoader, Dataset

    if isinstance(obj, dict):
        return _from_mapping(obj, name)
    if isinstance(obj, tuple | list) and len(obj) in (2, 4):
        if len(obj) == 2:
            return obj[0], obj[1], None, None
        return tuple(obj)  # type: ignore[return-value]
    if isinstance(obj, DataLoader):
        xs, ys = [], []
        for batch in obj:
            xs.append(batch[0])
            ys.append(batch[1])
        return torch.cat(xs), torch.cat(ys), None, None
    if isinstance(obj, Dataset):
        items = [obj[i] for i in range(len(obj))]  # type: ignore[arg-type]
        return (
            torch.stack([torch.as_tensor(i[0]) for i in items]),
            torch.as_tensor(np.asarray([np.asarray(i[1]) for i in items])),
            None,
            None,
        )
    raise DataError(
        f"{name} returned {type(obj).__name__}; return a Dataset, DataLoader, (x, y) tensors"
        " or a dict with 'x' and 'y'."
    )


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
        spec: ``digits``, ``mnist1d``, ``synthetic``, a ``.npz`` file with arrays ``x``, ``y``
            (and optional ``x_test``, ``y_test``), a ``.pt`` dict of tensors, or
            ``MODULE:FUNCTION`` returning a Dataset, DataLoader, tensors or a dict.
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
    xt: Any = None
    yt: Any = None
    key = spec.lower()
    if key == "digits":
        x, y = digits_arrays()
    elif key == "mnist1d":
        x, y, xt, yt = mnist1d_arrays(seed=0)
    elif key == "synthetic":
        x, y = synthetic_arrays(seed=seed)
    else:
        path = Path(spec).expanduser()
        if path.suffix in {".npz", ".pt", ".pth"}:
            if not path.is_file():
                raise DataError(f"data file {spec} does not exist; check the path.")
            if path.suffix == ".npz":
                try:
                    with np.load(path, allow_pickle=False) as z:
                        x, y, xt, yt = _from_mapping({k: z[k] for k in z.files}, spec)
                except DataError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    raise DataError(f"cannot read {spec} as .npz ({exc}); re-save it.") from exc
            else:
                try:
                    obj = torch.load(path, map_location="cpu", weights_only=True)
                except Exception as exc:  # noqa: BLE001
                    raise DataError(
                        f"cannot read {spec} as a dict of tensors ({type(exc).__name__});"
                        " save a dict like {'x': X, 'y': Y} with torch.save."
                    ) from exc
                if not isinstance(obj, dict):
                    raise DataError(
                        f"{spec} holds {type(obj).__name__}; save a dict with 'x', 'y'."
                    )
                x, y, xt, yt = _from_mapping(obj, spec)
        elif ":" in spec:
            fn = resolve_object(spec, "--data")
            obj = fn() if callable(fn) else fn
            x, y, xt, yt = _from_user_object(obj, spec)
        else:
            raise DataError(
                f"unknown data {spec!r}; use digits, mnist1d, synthetic, a .npz/.pt file"
                " or MODULE:FUNCTION."
            )
    x_t, y_t = _as_tensor(x, "x"), _as_tensor(y, "y")
    if x_t.shape[0] == 0:
        raise DataError(f"data {spec!r} is empty; give at least one sample.")
    if x_t.shape[0] != y_t.shape[0]:
        raise DataError(
            f"data {spec!r} has {x_t.shape[0]} inputs but {y_t.shape[0]} targets; they must match."
        )
    if not torch.isfinite(x_t.float()).all():
        raise DataError(f"data {spec!r} contains NaN or Inf inputs; clean the data.")
    if xt is None:
        x_tr, y_tr, x_te, y_te = _split(x_t, y_t, test_fraction, seed)
    else:
        x_tr, y_tr = x_t, y_t
        x_te, y_te = _as_tensor(xt, "x_test"), _as_tensor(yt, "y_test")
    src = DataSource(spec, x_tr, y_tr, x_te, y_te, batch_size=batch_size)
    return src.subset(max_samples)
