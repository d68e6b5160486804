"""The :class:`Surface` result and its xarray form (the ``results.nc`` layout)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
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

    @property
    def variables(self) -> dict[str, np.ndarray]:
        """The grids by name, float64.

        ``train_loss`` and ``train_accuracy``, and ``test_loss`` / ``test_accuracy`` when
        they were measured.

        Example:
            >>> s = Surface((np.array([0.0, 1.0]),), np.array([1.0, 2.0]), np.full(2, np.nan))
            >>> sorted(s.variables)
            ['train_accuracy', 'train_loss']
        """
        out = {
            "train_loss": np.asarray(self.train_loss, dtype=np.float64),
            "train_accuracy": np.asarray(self.train_accuracy, dtype=np.float64),
        }
        if self.test_loss is not None:
            out["test_loss"] = np.asarray(self.test_loss, dtype=np.float64)
        if self.test_accuracy is not None:
            out["test_accuracy"] = np.asarray(self.test_accuracy, dtype=np.float64)
        return out

    def argmin(self, name: str = "train_loss") -> tuple[tuple[int, ...], float] | None:
        """Grid index and value of the smallest finite value of ``name`` (``None`` if none).

        Example:
            >>> s = Surface((np.array([-1.0, 0.0, 1.0]),), np.array([1.0, 0.0, 1.0]),
            ...             np.full(3, np.nan))
            >>> s.argmin()
            ((1,), 0.0)
        """
        values = self.variables[name]
        finite = np.isfinite(values)
        if not finite.any():
            return None
        masked = np.where(finite, values, np.inf)
        idx = np.unravel_index(int(np.argmin(masked)), values.shape)
        return tuple(int(i) for i in idx), float(values[idx])

    def point(self, index: tuple[int, ...]) -> tuple[float, ...]:
        """Coordinates of a grid index."""
        return tuple(float(a[i]) for a, i in zip(self.axes, index, strict=True))

    def center_index(self) -> tuple[int, ...]:
        """Grid index nearest the centre θ* (coordinate 0 on every axis)."""
        return tuple(int(np.argmin(np.abs(a))) for a in self.axes)

    def contains_center(self) -> bool:
        """Whether the centre θ* lies inside the grid's range."""
        return all(a.min() <= 0.0 <= a.max() for a in self.axes)

    def anchor_points(self) -> np.ndarray | None:
        """The defining checkpoints as points, one per row ``(n_anchors, dims)``, or ``None``.

        Axes with fewer stored coordinates than others are padded with zeros.

        Example:
            >>> s = Surface((np.array([0.0, 1.0]),), np.array([1.0, 2.0]), np.full(2, np.nan),
            ...             anchors=((0.0, 1.0),))
            >>> s.anchor_points().tolist()
            [[0.0], [1.0]]
        """
        if self.anchors is None:
            return None
        cols = [np.atleast_1d(np.asarray(c, dtype=float)) for c in self.anchors]
        cols += [np.zeros(0)] * (self.dims - len(cols))
        points = np.zeros((max(len(c) for c in cols), self.dims))
        for k, c in enumerate(cols[: self.dims]):
            points[: len(c), k] = c
        return points

    @property
    def attrs(self) -> dict[str, Any]:
        """The ``surface_*`` attributes of the ``results.nc`` layout (plain Python values)."""
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
            for n, a in zip(self.axis_names, self.anchors, strict=False):
                attrs[f"surface_anchor_{n}"] = [float(x) for x in a]
        if "recompute_bn" in self.info:
            attrs["surface_recompute_bn"] = int(bool(self.info["recompute_bn"]))
        return attrs

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
        return xr.Dataset(data, coords=coords, attrs=self.attrs)

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
            if name not in ds or set(ds[name].dims) != set(names):
                return None
            return np.asarray(ds[name].transpose(*names).values)

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

    @classmethod
    def from_results(cls, ds: Any, where: str = "the results") -> Surface:
        """The surface of a loaded ``results.nc``, checked to be a drawable grid.

        Args:
            ds: the results dataset.
            where: what to name in the error (e.g. the file's path).

        Raises:
            RunDirError: no ``train_loss``, axes other than alpha[, beta[, gamma]], or an
                axis that is not increasing with at least 2 points.

        Example:
            >>> import xarray as xr
            >>> ds = xr.Dataset({"train_loss": ("alpha", [1.0, 0.0, 1.0])},
            ...                 coords={"alpha": [-1.0, 0.0, 1.0]})
            >>> Surface.from_results(ds).argmin()
            ((1,), 0.0)
        """
        from landscape.errors import RunDirError

        if "train_loss" not in ds:
            raise RunDirError(
                f"{where} holds no surface (no train_loss); compute one with `landscape surface`"
                " or `landscape scan`."
            )
        dims = tuple(ds["train_loss"].dims)
        if not 1 <= len(dims) <= 3 or dims != AXIS_NAMES[: len(dims)]:
            raise RunDirError(
                f"{where} has train_loss over {dims}, expected (alpha[, beta[, gamma]]);"
                " recompute the surface."
            )
        for n in dims:
            a = np.asarray(ds[n].values, dtype=np.float64)
            if a.size < 2 or not np.all(np.isfinite(a)) or not np.all(np.diff(a) > 0):
                raise RunDirError(
                    f"{where} axis {n} is not increasing with at least 2 points; recompute it."
                )
        return cls.from_dataset(ds)

    @classmethod
    def from_run(cls, run_dir: str | Path) -> Surface:
        """Read the surface stored in ``run_dir/results.nc`` (see :meth:`from_results`).

        Raises:
            RunDirError: the run directory or its ``results.nc`` is missing or unreadable,
                or it holds no drawable surface.

        Example:
            >>> import tempfile, xarray as xr
            >>> from landscape.io.rundir import RunDir
            >>> run = RunDir.create(Path(tempfile.mkdtemp()) / "r", {})
            >>> run.write_arrays(xr.Dataset({"train_loss": ("alpha", [1.0, 0.0, 1.0])},
            ...                             coords={"alpha": [-1.0, 0.0, 1.0]}))
            >>> Surface.from_run(run.path).argmin()
            ((1,), 0.0)
        """
        from landscape.io.runs import read_results

        path = Path(run_dir)
        return cls.from_results(read_results(path), str(path / "results.nc"))


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
