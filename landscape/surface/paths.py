"""One evaluation path per way of running the model at grid points, behind a factory.

:class:`~landscape.surface.evaluate.PointEvaluator` holds what every path shares (the
directions split per tensor, the data chunks on the device, the first-layer cache, the
compiled point function) and hands ``evaluate`` to the path its options chose:

* :class:`FusedPath` — the rewritten eager forward of a plain ``nn.Sequential``
  (:mod:`landscape.surface.fused`), one point at a time;
* :class:`FunctionalPath` — ``functional_call`` one point at a time (``loop``, optionally
  compiled) or a batch of points under ``vmap`` (``vmap``);
* :class:`ScriptedPath` — TorchScript models through :meth:`ParamSpace.evaluate`;
* :class:`RecomputePath` — BatchNorm running statistics re-estimated at every point on a
  private copy of the model.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import torch
from torch import nn

from landscape.surface.first_layer import FIRST_LAYER_CACHE_BYTES

if TYPE_CHECKING:
    from landscape.surface.evaluate import PointEvaluator


def _is_bn(m: nn.Module) -> TypeGuard[nn.modules.batchnorm._BatchNorm]:
    return isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats


class EvalPath:
    """How one evaluator computes loss and accuracy at a batch of grid coordinates."""

    name = "base"

    def __init__(self, ev: PointEvaluator) -> None:
        self.ev = ev

    def evaluate(self, coords: np.ndarray) -> dict[str, np.ndarray]:
        """``{"<split>_loss", "<split>_accuracy"}`` arrays of shape ``(P,)``."""
        raise NotImplementedError


class FusedPath(EvalPath):
    """The fused eager forward, with the first convolution's input patches cached."""

    name = "fused"

    def __init__(self, ev: PointEvaluator) -> None:
        super().__init__(ev)
        self._cols: dict[tuple[str, int], torch.Tensor] = {}
        self._cols_bytes = 0

    def cols(self, split: str, index: int, x: torch.Tensor) -> torch.Tensor | None:
        """The first convolution's cached input patches for a chunk (``None``: convolve)."""
        plan = self.ev.fused
        if plan is None or not plan.unfoldable or x.dim() != 4:
            return None
        key = (split, index)
        hit = self._cols.get(key)
        if hit is not None:
            return hit
        nbytes = plan.unfold_bytes(x)
        if self._cols_bytes + nbytes > FIRST_LAYER_CACHE_BYTES:
            return None
        cols = plan.unfold(x.contiguous())
        self._cols[key] = cols
        self._cols_bytes += nbytes
        return cols

    def evaluate(self, coords: np.ndarray) -> dict[str, np.ndarray]:  # noqa: D102
        ev = self.ev
        assert ev.fused is not None
        P = coords.shape[0]
        tot = {s: torch.zeros(P, dtype=torch.float64, device=ev.device) for s in ev.splits}
        cor = {s: torch.zeros(P, dtype=torch.int64, device=ev.device) for s in ev.splits}
        for p in range(P):
            state = ev.space.unflatten(ev._theta(coords[p]))
            state.update(ev.buffers)
            for split in ev.splits:
                for ci, x, y in ev.chunks(split):
                    cols = self.cols(split, ci, x)
                    with ev._autocast():
                        o = ev.fused.forward(state, x, cols)
                    r = ev._stats(o, y)
                    tot[split][p] += r[0].to(torch.float64)
                    if ev.has_acc:
                        cor[split][p] += r[1]
        out: dict[str, np.ndarray] = {}
        for split in ev.splits:
            out.update(ev._finish(split, tot[split], cor[split] if ev.has_acc else None))
        return out


class FunctionalPath(EvalPath):
    """``functional_call`` at each point (``loop``) or a batch of points (``vmap``)."""

    name = "functional"

    def evaluate(self, coords: np.ndarray) -> dict[str, np.ndarray]:  # noqa: D102
        ev = self.ev
        cs = torch.as_tensor(coords, dtype=ev.dtype).to(ev.device)
        P = cs.shape[0]
        out: dict[str, np.ndarray] = {}
        for split in ev.splits:
            tot = torch.zeros(P, dtype=torch.float64, device=ev.device)
            cor = torch.zeros(P, dtype=torch.int64, device=ev.device) if ev.has_acc else None
            for ci, x, y in ev.chunks(split):
                inp: Any = ev._first_parts(split, ci, x) if ev.first is not None else x
                if ev.method == "vmap":
                    assert ev._vstep is not None
                    r = ev._vstep(cs, inp, y, ev.base, ev.dvecs, ev.buffers)
                    tot = tot + r[0].to(torch.float64)
                    if cor is not None:
                        cor = cor + r[1]
                else:
                    for p in range(P):
                        r = ev._step(cs[p], inp, y, ev.base, ev.dvecs, ev.buffers)
                        tot[p] = tot[p] + r[0].to(torch.float64)
                        if cor is not None:
                            cor[p] = cor[p] + r[1]
            out.update(ev._finish(split, tot, cor))
        return out


class ScriptedPath(EvalPath):
    """TorchScript models: :meth:`ParamSpace.evaluate` at each point."""

    name = "scripted"

    def evaluate(self, coords: np.ndarray) -> dict[str, np.ndarray]:  # noqa: D102
        ev = self.ev
        res: dict[str, list[float]] = {}
        for c in coords:
            theta = ev._theta(c)
            for split in ev.splits:
                loss, acc = ev.space.evaluate(theta, split)
                res.setdefault(f"{split}_loss", []).append(loss)
                res.setdefault(f"{split}_accuracy", []).append(acc if ev.has_acc else np.nan)
        return {k: np.asarray(v, dtype=np.float64) for k, v in res.items()}


class RecomputePath(EvalPath):
    """BatchNorm statistics re-estimated at every point on a private copy of the model."""

    name = "recompute"

    def __init__(self, ev: PointEvaluator) -> None:
        super().__init__(ev)
        self._bn_module: nn.Module | None = None

    def bn_copy(self) -> nn.Module:
        """The private copy (BatchNorm with cumulative averages), made once."""
        if self._bn_module is None:
            m = copy.deepcopy(self.ev.space.bundle.module)
            m.eval()
            for mod in m.modules():
                if _is_bn(mod):
                    mod.momentum = None
            self._bn_module = m
        return self._bn_module

    def evaluate(self, coords: np.ndarray) -> dict[str, np.ndarray]:  # noqa: D102
        ev = self.ev
        m = self.bn_copy()
        named = dict(m.named_parameters())
        bns = [mod for mod in m.modules() if _is_bn(mod)]
        res: dict[str, list[float]] = {}
        for c in coords:
            theta = ev._theta(c)
            for info in ev.space.infos:
                named[info.name].copy_(theta[info.slice].view(info.shape))
            for bn in bns:
                bn.reset_running_stats()
                bn.train()
            if bns:
                for _, x, _y in ev.chunks("train"):
                    with ev._autocast():
                        m(x)
            for bn in bns:
                bn.eval()
            for split in ev.splits:
                tot = torch.zeros((), dtype=torch.float64, device=ev.device)
                cor = torch.zeros((), dtype=torch.int64, device=ev.device)
                for _, x, y in ev.chunks(split):
                    with ev._autocast():
                        o = m(x)
                    r = ev._stats(o, y)
                    tot = tot + r[0].to(torch.float64)
                    if ev.has_acc:
                        cor = cor + r[1]
                n = ev.n[split]
                res.setdefault(f"{split}_loss", []).append(float(tot) / n)
                res.setdefault(f"{split}_accuracy", []).append(
                    int(cor) / n if ev.has_acc else np.nan
                )
        return {k: np.asarray(v, dtype=np.float64) for k, v in res.items()}


PATHS: dict[str, type[EvalPath]] = {
    "fused": FusedPath,
    "loop": FunctionalPath,
    "vmap": FunctionalPath,
    "scripted": ScriptedPath,
    "recompute": RecomputePath,
}
"""The path class for each evaluator method."""


def make_path(ev: PointEvaluator) -> EvalPath:
    """The evaluation path for ``ev.method``.

    Example:
        >>> sorted(PATHS)
        ['fused', 'loop', 'recompute', 'scripted', 'vmap']
    """
    return PATHS[ev.method](ev)
