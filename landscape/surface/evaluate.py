"""Evaluating loss and accuracy on a grid of points ``origin + Σ c_k d_k``.

One evaluator serves the CPU and accelerators (the device comes from the model); it
chooses one of the evaluation paths of :mod:`landscape.surface.paths` (the first-layer
trick is in :mod:`landscape.surface.first_layer`, the progress files in
:mod:`landscape.surface.progress`):

* ``fused``: one point at a time through a rewritten eager forward of a plain
  ``nn.Sequential`` (:mod:`landscape.surface.fused`: BatchNorm folded into the preceding
  Conv/Linear at every point, channels_last activations, the first convolution as one
  GEMM on input patches cached per chunk, ReLU in place and after 2×2 max pooling). No
  compilation, so no warm-up; on a 2-core CPU it evaluates the digits CNN as fast per
  point as the compiled loop. The CPU default (``compile="auto"``) when the model allows.
* ``loop``: one point at a time through a functional forward (``torch.func.functional_call``)
  whose grid coordinates are tensors, so ``torch.compile`` builds one graph for every point
  (Python floats would recompile per point). Compilation is optional and falls back to
  eager execution if it fails. The CPU path for other models, and with ``compile=False``
  (the model's own operations, bit-identical to :meth:`ParamSpace.evaluate`).
* ``vmap``: a batch of points at once with ``torch.func.vmap`` over the coordinates. The
  default on accelerators, where it is combined with large data chunks, optional bf16
  autocast (fp32 loss, float64 sums) and channels_last inputs for convolutions (which
  the compiled CPU loop uses too).
* first-layer trick: when the model is an ``nn.Sequential`` whose first parameterized
  module is a Conv/Linear applied to the input, ``layer(x, W + Σ c_k D_k) = layer(x, W) +
  Σ c_k layer(x, D_k)`` (biases likewise); the ``1 + k`` outputs are computed once per data
  chunk and reused for every point.

Losses are exact means over the split: per-chunk sums are added in float64 in chunk order
and divided by the number of samples, the way :meth:`ParamSpace.evaluate` does, so the
centre of a grid reproduces the loss at θ bit for bit on the eager loop path. BatchNorm is
in eval mode unless ``recompute_bn`` re-estimates running statistics at every point.
Long grids save their progress atomically every few seconds and resume without losing or
recomputing a point.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.progress import Progress, tracked
from landscape.surface.directions import Directions
from landscape.surface.first_layer import (
    FIRST_LAYER_CACHE_BYTES,
    FirstLayer,
    detect_first_layer,
)
from landscape.surface.fused import FusedPlan, build_fused
from landscape.surface.grid import GridSpec
from landscape.surface.paths import EvalPath, make_path
from landscape.surface.progress import load_progress as _load_progress
from landscape.surface.progress import save_progress as _save_progress
from landscape.surface.result import Surface, relative_error

METHODS = ("auto", "loop", "vmap", "fused")
DATA_CACHE_BYTES = 1 << 30
AUTO_COMPILE_SECONDS = 60.0  # compiling costs ~15-45 s on a small CPU; it saves ~2/3


# -- the evaluator -----------------------------------------------------------------------
ALLOCATOR_WARMUP_BYTES = 30 << 20


def _warm_allocator(device: torch.device) -> None:
    """Let the C allocator keep freed activations instead of returning them to the OS.

    glibc's malloc raises its mmap and trim thresholds to the size of the largest block it
    has released (up to 32 MiB). Until then every point's activations of a few MiB are
    mapped fresh from the OS and page-faulted in, which on a small CPU doubles the time of
    a conv net's forward. Allocating and releasing one untouched block of 30 MiB (no page
    is written) raises the thresholds once; other allocators ignore it.
    """
    if device.type == "cpu":
        block = torch.empty(ALLOCATOR_WARMUP_BYTES, dtype=torch.uint8)
        del block


class _MaybeCompiled:
    """A function run through ``torch.compile`` that falls back to eager on any failure."""

    def __init__(self, fn: Callable[..., Any], enabled: bool) -> None:
        self.fn = fn
        self.compiled: Callable[..., Any] | None = None
        self.error: str | None = None
        if enabled:
            try:
                self.compiled = torch.compile(fn, dynamic=False)
            except Exception as exc:  # noqa: BLE001
                self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.compiled = None
        self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        warnings.warn(
            f"torch.compile failed ({self.error}); evaluating the surface eagerly.",
            RuntimeWarning,
            stacklevel=3,
        )

    @property
    def active(self) -> bool:
        """Whether calls currently go through the compiled function."""
        return self.compiled is not None

    def __call__(self, *args: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as exc:  # noqa: BLE001
                self._fail(exc)
        return self.fn(*args)


class PointEvaluator:
    """Loss and accuracy at arbitrary points ``origin + Σ c_k d_k`` of one slice.

    Args:
        space: the parameter space (model, data, loss).
        directions: the directions (moved to the space's device and dtype).
        splits: ``("train",)`` or ``("train", "test")``.
        method: ``auto`` (on the CPU ``fused`` when ``compile="auto"`` and the model
            allows it, else ``loop``; ``vmap`` elsewhere), ``loop``, ``vmap`` or ``fused``
            (falls back to ``loop`` with a warning when the model does not allow it).
        compile: ``True`` (compile the loop), ``False`` (the plain eager loop, which
            reproduces :meth:`ParamSpace.evaluate` bit for bit), or ``auto``: the fused
            forward where it applies, else the loop, compiled once enough eager work
            remains to repay the compilation (see :func:`evaluate_surface`).
        first_layer: use the first-layer trick when the model allows it (``auto``/``True``)
            or never (``False``).
        chunk_size: data chunk size (default: the data's batch size).
        bf16: bfloat16 autocast for the forward pass (losses in the model's dtype, sums in
            float64).
        recompute_bn: re-estimate BatchNorm running statistics at every point (train-mode
            passes over the training chunks with cumulative averages, on a private copy).

    Example:
        >>> from landscape.io import ModelBundle, load_data
        >>> from landscape.surface.directions import random_directions
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> ev = PointEvaluator(space, random_directions(space, 2), compile=False)
        >>> ev.evaluate(np.zeros((1, 2)))["train_loss"].shape
        (1,)
    """

    def __init__(
        self,
        space: ParamSpace,
        directions: Directions,
        *,
        splits: Sequence[str] = ("train",),
        method: str = "auto",
        compile: bool | str = "auto",  # noqa: A002
        first_layer: bool | str = "auto",
        chunk_size: int | None = None,
        bf16: bool = False,
        recompute_bn: bool = False,
    ) -> None:
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; use auto, loop or vmap.")
        if compile not in (True, False, "auto"):
            raise ConfigError(f"compile must be True, False or 'auto', got {compile!r}.")
        if chunk_size is not None and chunk_size <= 0:
            raise ConfigError(f"chunk size must be positive, got {chunk_size}.")
        directions.check(space)
        _warm_allocator(space.device)
        self.space = space
        self.splits = tuple(splits)
        self.dirs = directions.to(space.device, space.dtype)
        self.k = self.dirs.dims
        self.dtype = space.dtype
        self.device = space.device
        self.loss = space.bundle.loss
        self.chunk_size = chunk_size
        self.bf16 = bool(bf16)
        self.recompute_bn = bool(recompute_bn)
        self.base = {i.name: self.dirs.origin[i.slice].view(i.shape) for i in space.infos}
        self.dvecs = [
            {i.name: v[i.slice].view(i.shape) for i in space.infos} for v in self.dirs.vectors
        ]
        self.buffers = dict(space.buffers)
        self.n = {s: space.num_units(s) for s in self.splits}
        for s in self.splits:
            if self.n[s] == 0:
                raise ConfigError(f"the {s} split is empty; give data for it or drop it.")
        self.fused: FusedPlan | None = None
        if space.scripted:
            self.method = "scripted"
        elif self.recompute_bn:
            self.method = "recompute"
        elif method == "auto":
            self.method = "loop" if self.device.type == "cpu" else "vmap"
            if self.device.type == "cpu" and compile == "auto":
                self.fused = build_fused(space)
        elif method == "fused":
            self.method = "loop"
            self.fused = build_fused(space)
            if self.fused is None:
                warnings.warn(
                    "the fused forward does not apply to this model (it needs a plain"
                    " nn.Sequential of Linear/Conv/BatchNorm/LayerNorm and parameter-free"
                    " layers); using the loop.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        else:
            self.method = method
        if self.fused is not None:
            self.method = "fused"
        self._has_conv2d = any(isinstance(m, nn.Conv2d) for m in space.bundle.module.modules())
        self.channels_last = self.device.type == "cuda" or (
            self.fused is not None and self.fused.channels_last
        )
        self.first: FirstLayer | None = None
        if first_layer and self.method in ("loop", "vmap"):
            self.first = detect_first_layer(space)
            if first_layer is True and self.first is None:
                warnings.warn(
                    "the first-layer trick does not apply to this model; using the plain path.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        self.has_acc = self._has_accuracy()
        self._chunks: dict[str, list[tuple[torch.Tensor, torch.Tensor]] | None] = {}
        self._first_cache: dict[tuple[str, int], tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self._cache_first = False
        if self.first is not None:
            self._cache_first = self._first_cache_fits()
        self.compile_mode = compile
        self._step = _MaybeCompiled(self._make_step(), enabled=False)
        self._vstep: _MaybeCompiled | None = None
        if self.method == "loop" and compile is True:
            self.enable_compile()
        elif self.method == "vmap":
            self._vstep = _MaybeCompiled(self._make_vstep(), enabled=compile is True)
        self.points_evaluated = 0
        self.path: EvalPath = make_path(self)

    # -- setup helpers ---------------------------------------------------------------
    def _has_accuracy(self) -> bool:
        if not self.loss.classification:
            return False
        y = self.space.bundle.data.y_train
        if y.is_floating_point():
            return False
        x = self.space.bundle.to_device(self.space.bundle.data.x_train[:2])
        with torch.no_grad():
            out = self.space.forward(self.dirs.origin, x)
        return out.dim() >= 2

    def _first_cache_fits(self) -> bool:
        assert self.first is not None
        x = self.space.bundle.to_device(self.space.bundle.data.x_train[:1])
        with torch.no_grad():
            z0, _ = self.first.parts(x, self.base, [])
        per_sample = z0.numel() * z0.element_size()
        total = sum(self.n.values()) * per_sample * (1 + self.k)
        return total <= FIRST_LAYER_CACHE_BYTES

    def chunks(self, split: str) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(index, x, y)`` data chunks on the device (cached when small)."""
        cached = self._chunks.get(split)
        if cached is not None:
            for i, (x, y) in enumerate(cached):
                yield i, x, y
            return
        data = self.space.bundle.data
        x_all = data.x_train if split == "train" else data.x_test
        nbytes = 0 if x_all is None else x_all.numel() * x_all.element_size()
        keep = split not in self._chunks and nbytes <= DATA_CACHE_BYTES
        store: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, (x, y) in enumerate(self.space.chunks(split, self.chunk_size)):
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if keep:
                store.append((x, y))
            yield i, x, y
        self._chunks[split] = store if keep else None

    def _first_parts(
        self, split: str, index: int, x: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        assert self.first is not None
        key = (split, index)
        hit = self._first_cache.get(key)
        if hit is not None:
            return hit
        parts = self.first.parts(x, self.base, self.dvecs)
        if self._cache_first:
            self._first_cache[key] = parts
        return parts

    def _autocast(self) -> Any:
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _stats(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if out.dtype != self.dtype:
            out = out.to(self.dtype)
        ls = self.loss.chunk_sum(out, y)
        if self.has_acc:
            return ls, (out.argmax(dim=-1) == y).sum()
        return (ls,)

    def _make_step(self) -> Callable[..., Any]:
        module = self.space.bundle.module
        first = self.first
        k = self.k

        def params_at(
            c: torch.Tensor,
            base: dict[str, torch.Tensor],
            dvecs: Sequence[dict[str, torch.Tensor]],
            buffers: dict[str, torch.Tensor],
        ) -> dict[str, torch.Tensor]:
            params = {}
            for name, b in base.items():
                p = b
                for j in range(k):
                    p = p + c[j] * dvecs[j][name]
                params[name] = p
            params.update(buffers)
            return params

        if first is None:

            def step(c, x, y, base, dvecs, buffers):  # noqa: ANN001, ANN202
                params = params_at(c, base, dvecs, buffers)
                with self._autocast():
                    out = functional_call(module, params, (x,), strict=False)
                return self._stats(out, y)

        else:

            def step(c, x, y, base, dvecs, buffers):  # noqa: ANN001, ANN202
                z0, zs = x
                z = z0
                for j in range(k):
                    z = z + c[j] * zs[j]
                params = params_at(c, base, dvecs, buffers)
                with self._autocast():
                    out = first.forward_rest(params, z)
                return self._stats(out, y)

        return step

    def _make_vstep(self) -> Callable[..., Any]:
        step = self._make_step()

        def vstep(cs, x, y, base, dvecs, buffers):  # noqa: ANN001, ANN202
            return vmap(step, in_dims=(0, None, None, None, None, None))(
                cs, x, y, base, dvecs, buffers
            )

        return vstep

    def enable_compile(self) -> None:
        """Route the loop path through ``torch.compile`` (eager fallback on failure).

        Convolutional models then take channels_last inputs on the CPU as well (oneDNN
        convolutions are about 1.3× faster in that layout); the eager path keeps the
        default layout, so that it reproduces :meth:`ParamSpace.evaluate` bit for bit.
        """
        if self.method == "loop" and not self._step.active and self._step.error is None:
            self._step = _MaybeCompiled(self._make_step(), enabled=True)
            if self._step.active and self._has_conv2d and not self.channels_last:
                self.channels_last = True
                self._chunks.clear()
                self._first_cache.clear()

    @property
    def compiled(self) -> bool:
        """Whether the point function is currently compiled."""
        if self.method == "vmap" and self._vstep is not None:
            return self._vstep.active
        return self._step.active

    # -- evaluation ----------------------------------------------------------------
    def evaluate(self, coords: np.ndarray) -> dict[str, np.ndarray]:
        """Loss and accuracy at each row of ``coords`` (shape ``(P, dims)``).

        Returns:
            ``{"train_loss", "train_accuracy"(, "test_loss", "test_accuracy")}`` arrays
            of shape ``(P,)`` (accuracy NaN for regression).
        """
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, self.k)
        with torch.no_grad():
            out = self.path.evaluate(coords)
        self.points_evaluated += coords.shape[0]
        return out

    def _finish(
        self, split: str, tot: torch.Tensor, cor: torch.Tensor | None
    ) -> dict[str, np.ndarray]:
        n = self.n[split]
        loss = (tot / n).cpu().numpy()
        if cor is not None and self.has_acc:
            acc = (cor.to(torch.float64) / n).cpu().numpy()
        else:
            acc = np.full(loss.shape, np.nan)
        return {f"{split}_loss": loss, f"{split}_accuracy": acc}

    def _theta(self, c: np.ndarray) -> torch.Tensor:
        cs = torch.as_tensor(c, dtype=self.dtype).to(self.device)
        theta = self.dirs.origin
        for j, v in enumerate(self.dirs.vectors):
            theta = theta + cs[j] * v
        return theta


# -- progress files ---------------------------------------------------------------------
def _fingerprint(
    directions: Directions, grid: GridSpec, splits: Sequence[str], options: dict[str, Any]
) -> str:
    h = hashlib.sha256()
    for v in (directions.origin, *directions.vectors):
        h.update(v.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    for c in grid.coordinates():
        h.update(np.ascontiguousarray(c).tobytes())
    h.update(json.dumps({"splits": list(splits), **options}, sort_keys=True).encode())
    return h.hexdigest()


# -- the public entry points ----------------------------------------------------------
def evaluate_points(
    space: ParamSpace,
    directions: Directions,
    points: np.ndarray,
    *,
    test: bool = True,
    **options: Any,
) -> dict[str, np.ndarray]:
    """Loss and accuracy at arbitrary coordinates ``points`` (shape ``(P, dims)``).

    Args:
        space: the parameter space.
        directions: the slice's directions.
        points: coordinates, one row per point.
        test: also evaluate the test split when the data has one.
        **options: :class:`PointEvaluator` options (method, compile, first_layer, ...).

    Returns:
        Arrays of shape ``(P,)`` keyed ``train_loss``, ``train_accuracy`` (and test ones).

    Example:
        >>> from landscape.io import ModelBundle, load_data
        >>> from landscape.surface.directions import random_directions
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> d = random_directions(space, 1)
        >>> r = evaluate_points(space, d, np.array([[0.0]]), compile=False)
        >>> bool(r["train_loss"][0] == space.evaluate()[0])
        True
    """
    splits = ("train", "test") if test and space.bundle.data.has_test else ("train",)
    ev = PointEvaluator(space, directions, splits=splits, **options)
    return ev.evaluate(np.asarray(points, dtype=np.float64).reshape(-1, directions.dims))


def evaluate_surface(
    space: ParamSpace,
    directions: Directions,
    grid: GridSpec,
    *,
    test: bool = True,
    recompute_bn: bool = False,
    method: str = "auto",
    compile: bool | str = "auto",  # noqa: A002
    first_layer: bool | str = "auto",
    points_per_batch: int | None = None,
    chunk_size: int | None = None,
    bf16: bool = False,
    progress_file: str | Path | None = None,
    resume: bool = False,
    save_every: float = 5.0,
    max_points: int | None = None,
    callback: Callable[[np.ndarray], None] | None = None,
    progress: Progress | None = None,
) -> Surface:
    """Evaluate train (and test) loss and accuracy on a grid through ``directions``.

    Args:
        space: the parameter space (model, data, loss).
        directions: one direction per grid axis.
        grid: the grid (its ``dims`` must equal the number of directions).
        test: also evaluate the test split when the data has one.
        recompute_bn: re-estimate BatchNorm statistics at each point (else eval mode).
        method: ``auto``, ``loop``, ``vmap`` or ``fused`` (see :class:`PointEvaluator`).
        compile: ``auto``, ``True`` or ``False``. ``auto`` takes the fastest path end to
            end: the fused eager forward when the model is a plain ``nn.Sequential`` of
            supported layers (no compilation: it is as fast per point as the compiled
            loop, so compiling never repays its 10-20 s); otherwise the loop, compiled
            once the first batch's measured time per point says the remaining eager work
            exceeds ``AUTO_COMPILE_SECONDS`` (compiling costs ~15-45 s on a small CPU and
            saves about 2/3). ``False`` is the plain eager loop, bit-identical to
            :meth:`ParamSpace.evaluate`. All paths agree to float rounding (about 1e-7
            relative in float32); keep the option fixed for bit-identical resumes.
        first_layer: use the first-layer trick when possible.
        points_per_batch: points per batch (vmap batch; default 16 on accelerators, 8 on
            the CPU); batches are fixed slices of the grid so results do not depend on
            interruptions.
        chunk_size: data chunk size (default: the data's batch size).
        bf16: bfloat16 autocast; the error against fp32 on the centre row is reported.
        progress_file: where to keep progress (``.npz``); enables resuming.
        resume: continue from ``progress_file`` (its configuration must match).
        save_every: seconds between progress saves.
        max_points: stop (after a whole batch) once this many points were evaluated in
            this call; the returned surface is then incomplete (NaN where not evaluated).
        callback: called with the flat indices of each finished batch, after it is saved.
        progress: progress reporter (one step per grid point).

    Returns:
        The :class:`Surface`.

    Raises:
        ConfigError: if the grid and directions disagree.
        RunDirError: if a progress file to resume belongs to another configuration.

    Example:
        >>> from landscape.io import ModelBundle, load_data
        >>> from landscape.surface.directions import random_directions
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> s = evaluate_surface(space, random_directions(space, 2), GridSpec.parse("5x3"),
        ...                      compile=False)
        >>> s.train_loss.shape
        (5, 3)
    """
    if grid.dims != directions.dims:
        raise ConfigError(
            f"the grid has {grid.dims} axes but there are {directions.dims} directions;"
            " make them agree (--dims)."
        )
    if max_points is not None and max_points < 1:
        raise ConfigError(f"max_points must be at least 1, got {max_points}.")
    splits = ("train", "test") if test and space.bundle.data.has_test else ("train",)
    ev = PointEvaluator(
        space,
        directions,
        splits=splits,
        method=method,
        compile=compile,
        first_layer=first_layer,
        chunk_size=chunk_size,
        bf16=bf16,
        recompute_bn=recompute_bn,
    )
    keys = [f"{s}_{q}" for s in splits for q in ("loss", "accuracy")]
    size = grid.size
    points = grid.points()
    options = {
        "recompute_bn": bool(recompute_bn),
        "bf16": bool(bf16),
        "dtype": str(space.dtype),
        "n": [ev.n[s] for s in splits],
        "chunk_size": chunk_size or space.bundle.data.batch_size,
        "method": ev.method,
    }
    if ev.method == "vmap":
        options["points_per_batch"] = points_per_batch
    fp = _fingerprint(directions, grid, splits, options)
    path = Path(progress_file) if progress_file is not None else None
    done = np.zeros(size, dtype=bool)
    arrays = {k: np.full(size, np.nan) for k in keys}
    if path is not None and resume:
        loaded = _load_progress(path, fp, size, keys)
        if loaded is not None:
            done, arrays = loaded
    block = points_per_batch or (16 if ev.device.type != "cpu" else 8)
    if block < 1:
        raise ConfigError(f"points_per_batch must be at least 1, got {block}.")
    pending_blocks = [
        idx
        for start in range(0, size, block)
        if (idx := np.arange(start, min(start + block, size))[~done[start : start + block]]).size
    ]
    t_start = time.perf_counter()
    last_save = t_start
    evaluated = 0
    unsaved = False
    seconds_eval = 0.0
    with tracked(progress, "surface", size) as task:
        if done.any():
            task.advance(int(done.sum()))
        try:
            for bi, idx in enumerate(pending_blocks):
                if max_points is not None and evaluated >= max_points:
                    break
                t0 = time.perf_counter()
                res = ev.evaluate(points[idx])
                seconds_eval += time.perf_counter() - t0
                for k in keys:
                    arrays[k][idx] = res[k]
                done[idx] = True
                evaluated += idx.size
                unsaved = True
                if bi == 0 and compile == "auto" and ev.method == "loop":
                    remaining = sum(b.size for b in pending_blocks[1:])
                    if remaining * (time.perf_counter() - t0) / idx.size > AUTO_COMPILE_SECONDS:
                        ev.enable_compile()
                now = time.perf_counter()
                if path is not None and now - last_save >= save_every:
                    _save_progress(path, fp, done, arrays)
                    last_save, unsaved = now, False
                task.advance(int(idx.size))
                if callback is not None:
                    if path is not None and unsaved:
                        _save_progress(path, fp, done, arrays)
                        last_save, unsaved = time.perf_counter(), False
                    callback(idx)
        finally:
            if path is not None and unsaved:
                _save_progress(path, fp, done, arrays)
    shape = grid.shape
    axes = grid.coordinates()
    complete = bool(done.all())
    center_idx = grid.center_index()
    center_flat = int(np.ravel_multi_index(center_idx, shape))
    at_origin = all(a[i] == 0.0 for a, i in zip(axes, center_idx, strict=True))
    if at_origin and done[center_flat]:
        center_loss = float(arrays["train_loss"][center_flat])
    else:
        center_loss = float(ev.evaluate(np.zeros((1, grid.dims)))["train_loss"][0])
    bf16_error = None
    if bf16:
        bf16_error = _bf16_error(space, directions, grid, arrays["train_loss"], done, splits, ev)
    d = directions
    info = {
        "recompute_bn": bool(recompute_bn),
        "method": ev.method,
        "compiled": ev.compiled,
        "first_layer": ev.first is not None,
        "points_evaluated": int(evaluated),
        "seconds": round(time.perf_counter() - t_start, 4),
        "seconds_per_point": round(seconds_eval / evaluated, 6) if evaluated else None,
    }
    return Surface(
        axes,
        arrays["train_loss"].reshape(shape),
        arrays["train_accuracy"].reshape(shape),
        arrays["test_loss"].reshape(shape) if "test_loss" in arrays else None,
        arrays["test_accuracy"].reshape(shape) if "test_accuracy" in arrays else None,
        kind=d.kind,
        normalization=d.normalization,
        ignore=d.ignore,
        seed=d.seed,
        center_loss=center_loss,
        bf16_error=bf16_error,
        explained_variance=d.explained_variance,
        anchors=d.anchors,
        trajectory=d.trajectory,
        complete=complete,
        info=info,
    )


def _bf16_error(
    space: ParamSpace,
    directions: Directions,
    grid: GridSpec,
    loss: np.ndarray,
    done: np.ndarray,
    splits: Sequence[str],
    ev: PointEvaluator,
) -> float:
    """Max relative error of the bf16 losses against fp32 along the centre row (axis 0)."""
    center = grid.center_index()
    idx = np.array(
        [np.ravel_multi_index((i, *center[1:]), grid.shape) for i in range(grid.shape[0])]
    )
    idx = idx[done[idx]]
    if idx.size == 0:
        return float("nan")
    ref = PointEvaluator(
        space,
        directions,
        splits=("train",),
        method=ev.method if ev.method in ("loop", "vmap") else "auto",
        compile=False,
        first_layer=ev.first is not None,
        chunk_size=ev.chunk_size,
        bf16=False,
        recompute_bn=ev.recompute_bn,
    )
    fp32 = ref.evaluate(grid.points()[idx])["train_loss"]
    return relative_error(loss[idx], fp32)


def quick_surface(
    space: ParamSpace,
    *,
    grid: tuple[int, ...] = (21, 21),
    span: float = 1.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> Surface:
    """A filter-normalized random 2D surface (biases/BN zeroed, BN in eval mode).

    Args:
        space: the parameter space.
        grid: points per axis.
        span: the grid covers ``[-span, span]`` on every axis.
        seed: seed of the directions.
        progress: progress reporter.

    Returns:
        The :class:`Surface` (train and, when present, test loss and accuracy).

    Example:
        >>> from landscape.io import ModelBundle, load_data
        >>> space = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> quick_surface(space, grid=(5, 5)).shape
        (5, 5)
    """
    from landscape.surface.directions import random_directions

    g = GridSpec(tuple(grid), ((-float(span), float(span)),) * len(grid))
    dirs = random_directions(space, len(grid), normalization="filter", ignore="biasbn", seed=seed)
    return evaluate_surface(space, dirs, g, progress=progress)
