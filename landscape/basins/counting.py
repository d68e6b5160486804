"""Loss barriers on linear paths and counting basins as connected components.

The barrier between minima θ_a and θ_b is the height of the straight path's highest point
above the mean of the endpoint losses (the definition of :mod:`landscape.basins.connect`):

    B(θ_a, θ_b) = max_t L((1 − t) θ_a + t θ_b) − (L(θ_a) + L(θ_b)) / 2,

with ``t`` on a uniform grid that includes both ends (so ``B ≥ |L(θ_a) − L(θ_b)| / 2 ≥ 0``).
Minima are joined by an edge when the barrier (after removing permutation and rescaling
symmetries, for MLPs) is below a threshold — or, with ``curve``, when a trained Bézier or
polygonal curve between them stays below it (Garipov et al. 2018) — and basins are the
connected components of that graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from landscape.basins._batched import loss_many
from landscape.basins.connect import CurveConfig, curve_path, path_barrier, train_curve
from landscape.basins.symmetry import canonicalize, weight_matching
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.progress import Progress, tracked
from landscape.results import _json_float


@dataclass(frozen=True)
class Barrier:
    """Loss along a linear path and its barrier.

    Attributes:
        barrier: max over t of the loss minus the mean of the two endpoint losses.
        t: path coordinates; ``loss``: loss at each.
        argmax: the ``t`` of the maximum.
    """

    barrier: float
    t: np.ndarray
    loss: np.ndarray
    argmax: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "barrier": _json_float(self.barrier),
            "argmax": _json_float(self.argmax),
            "t": [float(v) for v in self.t],
            "loss": [_json_float(v) for v in self.loss],
        }


def loss_barrier(
    space: ParamSpace, theta_a: torch.Tensor, theta_b: torch.Tensor, *, points: int = 25
) -> Barrier:
    """Barrier on the straight path from θ_a to θ_b (``points`` values of t in [0, 1]).

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> abs(loss_barrier(sp, sp.theta0, sp.theta0).barrier) < 1e-12  # a point: no barrier
        True
    """
    if points < 2:
        raise ConfigError(f"a path needs at least 2 points, got {points}.")
    t = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
    a = theta_a.detach().to(space.device, space.dtype)
    b = theta_b.detach().to(space.device, space.dtype)
    tt = t.to(space.device, space.dtype).unsqueeze(1)
    pts = (1 - tt) * a.unsqueeze(0) + tt * b.unsqueeze(0)
    vals = loss_many(space, pts).double().cpu().numpy()
    tn = t.numpy()
    bar, t_max = path_barrier(tn, vals)
    return Barrier(bar, tn, vals, t_max)


@dataclass(frozen=True)
class BasinCount:
    """Minima grouped into basins by low-barrier edges.

    Attributes:
        num_basins: connected components.
        labels: component of each minimum.
        barriers: symmetric matrix of pairwise barriers (0 on the diagonal).
        threshold: edge threshold.
        aligned: whether symmetries were removed before the barriers.
        curve: the curve kind tried on pairs whose straight barrier reached the threshold
            (``None``: no curve was tried).
        curved: symmetric matrix, ``True`` where a curve was trained for the pair (its
            barrier, when lower, is the one in ``barriers``).
    """

    num_basins: int
    labels: np.ndarray
    barriers: np.ndarray
    threshold: float
    aligned: bool
    curve: str | None = None
    curved: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "num_basins": int(self.num_basins),
            "labels": [int(v) for v in self.labels],
            "barriers": [[_json_float(v) for v in row] for row in self.barriers],
            "threshold": _json_float(self.threshold),
            "aligned": bool(self.aligned),
            "curve": self.curve,
            "curved_pairs": int(np.triu(self.curved, 1).sum()) if self.curved is not None else 0,
        }


def components(barriers: np.ndarray, threshold: float) -> tuple[int, np.ndarray]:
    """Connected components of the graph with an edge where ``barrier < threshold``.

    Example:
        >>> components(np.array([[0, 0.01, 1], [0.01, 0, 1], [1, 1, 0]]), 0.1)[0]
        2
    """
    adj = (np.asarray(barriers) < threshold).astype(np.int8)
    np.fill_diagonal(adj, 0)
    n, labels = connected_components(csr_matrix(adj), directed=False)
    return int(n), labels


def count_basins(
    space: ParamSpace,
    minima: Sequence[torch.Tensor],
    *,
    threshold: float = 0.05,
    align: bool = True,
    rescale: bool = True,
    points: int = 25,
    seed: int = 0,
    curve: CurveConfig | None = None,
    progress: Progress | None = None,
) -> BasinCount:
    """Count basins among ``minima``: pairwise barriers, edges below ``threshold``, components.

    Args:
        space: the parameter space (its data and loss define the barriers).
        minima: parameter vectors of the same architecture.
        threshold: barrier below which two minima share a basin.
        align: permute each pair's second network onto the first (weight matching; MLPs).
        rescale: rebalance ReLU rescalings first (needs positively homogeneous activations).
        points: path resolution.
        seed: seed of the matching's layer order.
        curve: for pairs whose straight (aligned) barrier is at least ``threshold``, also
            train this curve between them and keep its barrier when lower (``None``: straight
            paths only). Curve barriers use the space's stored BatchNorm statistics.
        progress: optional progress reporter (one step per pair).

    Returns:
        The basin count with the barrier matrix.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> count_basins(sp, [sp.theta0, sp.theta0], align=False).num_basins
        1
    """
    k = len(minima)
    if k == 0:
        raise ConfigError("give at least one minimum to count basins.")
    if threshold <= 0:
        raise ConfigError(f"the barrier threshold must be positive, got {threshold}.")
    thetas = [m.detach().to(space.device, space.dtype) for m in minima]
    if align and rescale:
        thetas = [canonicalize(space, t) for t in thetas]
    bars = np.zeros((k, k))
    curved = np.zeros((k, k), dtype=bool)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    with tracked(progress, "barriers", len(pairs)) as task:
        for i, j in pairs:
            b = thetas[j]
            if align:
                b = weight_matching(space, thetas[i], b, seed=seed).theta
            bar = loss_barrier(space, thetas[i], b, points=points).barrier
            if curve is not None and not bar < threshold:
                c = train_curve(space, thetas[i], b, curve).control
                path = curve_path(space, thetas[i], c, b, curve.kind, points=points, repair=False)
                bar = min(bar, path.barrier)
                curved[i, j] = curved[j, i] = True
            bars[i, j] = bars[j, i] = bar
            task.advance()
    n, labels = components(bars, threshold)
    return BasinCount(
        n,
        labels,
        bars,
        float(threshold),
        bool(align),
        None if curve is None else curve.kind,
        curved if curve is not None else None,
    )
