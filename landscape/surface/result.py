"""The :class:`Surface` result and its xarray form (the ``results.nc`` layout)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from landscape.surface.grid import AXIS_NAMES

VARIABLES = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def _f(x: Any) -> float:
    return float(x) if x is not None else float("nan")


@dataclass(frozen=True, eq=False)
class Surface:
    """Loss and accuracy on a 1D/2D/3D grid of a slice through parameter space.

    ``train_loss[i, j]`` is the loss at ``origin + alpha[i]·d1 + beta[j]·d2``.

    Attributes:
        axes: the coordinates of each axis (``alpha``, ``beta``, ``gamma``), float64.
        train_loss: mean training loss on the grid (NaN/Inf kept as computed).
        train_accuracy: training accuracy (NaN for regression).
        test_loss: mean test loss, or ``None`` without test data.
        test_accuracy: test accuracy, or ``None``.
        kind: ``random``, ``pca``, ``interpolation``, ``plane`` or ``eigen``.
        normalization: ``filter``, ``layer`` or ``none``.
        ignore: ``biasbn`` or ``none``.
        seed: seed of random directions (``None`` otherwise).
        center_loss: training loss at the origin.
        bf16_error: max relative error of bf16 against fp32 on the centre row, when
            bf16 was used.
        explained_variance: PCA explained-variance ratios.
        anchors: per axis, the coordinates of the defining checkpoints.
        trajectory: PCA: the checkpoints projected on the directions, ``(steps, dims)``.
        complete: whether every grid point was evaluated (``False`` after ``max_points``).
        info: extra facts (method, timing, recompute_bn, ...).

    Example:
        >>> s = Surface((np.array([-1.0, 0.0, 1.0]),), np.array([1.0, 0.0, 1.0]),
        ...             np.full(3, np.nan))
        >>> s.to_dataset()["train_loss"].dims
        ('alpha',)
    """

    axes: tuple[np.ndarray, ...]
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray | None = None
    test_accuracy: np.ndarray | None = None
    kind: str = "random"
    normalization: str = "filter"
    ignore: str = "biasbn"
    seed: int | None = None
    center_loss: float = float("nan")
    bf16_error: float | None = None
    explained_variance: tuple[float, ...] | None = None
    anchors: tuple[tuple[float, ...], ...] | None = None
    trajectory: np.ndarray | None = None
    complete: bool = True
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dims(self) -> int:
        """Number of axes."""
        return len(self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        """Points per axis."""
        return tuple(len(a) for a in self.axes)

    @property
    def axis_names(self) -> tuple[str, ...]:
        """``alpha`` (, ``beta`` (, ``gamma``))."""
        return AXIS_NAMES[: self.dims]

    @property
    def grid_label(self) -> str:
        """The grid as ``21x21``."""
        return "x".join(str(n) for n in self.shape)

    @property
    def ranges(self) -> list[list[float]]:
        """``[low, high]`` of each axis."""
        return [[float(a[0]), float(a[-1])] for a in self.axes]

    def min_point(self) -> tuple[float, tuple[float, ...]]:
        """The lowest finite training loss and its coordinates (NaN when none is finite)."""
        loss = np.where(np.isfinite(self.train_loss), self.train_loss, np.inf)
        if not np.isfinite(loss).any():
            return float("nan"), tuple(float("nan") for _ in self.axes)
        idx = np.unravel_index(int(np.argmin(loss)), loss.shape)
        return float(loss[idx]), tuple(float(a[i]) for a, i in zip(self.axes, idx, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """The ``surface`` section of ``summary.json``."""
        min_loss, at = self.min_point()
        out: dict[str, Any] = {
            "dims": self.dims,
            "grid": list(self.shape),
            "range": self.ranges,
            "kind": self.kind,
            "normalization": self.normalization,
            "ignore": self.ignore,
            "seed": self.seed,
            "center_loss": float(self.center_loss),
            "min_loss": min_loss,
            "min_loss_at": list(at),
            "max_loss": float(
                np.nanmax(np.where(np.isfinite(self.train_loss), self.train_loss, np.nan))
            )
            if np.isfinite(self.train_loss).any()
            else float("nan"),
            "nonfinite_points": int((~np.isfinite(self.train_loss)).sum()),
            "complete": bool(self.complete),
        }
        if self.test_loss is not None:
            finite = np.isfinite(self.test_loss)
            out["test_min_loss"] = (
                float(self.test_loss[finite].min()) if finite.any() else float("nan")
            )
        if self.bf16_error is not None:
            out["bf16_error"] = float(self.bf16_error)
        if self.explained_variance is not None:
            out["explained_variance"] = list(self.explained_variance)
        if self.anchors is not None:
            out["anchors"] = [list(a) for a in self.anchors]
        out.update({k: v for k, v in self.info.items() if k not in out})
        return out

    def to_dataset(self) -> Any:
        """An ``xarray.Dataset`` in the ``results.nc`` layout (see FORMATS.md)."""
        import xarray as xr

        names = self.axis_names
        coords = {n: np.asarray(a, dtype=np.float64) for n, a in zip(names, self.axes, strict=True)}
        data: dict[str, Any] = {
            "train_loss": (names, np.asarray(self.train_loss, dtype=np.float64)),
            "train_accuracy": (names, np.asarray(self.train_accuracy, dtype=np.float64)),
        }
        if self.test_loss is not None:
            data["test_loss"] = (names, np.asarray(self.test_loss, dtype=np.float64))
            acc = self.test_accuracy
            if acc is None:
                acc = np.full(self.shape, np.nan)
            data["test_accuracy"] = (names, np.asarray(acc, dtype=np.float64))
        if self.trajectory is not None:
            traj = np.asarray(self.trajectory, dtype=np.float64)
            for k, n in enumerate(names[: traj.shape[1]]):
                data[f"trajectory_{n}"] = ("step", traj[:, k])
        attrs: dict[str, Any] = {
            "surface_kind": self.kind,
            "surface_normalization": self.normalization,
            "surface_ignore": self.ignore,
            "surface_dims": int(self.dims),
            "surface_grid": self.grid_label,
            "surface_center_loss": float(self.center_loss),
            "surface_complete": int(bool(self.complete)),
        }
        if self.seed is not None:
            attrs["surface_seed"] = int(self.seed)
        if self.bf16_error is not None:
            attrs["surface_bf16_error"] = float(self.bf16_error)
        if self.explained_variance is not None:
            attrs["surface_explained_variance"] = [float(x) for x in self.explained_variance]
        if self.anchors is not None:
            for n, a in zip(names, self.anchors, strict=False):
                attrs[f"surface_anchor_{n}"] = [float(x) for x in a]
        if "recompute_bn" in self.info:
            attrs["surface_recompute_bn"] = int(bool(self.info["recompute_bn"]))
        return xr.Dataset(data, coords=coords, attrs=attrs)

    @classmethod
    def from_dataset(cls, ds: Any) -> Surface:
        """Rebuild a surface from :meth:`to_dataset`'s output (or a loaded ``results.nc``).

        Example:
            >>> s = Surface((np.array([0.0, 1.0]),), np.array([1.0, 2.0]), np.full(2, np.nan))
            >>> Surface.from_dataset(s.to_dataset()).train_loss.tolist()
            [1.0, 2.0]
        """
        if "train_loss" not in ds:
            from landscape.errors import RunDirError

            raise RunDirError(
                "the results hold no surface (no train_loss); run `landscape surface`."
            )
        names = tuple(ds["train_loss"].dims)
        axes = tuple(np.asarray(ds[n].values, dtype=np.float64) for n in names)
        attrs = dict(ds.attrs)

        def arr(name: str) -> np.ndarray | None:
            return np.asarray(ds[name].transpose(*names).values) if name in ds else None

        traj = None
        tnames = [f"trajectory_{n}" for n in names if f"trajectory_{n}" in ds]
        if tnames:
            traj = np.stack([np.asarray(ds[t].values, dtype=np.float64) for t in tnames], axis=1)
        anchors = None
        if any(f"surface_anchor_{n}" in attrs for n in names):
            anchors = tuple(
                tuple(float(x) for x in np.atleast_1d(attrs.get(f"surface_anchor_{n}", [])))
                for n in names
            )
        ev = attrs.get("surface_explained_variance")
        seed = attrs.get("surface_seed")
        bf = attrs.get("surface_bf16_error")
        info: dict[str, Any] = {}
        if "surface_recompute_bn" in attrs:
            info["recompute_bn"] = bool(attrs["surface_recompute_bn"])
        train_acc = arr("train_accuracy")
        return cls(
            axes,
            arr("train_loss"),  # type: ignore[arg-type]
            train_acc if train_acc is not None else np.full(tuple(len(a) for a in axes), np.nan),
            arr("test_loss"),
            arr("test_accuracy"),
            kind=str(attrs.get("surface_kind", "random")),
            normalization=str(attrs.get("surface_normalization", "none")),
            ignore=str(attrs.get("surface_ignore", "none")),
            seed=None if seed is None else int(seed),
            center_loss=_f(attrs.get("surface_center_loss")),
            bf16_error=None if bf is None else float(bf),
            explained_variance=None if ev is None else tuple(float(x) for x in np.atleast_1d(ev)),
            anchors=anchors,
            trajectory=traj,
            complete=bool(attrs.get("surface_complete", 1)),
            info=info,
        )


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """Max of ``|a − b| / max(|b|, 1e-12)`` over entries finite in both (NaN if none).

    Example:
        >>> round(relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.5])), 6)
        0.2
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return math.nan
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-12)))
