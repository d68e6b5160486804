"""Grid specifications for 1D/2D/3D loss-surface slices.

A grid is a shape (points per axis) and a closed range per axis. Coordinates come from
``torch.linspace`` in float64; when a range is symmetric and its count odd, the middle
coordinate is set to exactly ``0.0`` so that the centre of the grid is the centre point
itself, bit for bit. Arrays are indexed ``[i, j, k]`` at ``(alpha[i], beta[j], gamma[k])``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from landscape.errors import ConfigError

AXIS_NAMES = ("alpha", "beta", "gamma")
MAX_DIMS = 3


@dataclass(frozen=True)
class GridSpec:
    """Points per axis and the closed coordinate range of each axis.

    Attributes:
        shape: number of points along each axis (1 to 3 axes).
        ranges: ``(low, high)`` per axis, inclusive.

    Example:
        >>> g = GridSpec((5, 4), ((-1.0, 1.0), (0.0, 3.0)))
        >>> g.coordinates()[0].tolist(), g.coordinates()[1].tolist()
        ([-1.0, -0.5, 0.0, 0.5, 1.0], [0.0, 1.0, 2.0, 3.0])
    """

    shape: tuple[int, ...]
    ranges: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        ranges = tuple((float(lo), float(hi)) for lo, hi in self.ranges)
        if not 1 <= len(shape) <= MAX_DIMS:
            raise ConfigError(f"a grid has 1 to 3 axes, got {len(shape)}; use e.g. --grid 21x21.")
        if len(ranges) != len(shape):
            raise ConfigError(
                f"the grid has {len(shape)} axes but {len(ranges)} ranges were given;"
                " give one range, or one per axis like --range -1:1,-0.5:0.5."
            )
        for n in shape:
            if n < 1:
                raise ConfigError(f"grid sizes must be at least 1, got {n}; use e.g. --grid 21.")
        for lo, hi in ranges:
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ConfigError(f"range {lo}:{hi} is not finite; use numbers like -1:1.")
            if not lo < hi:
                raise ConfigError(f"range {lo}:{hi} is empty; write it LOW:HIGH with LOW < HIGH.")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "ranges", ranges)

    @classmethod
    def parse(
        cls,
        grid: str | int | tuple[int, ...],
        range_: str | float = "-1:1",
        dims: int | None = None,
    ) -> GridSpec:
        """Build a grid from CLI-style strings.

        Args:
            grid: ``"51x51"``, ``"41"``, ``"21x31x11"``, an int or a tuple of ints. A single
                size is repeated over ``dims`` axes.
            range_: ``"-1:1"`` for every axis, ``"-1:1,-0.5:0.5"`` per axis, or a number
                ``s`` meaning ``-s:s``.
            dims: number of axes (default: the number of sizes in ``grid``).

        Returns:
            The grid.

        Raises:
            ConfigError: on strings that do not parse or disagree with ``dims``.

        Example:
            >>> GridSpec.parse("21x31", "-1:1,-0.5:0.5").shape
            (21, 31)
        """
        sizes = parse_grid(grid)
        if dims is None:
            dims = len(sizes)
        if not 1 <= dims <= MAX_DIMS:
            raise ConfigError(f"--dims must be 1, 2 or 3, got {dims}.")
        if len(sizes) == 1:
            sizes = sizes * dims
        elif len(sizes) != dims:
            raise ConfigError(
                f"--grid has {len(sizes)} sizes but --dims is {dims}; give one size or {dims}."
            )
        ranges = parse_range(range_, dims)
        return cls(sizes, ranges)

    @property
    def dims(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Total number of grid points."""
        return int(np.prod(self.shape))

    @property
    def label(self) -> str:
        """The grid as a string like ``21x21``."""
        return "x".join(str(n) for n in self.shape)

    @property
    def axis_names(self) -> tuple[str, ...]:
        """``alpha`` (, ``beta`` (, ``gamma``))."""
        return AXIS_NAMES[: self.dims]

    def coordinates(self) -> tuple[np.ndarray, ...]:
        """The float64 coordinates of each axis (centre exactly 0.0 when symmetric and odd)."""
        return tuple(
            axis_coordinates(lo, hi, n) for (lo, hi), n in zip(self.ranges, self.shape, strict=True)
        )

    def points(self) -> np.ndarray:
        """All grid points, shape ``(size, dims)``, in C (row-major) order of the arrays."""
        mesh = np.meshgrid(*self.coordinates(), indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=1)

    def center_index(self) -> tuple[int, ...]:
        """Index of the point nearest the origin on each axis."""
        return tuple(int(np.argmin(np.abs(c))) for c in self.coordinates())

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description."""
        return {"shape": list(self.shape), "ranges": [list(r) for r in self.ranges]}


def axis_coordinates(low: float, high: float, n: int) -> np.ndarray:
    """``torch.linspace(low, high, n)`` in float64, with an exact 0.0 centre when symmetric.

    Example:
        >>> axis_coordinates(-1.0, 1.0, 3).tolist()
        [-1.0, 0.0, 1.0]
    """
    if n == 1:
        return np.array([0.5 * (low + high)], dtype=np.float64)
    c = torch.linspace(low, high, n, dtype=torch.float64).numpy().copy()
    if n % 2 == 1 and low == -high:
        c[n // 2] = 0.0
    return c


_SIZE = re.compile(r"^\s*\d+\s*(?:[x×X*,]\s*\d+\s*)*$")


def parse_grid(grid: str | int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Parse ``"51x51"`` / ``"41"`` / ``"21x31x11"`` (or ints) into sizes.

    Example:
        >>> parse_grid("21x31x11")
        (21, 31, 11)
    """
    if isinstance(grid, int):
        sizes: tuple[int, ...] = (grid,)
    elif isinstance(grid, tuple | list):
        try:
            sizes = tuple(int(n) for n in grid)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"grid sizes must be integers, got {grid!r}.") from exc
    else:
        text = str(grid)
        if not _SIZE.match(text):
            raise ConfigError(
                f"--grid {text!r} does not parse; write sizes like 51x51, 41 or 21x31x11."
            )
        sizes = tuple(int(s) for s in re.split(r"[x×X*,]", text.replace(" ", "")))
    if not 1 <= len(sizes) <= MAX_DIMS:
        raise ConfigError(f"--grid has {len(sizes)} sizes; a grid has 1 to 3 axes.")
    if any(n < 1 for n in sizes):
        raise ConfigError(f"--grid sizes must be at least 1, got {grid!r}.")
    return sizes


def _float(text: str, whole: str) -> float:
    try:
        v = float(text)
    except ValueError as exc:
        raise ConfigError(
            f"--range {whole!r} does not parse; write LOW:HIGH like -1:1, or one per axis"
            " like -1:1,-0.5:0.5."
        ) from exc
    if not math.isfinite(v):
        raise ConfigError(f"--range {whole!r} is not finite; use numbers like -1:1.")
    return v


def parse_range(range_: str | float | tuple, dims: int) -> tuple[tuple[float, float], ...]:
    """Parse ``"-1:1"`` (all axes), ``"-1:1,-0.5:0.5"`` (per axis) or a span ``s`` (``-s:s``).

    Example:
        >>> parse_range("-1:1,-0.5:0.5", 2)
        ((-1.0, 1.0), (-0.5, 0.5))
    """
    if isinstance(range_, int | float):
        s = float(range_)
        if not (math.isfinite(s) and s > 0):
            raise ConfigError(f"a span must be a positive number, got {range_!r}.")
        return ((-s, s),) * dims
    if isinstance(range_, tuple | list):
        parts = [f"{lo}:{hi}" for lo, hi in range_]
        text = ",".join(parts)
    else:
        text = str(range_).strip()
    pieces = [p.strip() for p in text.split(",") if p.strip()]
    if not pieces:
        raise ConfigError("--range is empty; write LOW:HIGH like -1:1.")
    out = []
    for p in pieces:
        if ":" not in p:
            s = _float(p, text)
            if s <= 0:
                raise ConfigError(f"--range {text!r}: a single number is a span and must be > 0.")
            out.append((-s, s))
            continue
        lo_s, _, hi_s = p.partition(":")
        lo, hi = _float(lo_s, text), _float(hi_s, text)
        if not lo < hi:
            raise ConfigError(f"--range {p!r} is empty; write LOW:HIGH with LOW < HIGH.")
        out.append((lo, hi))
    if len(out) == 1:
        out = out * dims
    if len(out) != dims:
        raise ConfigError(
            f"--range gives {len(out)} ranges for {dims} axes; give one, or one per axis."
        )
    return tuple(out)
