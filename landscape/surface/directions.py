"""Directions that span a loss-surface slice.

* random Gaussian directions (explicit seed) normalized per filter (Li et al., 2018: each
  conv output channel / linear row of a ``weight`` tensor scaled to the norm of the same
  filter in θ), per layer (whole tensor) or not at all; biases and normalization-layer
  parameters zeroed by default, or kept and normalized as one-element filters;
* principal components of a training trajectory;
* linear interpolation between two checkpoints; the plane through three checkpoints;
* top Hessian eigenvectors.

A :class:`Directions` holds flat vectors in θ's layout plus the origin (the point at
coordinate 0), so that grid point ``c`` is ``origin + c[0]·d1 + c[1]·d2 (+ c[2]·d3)``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.engine.params import ParamInfo, ParamSpace
from landscape.errors import CheckpointError, ConfigError
from landscape.io.checkpoint import extract_state_dict, load_model, load_state_into

NORMALIZATIONS = ("filter", "layer", "none")
IGNORES = ("biasbn", "none")
KINDS = ("random", "pca", "interpolation", "plane", "eigen")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".pt2")
_EPS = 1e-10  # as in Li et al.'s reference implementation


@dataclass(frozen=True, eq=False)
class Directions:
    """Directions spanning a slice, and the origin they start from.

    Attributes:
        vectors: one flat tensor per axis, each of θ's size.
        origin: the flat parameter vector at coordinate 0.
        names: parameter names (θ's layout) the vectors were made for.
        shapes: the shapes of those parameters.
        kind: ``random``, ``pca``, ``interpolation``, ``plane`` or ``eigen``.
        normalization: ``filter``, ``layer`` or ``none``.
        ignore: ``biasbn`` (biases and norm-layer parameters zeroed) or ``none``.
        seed: seed of random directions (``None`` otherwise).
        explained_variance: PCA explained-variance ratios of the kept components.
        anchors: per axis, the coordinates of the checkpoints that defined the slice
            (interpolation endpoints, plane corners).
        trajectory: PCA: the trajectory projected on the directions, shape ``(steps, n)``.
        info: extra JSON-ready facts (eigenvalues, checkpoint paths, ...).
    """

    vectors: tuple[torch.Tensor, ...]
    origin: torch.Tensor
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    kind: str = "random"
    normalization: str = "filter"
    ignore: str = "biasbn"
    seed: int | None = None
    explained_variance: tuple[float, ...] | None = None
    anchors: tuple[tuple[float, ...], ...] | None = None
    trajectory: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dims(self) -> int:
        """Number of directions (axes)."""
        return len(self.vectors)

    def point(self, coords: Sequence[float]) -> torch.Tensor:
        """The flat parameters at grid coordinates ``coords``.

        Example:
            >>> d = Directions((torch.ones(2),), torch.zeros(2), ("w",), ((2,),))
            >>> d.point([0.5]).tolist()
            [0.5, 0.5]
        """
        theta = self.origin
        for c, v in zip(coords, self.vectors, strict=True):
            theta = theta + float(c) * v
        return theta

    def to(self, device: torch.device, dtype: torch.dtype) -> Directions:
        """A copy with tensors on ``device`` in ``dtype``."""
        return replace(
            self,
            vectors=tuple(v.to(device=device, dtype=dtype) for v in self.vectors),
            origin=self.origin.to(device=device, dtype=dtype),
        )

    def check(self, space: ParamSpace, source: str = "directions") -> None:
        """Raise :class:`ConfigError` unless these directions fit ``space``'s parameters."""
        names = tuple(space.names)
        shapes = tuple(i.shape for i in space.infos)
        if names != self.names or shapes != self.shapes:
            raise ConfigError(f"{source} {_mismatch(self.names, self.shapes, names, shapes)}")
        for v in (*self.vectors, self.origin):
            if v.numel() != space.dim:
                raise ConfigError(
                    f"{source} holds vectors of size {v.numel()} but the model has"
                    f" {space.dim} parameters; make directions for this model."
                )

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (without the vectors)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "dims": self.dims,
            "normalization": self.normalization,
            "ignore": self.ignore,
            "seed": self.seed,
            "norms": [float(v.double().norm()) for v in self.vectors],
        }
        if self.explained_variance is not None:
            out["explained_variance"] = list(self.explained_variance)
        if self.anchors is not None:
            out["anchors"] = [list(a) for a in self.anchors]
        out.update(self.info)
        return out


def _mismatch(
    have_names: Sequence[str],
    have_shapes: Sequence[tuple[int, ...]],
    names: Sequence[str],
    shapes: Sequence[tuple[int, ...]],
) -> str:
    if len(have_names) != len(names):
        return (
            f"has {len(have_names)} tensors but the model has {len(names)}; they were made for"
            " another architecture, make new directions for this model."
        )
    for hn, hs, n, s in zip(have_names, have_shapes, names, shapes, strict=True):
        if hn != n or tuple(hs) != tuple(s):
            return (
                f"does not match the model ({hn} {tuple(hs)} vs {n} {tuple(s)}); they were made"
                " for another architecture, make new directions for this model."
            )
    return "does not match the model; make new directions for this model."


# -- normalization --------------------------------------------------------------------
def _check_options(normalization: str, ignore: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ConfigError(
            f"unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}."
        )
    if ignore not in IGNORES:
        raise ConfigError(f"unknown ignore {ignore!r}; use biasbn or none.")


def normalize_direction(
    infos: Sequence[ParamInfo],
    direction: torch.Tensor,
    theta: torch.Tensor,
    normalization: str = "filter",
    ignore: str = "biasbn",
) -> torch.Tensor:
    """Scale a flat direction to θ per filter, per layer, or not at all (a new tensor).

    ``weight`` tensors (conv/linear): with ``filter``, each slice along the first dimension
    (conv output channel, linear row) gets the norm of the same slice of θ; with ``layer``
    the whole tensor gets the norm of θ's tensor. ``bias`` and ``norm`` tensors are zeroed
    with ``ignore="biasbn"``; otherwise they are normalized as one-element filters
    (``filter``: each entry gets θ's magnitude) or as a whole (``layer``).

    Args:
        infos: θ's layout (``ParamSpace.infos``).
        direction: flat direction.
        theta: flat reference point.
        normalization: ``filter``, ``layer`` or ``none``.
        ignore: ``biasbn`` or ``none``.

    Returns:
        The normalized direction.

    Example:
        >>> from landscape.engine.params import ParamInfo
        >>> infos = [ParamInfo("w", (2, 2), 0, 4, "weight", "Linear")]
        >>> d = normalize_direction(infos, torch.ones(4), torch.tensor([3.0, 4.0, 0.0, 2.0]))
        >>> [round(float(x), 4) for x in d.view(2, 2).norm(dim=1)]
        [5.0, 2.0]
    """
    _check_options(normalization, ignore)
    out = direction.clone()
    for info in infos:
        seg = out[info.slice].view(info.shape)
        th = theta[info.slice].view(info.shape)
        if info.role != "weight":
            if ignore == "biasbn":
                seg.zero_()
                continue
            if normalization == "filter":
                seg.mul_(th.abs() / (seg.abs() + _EPS))
            elif normalization == "layer":
                seg.mul_(th.norm() / (seg.norm() + _EPS))
            continue
        if normalization == "filter":
            d_norm = seg.reshape(info.shape[0], -1).norm(dim=1)
            t_norm = th.reshape(info.shape[0], -1).norm(dim=1)
            scale = (t_norm / (d_norm + _EPS)).view(-1, *([1] * (len(info.shape) - 1)))
            seg.mul_(scale)
        elif normalization == "layer":
            seg.mul_(th.norm() / (seg.norm() + _EPS))
    return out


def orthogonalize(vectors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Gram-Schmidt: each vector made orthogonal to the ones before it, keeping its norm.

    Example:
        >>> a, b = orthogonalize([torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])])
        >>> b.tolist()
        [0.0, 1.4142135381698608]
    """
    out: list[torch.Tensor] = []
    for v in vectors:
        w = v.double().clone()
        norm0 = w.norm()
        for _ in range(2):  # twice is enough for full precision
            for u in out:
                uu = u.double()
                w = w - (w @ uu) / (uu @ uu) * uu
        nw = w.norm()
        if nw == 0 or not torch.isfinite(nw):
            raise ConfigError(
                "a direction is parallel to an earlier one and cannot be orthogonalized;"
                " use another seed or drop --orthogonalize."
            )
        out.append((w * (norm0 / nw)).to(v.dtype))
    return tuple(out)


def _meta(space: ParamSpace) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    return tuple(space.names), tuple(i.shape for i in space.infos)


def random_directions(
    space: ParamSpace,
    n: int = 2,
    *,
    normalization: str = "filter",
    ignore: str = "biasbn",
    orthogonalize_: bool = False,
    seed: int = 0,
    theta: torch.Tensor | None = None,
) -> Directions:
    """Seeded Gaussian directions, normalized to θ (Li et al., 2018).

    The Gaussians are drawn in float64 on the CPU from ``torch.Generator().manual_seed(seed)``
    (d1 first, then d2, d3), so the same seed gives the same directions on every device
    and dtype, and a 1D slice uses the 2D slice's first direction.

    Args:
        space: the parameter space (θ's layout and value).
        n: number of directions (1, 2 or 3).
        normalization: ``filter`` (per output channel/row), ``layer`` or ``none``.
        ignore: ``biasbn`` zeroes biases and norm-layer parameters; ``none`` keeps them.
        orthogonalize_: Gram-Schmidt d2 (and d3) against d1 (norms kept; filter norms then
            hold only approximately).
        seed: random seed.
        theta: reference point and origin (default ``space.theta0``).

    Returns:
        The directions, on the space's device and dtype.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> random_directions(space, 2, seed=0).dims
        2
    """
    _check_options(normalization, ignore)
    if not 1 <= n <= 3:
        raise ConfigError(f"a surface has 1 to 3 directions, got {n}.")
    theta = space.theta0 if theta is None else theta
    th64 = theta.detach().to("cpu", torch.float64)
    g = torch.Generator().manual_seed(int(seed))
    vecs = []
    for _ in range(n):
        d = torch.randn(space.dim, generator=g, dtype=torch.float64)
        vecs.append(normalize_direction(space.infos, d, th64, normalization, ignore))
    if orthogonalize_ and n > 1:
        vecs = list(orthogonalize(vecs))
    if any(float(v.norm()) == 0.0 for v in vecs):
        raise ConfigError(
            "the directions are zero: the model has no conv/linear weights outside biases and"
            " norm layers; pass --keep-biases (ignore='none')."
        )
    names, shapes = _meta(space)
    return Directions(
        tuple(v.to(device=space.device, dtype=space.dtype) for v in vecs),
        theta.detach().clone(),
        names,
        shapes,
        kind="random",
        normalization=normalization,
        ignore=ignore,
        seed=int(seed),
    )


# -- checkpoints ---------------------------------------------------------------------
def trajectory_files(folder: str | Path) -> list[Path]:
    """Checkpoint files in ``folder`` in natural order (``step2`` before ``step10``).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> for n in ("e10.pt", "e2.pt", "notes.txt"): (d / n).touch()
        >>> [p.name for p in trajectory_files(d)]
        ['e2.pt', 'e10.pt']
    """
    p = Path(folder).expanduser()
    if not p.is_dir():
        raise ConfigError(
            f"--trajectory {folder} is not a directory; give a folder of checkpoints."
        )

    def key(path: Path) -> list[Any]:
        return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]

    files = [f for f in p.iterdir() if f.is_file() and f.suffix.lower() in CHECKPOINT_SUFFIXES]
    return sorted(files, key=key)


def _module_vector(space: ParamSpace, module: torch.nn.Module, source: str) -> torch.Tensor:
    params: dict[str, torch.Tensor] = dict(module.named_parameters())
    params.update({k: v for k, v in module.named_buffers() if k not in params})
    parts = []
    for info in space.infos:
        t = params.get(info.name)
        if t is None:
            raise CheckpointError(
                f"{source} has no parameter {info.name!r}; give checkpoints of the same"
                " architecture as the model."
            )
        if tuple(t.shape) != info.shape:
            raise CheckpointError(
                f"{source}: {info.name} has shape {tuple(t.shape)}, the model {info.shape};"
                " give checkpoints of the same architecture."
            )
        parts.append(t.detach().reshape(-1))
    return torch.cat(parts).to(device=space.device, dtype=space.dtype)


def load_checkpoint_vector(
    space: ParamSpace,
    path: str | Path,
    *,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    trust: bool = False,
) -> torch.Tensor:
    """Load a checkpoint of the same architecture as ``space`` and return its flat θ.

    Self-describing checkpoints (landscape bundles, TorchScript, torch.export) are read with
    :func:`landscape.io.load_model`; plain state_dicts use ``model`` (default: the factory
    the space's model was built from) or, when none is known, a copy of the space's module.

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> m = nn.Linear(10, 3)
        >>> space = ParamSpace(ModelBundle.from_module(m, load_data("synthetic")))
        >>> p = tempfile.mktemp(suffix=".pt"); torch.save(m.state_dict(), p)
        >>> bool(torch.equal(load_checkpoint_vector(space, p), space.theta0))
        True
    """
    p = Path(path).expanduser()
    prov = space.bundle.provenance
    factory = model or prov.get("factory")
    kwargs = model_kwargs if model else (model_kwargs or prov.get("factory_kwargs") or {})
    try:
        loaded = load_model(p, model=factory, model_kwargs=kwargs, trust=trust)
        module = loaded.module
    except CheckpointError:
        if factory is not None or space.scripted or not p.is_file():
            raise
        # a plain state_dict without a known factory: load it into a copy of our model
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"cannot read {path} as a checkpoint ({type(exc).__name__}); give a"
                " state_dict or landscape bundle of the same architecture."
            ) from exc
        sd = extract_state_dict(obj)
        if sd is None:
            raise CheckpointError(
                f"{path} holds no state_dict; save model.state_dict() for each checkpoint."
            ) from None
        module = copy.deepcopy(space.bundle.module).to("cpu")
        load_state_into(module, sd, str(p))
    return _module_vector(space, module, str(p))


def load_checkpoints(
    space: ParamSpace,
    paths: Sequence[str | Path],
    *,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    trust: bool = False,
) -> list[torch.Tensor]:
    """Flat θ of each checkpoint in ``paths`` (see :func:`load_checkpoint_vector`).

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> load_checkpoints(space, [])
        []
    """
    return [
        load_checkpoint_vector(space, p, model=model, model_kwargs=model_kwargs, trust=trust)
        for p in paths
    ]


# -- checkpoint-defined directions ---------------------------------------------------
def _mask(space: ParamSpace, ignore: str) -> torch.Tensor:
    m = torch.ones(space.dim, dtype=torch.float64)
    if ignore == "biasbn":
        for info in space.infos:
            if info.role != "weight":
                m[info.slice] = 0.0
    return m


def pca_directions(
    space: ParamSpace,
    trajectory: Sequence[torch.Tensor],
    n: int = 2,
    *,
    origin: torch.Tensor | None = None,
    ignore: str = "none",
) -> Directions:
    """Principal directions of a training trajectory (Li et al., 2018, section 7).

    The rows ``θ_i − origin`` are centred (as scikit-learn's PCA does) and decomposed by
    SVD in float64; the directions are the top ``n`` right singular vectors (unit norm),
    the explained-variance ratios are ``s_k² / Σ s²``, and each checkpoint is projected on
    the directions (``trajectory`` coordinates). Signs are fixed so the first checkpoint
    has a non-positive coordinate along each direction.

    Args:
        space: the parameter space (its θ is the default origin, usually the final model).
        trajectory: flat θ of each checkpoint, in training order (at least 2).
        n: number of directions (1 to 3, at most the number of checkpoints).
        origin: the point at coordinate 0 (default ``space.theta0``).
        ignore: ``biasbn`` leaves biases and norm-layer parameters out of the analysis.

    Returns:
        The directions with ``explained_variance`` and ``trajectory`` filled in.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> traj = [space.theta0 + 0.1 * k * torch.ones(space.dim) for k in range(4)]
        >>> round(pca_directions(space, traj, 1).explained_variance[0], 6)
        1.0
    """
    _check_options("none", ignore)
    if len(trajectory) < 2:
        raise ConfigError(
            f"PCA directions need at least 2 checkpoints, got {len(trajectory)}; pass more"
            " --checkpoints or a --trajectory folder."
        )
    if not 1 <= n <= 3:
        raise ConfigError(f"a surface has 1 to 3 directions, got {n}.")
    origin = space.theta0 if origin is None else origin
    o64 = origin.detach().to("cpu", torch.float64)
    mask = _mask(space, ignore)
    rows = torch.stack([(t.detach().to("cpu", torch.float64) - o64) * mask for t in trajectory])
    centred = rows - rows.mean(dim=0, keepdim=True)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)
    total = float((s**2).sum())
    if total == 0.0:
        raise ConfigError(
            "the checkpoints of the trajectory are all identical; give checkpoints from"
            " different training steps."
        )
    if n > vt.shape[0]:
        raise ConfigError(
            f"{n} PCA directions need at least {n} checkpoints, got {len(trajectory)}."
        )
    vecs = []
    for k in range(n):
        v = vt[k].clone()
        first = float(rows[0] @ v)
        if first > 0 or (first == 0 and float(v[int(v.abs().argmax())]) < 0):
            v = -v
        vecs.append(v)
    basis = torch.stack(vecs)
    coords = (rows @ basis.T).numpy()
    ratios = tuple(float(x) for x in (s[:n] ** 2 / total))
    names, shapes = _meta(space)
    return Directions(
        tuple(v.to(device=space.device, dtype=space.dtype) for v in vecs),
        origin.detach().clone(),
        names,
        shapes,
        kind="pca",
        normalization="none",
        ignore=ignore,
        seed=None,
        explained_variance=ratios,
        trajectory=coords,
        info={"num_checkpoints": len(trajectory)},
    )


def interpolation_direction(
    space: ParamSpace, theta_a: torch.Tensor, theta_b: torch.Tensor
) -> Directions:
    """The line through two checkpoints: origin ``θ_a``, direction ``θ_b − θ_a``.

    Coordinate 0 is checkpoint A and 1 is checkpoint B; ranges may extend beyond both,
    e.g. ``-0.5:1.5``. Buffers (BatchNorm statistics) are the space's model's; use
    ``recompute_bn`` for models with BatchNorm.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> d = interpolation_direction(space, space.theta0, space.theta0 + 1)
        >>> d.anchors
        ((0.0, 1.0),)
    """
    a = theta_a.detach().to(device=space.device, dtype=space.dtype)
    b = theta_b.detach().to(device=space.device, dtype=space.dtype)
    d = b - a
    if float(d.abs().max()) == 0.0:
        raise ConfigError("the two checkpoints are identical; interpolate between different ones.")
    names, shapes = _meta(space)
    return Directions(
        (d,),
        a.clone(),
        names,
        shapes,
        kind="interpolation",
        normalization="none",
        ignore="none",
        anchors=((0.0, 1.0),),
    )


def plane_directions(
    space: ParamSpace, theta_a: torch.Tensor, theta_b: torch.Tensor, theta_c: torch.Tensor
) -> Directions:
    """The plane through three checkpoints (Garipov et al., 2018).

    Origin ``θ_a``; ``d1 = θ_b − θ_a``; ``d2`` is ``θ_c − θ_a`` made orthogonal to ``d1``
    and scaled to ``‖d1‖`` (an orthonormal basis scaled by ``‖θ_b − θ_a‖``, so distances
    are undistorted). A sits at ``(0, 0)``, B at ``(1, 0)``, C at the coordinates given in
    ``anchors``.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> e = torch.eye(space.dim, dtype=space.dtype)
        >>> t = space.theta0
        >>> d = plane_directions(space, t, t + e[0], t + e[0] + 2 * e[1])
        >>> [[round(x, 6) for x in a] for a in d.anchors]
        [[0.0, 1.0, 1.0], [0.0, 0.0, 2.0]]
    """
    a = theta_a.detach().to("cpu", torch.float64)
    u = theta_b.detach().to("cpu", torch.float64) - a
    w = theta_c.detach().to("cpu", torch.float64) - a
    uu = float(u @ u)
    if uu == 0.0:
        raise ConfigError("checkpoints A and B are identical; give three distinct checkpoints.")
    cx = float(w @ u) / uu
    w_perp = w - cx * u
    for _ in range(1):
        w_perp = w_perp - (float(w_perp @ u) / uu) * u
    nperp = float(w_perp.norm())
    if nperp <= 1e-12 * max(1.0, float(w.norm())):
        raise ConfigError(
            "the three checkpoints lie on one line, so they span no plane; use"
            " --directions interpolate or other checkpoints."
        )
    scale = uu**0.5
    v = w_perp * (scale / nperp)
    cy = nperp / scale
    names, shapes = _meta(space)
    return Directions(
        (u.to(space.device, space.dtype), v.to(space.device, space.dtype)),
        theta_a.detach().to(device=space.device, dtype=space.dtype).clone(),
        names,
        shapes,
        kind="plane",
        normalization="none",
        ignore="none",
        anchors=((0.0, 1.0, cx), (0.0, 0.0, cy)),
        info={"scale": scale},
    )


EigenSolver = Callable[..., Any]


def eigen_directions(
    space: ParamSpace,
    source: Any,
    n: int = 2,
    *,
    normalization: str = "none",
    ignore: str = "none",
    seed: int = 0,
    progress: Any = None,
) -> Directions:
    """Top Hessian eigenvectors as directions.

    ``source`` is either eigenvectors already computed (an ``Eigenpairs`` with vectors, or
    an array of shape ``(k, dim)``, rows in descending eigenvalue order), or an eigensolver
    called as ``source(op, n, seed=seed, return_vectors=True, progress=progress)`` on the
    Hessian of the space at θ (``landscape.hessian.top_eigenpairs`` has that signature; it
    is passed in, not imported, because surface and hessian are independent layers).

    Args:
        space: the parameter space.
        source: eigenvectors or an eigensolver.
        n: number of directions.
        normalization: ``none`` keeps unit eigenvectors; ``filter``/``layer`` rescale them
            like random directions (they are then no longer eigenvectors).
        ignore: ``biasbn`` zeroes biases and norm-layer entries.
        seed: seed passed to the solver.
        progress: progress reporter passed to the solver.

    Returns:
        The directions; ``info["eigenvalues"]`` holds the eigenvalues when known.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> vecs = torch.eye(space.dim)[:2].numpy()
        >>> eigen_directions(space, vecs).dims
        2
    """
    _check_options(normalization, ignore)
    if not 1 <= n <= 3:
        raise ConfigError(f"a surface has 1 to 3 directions, got {n}.")
    values: list[float] | None = None
    if callable(source):
        from landscape.engine.curvature import CurvatureOperator

        op = CurvatureOperator(space)
        pairs = source(op, n, seed=seed, return_vectors=True, progress=progress)
        vecs_np = pairs.vectors
        values = [float(v) for v in np.asarray(pairs.values)[:n]]
    elif hasattr(source, "vectors"):
        vecs_np = source.vectors
        values = [float(v) for v in np.asarray(source.values)[:n]]
    else:
        vecs_np = source
    if vecs_np is None:
        raise ConfigError("the eigenpairs hold no vectors; compute them with return_vectors=True.")
    vt = torch.as_tensor(np.asarray(vecs_np), dtype=torch.float64)
    if vt.dim() != 2 or vt.shape[1] != space.dim or vt.shape[0] < n:
        raise ConfigError(
            f"eigenvectors of shape {tuple(vt.shape)} do not fit: need at least {n} rows of"
            f" size {space.dim}."
        )
    th64 = space.theta0.detach().to("cpu", torch.float64)
    vecs = []
    for k in range(n):
        v = vt[k] / vt[k].norm()
        if normalization != "none" or ignore != "none":
            v = normalize_direction(space.infos, v, th64, normalization, ignore)
        vecs.append(v)
    names, shapes = _meta(space)
    info: dict[str, Any] = {}
    if values is not None:
        info["eigenvalues"] = values
    return Directions(
        tuple(v.to(device=space.device, dtype=space.dtype) for v in vecs),
        space.theta0.detach().clone(),
        names,
        shapes,
        kind="eigen",
        normalization=normalization,
        ignore=ignore,
        seed=int(seed),
        info=info,
    )


# -- files --------------------------------------------------------------------------
def save_directions(path: str | Path, directions: Directions) -> Path:
    """Write ``directions.pt`` (loadable with ``weights_only=True``), atomically.

    The file is a dict ``{"d1", "d2", ("d3",) "origin", "names", "shapes", "kind",
    "normalization", "ignore", "seed", ...}`` of CPU tensors and plain values.

    Example:
        >>> import tempfile
        >>> d = Directions((torch.ones(2),), torch.zeros(2), ("w",), ((2,),))
        >>> save_directions(Path(tempfile.mkdtemp()) / "directions.pt", d).name
        'directions.pt'
    """
    from landscape.io.rundir import atomic_write

    payload: dict[str, Any] = {
        f"d{k + 1}": v.detach().to("cpu").clone() for k, v in enumerate(directions.vectors)
    }
    payload.update(
        {
            "origin": directions.origin.detach().to("cpu").clone(),
            "names": list(directions.names),
            "shapes": [list(s) for s in directions.shapes],
            "kind": directions.kind,
            "normalization": directions.normalization,
            "ignore": directions.ignore,
            "seed": directions.seed,
            "explained_variance": (
                None
                if directions.explained_variance is None
                else list(directions.explained_variance)
            ),
            "anchors": None
            if directions.anchors is None
            else [list(a) for a in directions.anchors],
            "trajectory": (
                None
                if directions.trajectory is None
                else torch.as_tensor(np.asarray(directions.trajectory, dtype=np.float64))
            ),
            "info": {k: v for k, v in directions.info.items() if _plain(v)},
        }
    )
    p = Path(path)
    atomic_write(p, lambda tmp: torch.save(payload, tmp))
    return p


def _plain(v: Any) -> bool:
    if isinstance(v, str | int | float | bool) or v is None:
        return True
    if isinstance(v, list | tuple):
        return all(_plain(x) for x in v)
    return False


def load_directions(path: str | Path, space: ParamSpace, *, origin: str = "auto") -> Directions:
    """Load ``directions.pt`` and check it fits ``space``'s parameters.

    Args:
        path: the file.
        space: the parameter space the directions will be used with.
        origin: ``file`` (the stored origin), ``model`` (``space.theta0``) or ``auto``:
            the stored origin for checkpoint-defined kinds (interpolation, plane, PCA),
            the model's θ for random and eigen directions.

    Returns:
        The directions on the space's device and dtype.

    Raises:
        ConfigError: if the file is unreadable or made for another architecture.

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> p = save_directions(Path(tempfile.mkdtemp()) / "d.pt", random_directions(space))
        >>> load_directions(p, space).dims
        2
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"direction file {path} does not exist; check the path.")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(
            f"cannot read direction file {path} ({type(exc).__name__}); give a directions.pt"
            " written by `landscape surface`."
        ) from exc
    if not isinstance(obj, dict) or "d1" not in obj or "names" not in obj or "shapes" not in obj:
        raise ConfigError(
            f"{path} is not a direction file (needs d1, names, shapes); give a directions.pt"
            " written by `landscape surface`."
        )
    vecs = []
    for k in (1, 2, 3):
        v = obj.get(f"d{k}")
        if v is None:
            break
        if not isinstance(v, torch.Tensor):
            raise ConfigError(f"{path}: d{k} is not a tensor; rewrite the direction file.")
        vecs.append(v.reshape(-1))
    names = tuple(str(n) for n in obj["names"])
    shapes = tuple(tuple(int(x) for x in s) for s in obj["shapes"])
    stored_origin = obj.get("origin")
    kind = str(obj.get("kind", "random"))
    use_file = origin == "file" or (
        origin == "auto" and kind in ("interpolation", "plane", "pca") and stored_origin is not None
    )
    if origin not in ("auto", "file", "model"):
        raise ConfigError(f"origin must be auto, file or model, got {origin!r}.")
    if use_file and not isinstance(stored_origin, torch.Tensor):
        raise ConfigError(f"{path} stores no origin; load it with origin='model'.")
    org = stored_origin.reshape(-1) if use_file and stored_origin is not None else space.theta0
    traj = obj.get("trajectory")
    ev = obj.get("explained_variance")
    anchors = obj.get("anchors")
    seed = obj.get("seed")
    d = Directions(
        tuple(vecs),
        org,
        names,
        shapes,
        kind=kind,
        normalization=str(obj.get("normalization", "none")),
        ignore=str(obj.get("ignore", "none")),
        seed=None if seed is None else int(seed),
        explained_variance=None if ev is None else tuple(float(x) for x in ev),
        anchors=None if anchors is None else tuple(tuple(float(x) for x in a) for a in anchors),
        trajectory=None if traj is None else np.asarray(traj.numpy(), dtype=np.float64),
        info=dict(obj.get("info") or {}),
    )
    d.check(space, f"direction file {path}")
    return d.to(space.device, space.dtype)
