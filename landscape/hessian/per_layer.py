"""Per-block Hessian analysis: λ_max, trace and top eigenvalues of each module's block.

The Hessian block of a parameter group ``G`` is the principal submatrix ``H[G, G]``: the
curvature of the loss in the group's parameters with every other parameter held fixed.
:func:`layer_groups` splits a model into groups (top-level children, each block of a
``ModuleList``/``Sequential`` such as a transformer layer, and inside an attention block
the attention module, each of its heads, the MLP and the norms); :func:`per_layer_hessian`
measures each group through :class:`~landscape.engine.RestrictedOperator` on one shared
operator, so cached gradient graphs are reused across groups.

Two facts help to read the table. By Cauchy interlacing the λ_max of a block is at most
the full Hessian's λ_max (and at least its λ_min); the block traces of a partition add up
to the full trace, so rows of one level (the blocks, or a block's attention + MLP + norms)
sum to the trace of what they partition. Heads of one attention module overlap nowhere but
do not cover it (the output bias is shared by the heads), so head traces sum to less than
the attention trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.engine import Operator, ParamInfo, ParamSpace, RestrictedOperator
from landscape.errors import ConfigError
from landscape.hessian.eigenpairs import top_eigenpairs
from landscape.hessian.hutchpp import hutchpp_trace
from landscape.hessian.probes import batches, probe_batch_size
from landscape.progress import Progress, tracked
from landscape.results import Estimate, _json_float

KINDS = ("module", "block", "attention", "head", "mlp", "norm")
_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")
_HEAD_ATTRS = ("num_heads", "n_head", "n_heads", "num_attention_heads")
_QKV_NAMES = ("qkv", "in_proj", "c_attn", "qkv_proj", "Wqkv")
_OUT_NAMES = ("out_proj", "proj", "o_proj", "c_proj", "out")
_SPLIT_NAMES = (("q_proj", "k_proj", "v_proj"), ("q", "k", "v"), ("query", "key", "value"))


@dataclass(frozen=True, eq=False)
class ParamGroup:
    """A named set of coordinates of θ.

    Attributes:
        name: dotted module path, ``<path>.head<h>`` for a head, ``<block>:mlp`` /
            ``<block>:norms`` for the rest of a block, ``(root)`` for the model's own
            parameters.
        kind: one of :data:`KINDS`.
        indices: sorted indices into θ (1-D ``torch.long`` on the CPU).
        tensors: names of the parameter tensors the group touches.
    """

    name: str
    kind: str
    indices: torch.Tensor
    tensors: tuple[str, ...]

    @property
    def num_params(self) -> int:
        """Number of coordinates in the group."""
        return int(self.indices.numel())


def _type_name(module: nn.Module) -> str:
    return str(getattr(module, "original_name", None) or type(module).__name__)


def _is_container(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential | nn.ModuleList | nn.ModuleDict) or (
        _type_name(module) in _CONTAINERS
    )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _under(infos: Sequence[ParamInfo], path: str) -> list[ParamInfo]:
    if not path:
        return list(infos)
    return [i for i in infos if i.name.startswith(path + ".")]


def _whole(name: str, kind: str, infos: Sequence[ParamInfo]) -> ParamGroup:
    idx = torch.cat([torch.arange(i.offset, i.offset + i.numel) for i in infos])
    return ParamGroup(name, kind, torch.sort(idx).values, tuple(i.name for i in infos))


def _has_param_children(module: nn.Module) -> bool:
    return any(True for _, c in module.named_children() for _ in c.parameters())


def _contains_block(module: nn.Module) -> bool:
    for m in module.modules():
        if _is_container(m):
            for _, c in m.named_children():
                if not _is_container(c) and _has_param_children(c):
                    return True
    return False


def _is_attention(name: str, module: nn.Module) -> bool:
    leaf = name.rpartition(".")[2].lower()
    tname = _type_name(module).lower()
    return "attn" in leaf or "attention" in leaf or "attention" in tname


def _num_heads(module: nn.Module) -> int | None:
    for attr in _HEAD_ATTRS:
        h = getattr(module, attr, None)
        if isinstance(h, int) and h >= 1:
            return h
    return None


def _rows(info: ParamInfo, rows: Sequence[int]) -> torch.Tensor:
    """Flat indices of whole rows ``rows`` of a tensor (1-D: those entries)."""
    r = torch.as_tensor(list(rows), dtype=torch.long)
    if len(info.shape) <= 1:
        return info.offset + r
    width = info.numel // info.shape[0]
    return (info.offset + r[:, None] * width + torch.arange(width)[None, :]).reshape(-1)


def _cols(info: ParamInfo, cols: Sequence[int]) -> torch.Tensor:
    """Flat indices of columns ``cols`` of a 2-D tensor."""
    c = torch.as_tensor(list(cols), dtype=torch.long)
    nrows, ncols = info.shape[0], info.shape[1]
    return (info.offset + torch.arange(nrows)[:, None] * ncols + c[None, :]).reshape(-1)


def _head_parts(
    path: str, module: nn.Module, by_name: dict[str, ParamInfo]
) -> tuple[int, list[tuple[ParamInfo, str]]] | None:
    """The projection width ``E`` and the tensors that split by head; ``None`` if unknown.

    ``rows`` tensors stack one (q, k or v alone) or three (fused qkv) projections of ``E``
    rows each, and head ``h`` owns rows ``h·d .. (h+1)·d`` of each projection
    (``d = E / heads``); ``cols`` tensors (the output projection) give head ``h`` columns
    ``h·d .. (h+1)·d``; ``last`` tensors (``bias_k``/``bias_v``) split their last axis.
    """
    parts: list[tuple[ParamInfo, str]] = []

    def add(name: str, how: str) -> None:
        i = by_name.get(_join(path, name))
        if i is not None:
            parts.append((i, how))

    embed = getattr(module, "embed_dim", None)
    if _type_name(module) == "MultiheadAttention" and isinstance(embed, int):
        for name in ("in_proj_weight", "in_proj_bias"):
            add(name, "rows")
        for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            add(name, "rows")
        for name in ("bias_k", "bias_v"):
            add(name, "last")
        add("out_proj.weight", "cols")
    else:
        children = dict(module.named_children())
        qkv = next((n for n in _QKV_NAMES if isinstance(children.get(n), nn.Linear)), None)
        split = next(
            (s for s in _SPLIT_NAMES if all(isinstance(children.get(n), nn.Linear) for n in s)),
            None,
        )
        if qkv is not None:
            width = int(children[qkv].out_features)  # type: ignore[arg-type]
            if width % 3:
                return None
            embed = width // 3
            add(f"{qkv}.weight", "rows")
            add(f"{qkv}.bias", "rows")
        elif split is not None:
            widths = {int(children[n].out_features) for n in split}  # type: ignore[arg-type]
            if len(widths) != 1:
                return None  # grouped-query layouts: k/v heads differ from q heads
            embed = widths.pop()
            for n in split:
                add(f"{n}.weight", "rows")
                add(f"{n}.bias", "rows")
        else:
            return None
        out = next((n for n in _OUT_NAMES if isinstance(children.get(n), nn.Linear)), None)
        if out is not None and children[out].in_features == embed:  # type: ignore[union-attr]
            add(f"{out}.weight", "cols")
    if not parts or not isinstance(embed, int) or embed < 1:
        return None
    for info, how in parts:
        size = {"rows": info.shape[0], "cols": info.shape[-1], "last": info.shape[-1]}[how]
        if size % embed or (how == "cols" and len(info.shape) != 2):
            return None
    return embed, parts


def _head_groups(path: str, module: nn.Module, infos: Sequence[ParamInfo]) -> list[ParamGroup]:
    heads = _num_heads(module)
    if heads is None or heads < 2:
        return []
    found = _head_parts(path, module, {i.name: i for i in infos})
    if found is None:
        return []
    embed, parts = found
    if embed % heads:
        return []
    per = embed // heads
    groups: list[ParamGroup] = []
    for h in range(heads):
        span = range(h * per, (h + 1) * per)
        idx: list[torch.Tensor] = []
        for info, how in parts:
            if how == "cols":
                idx.append(_cols(info, span))
            elif how == "last":
                idx.append(info.offset + torch.as_tensor(list(span), dtype=torch.long))
            else:
                blocks = info.shape[0] // embed
                idx.append(_rows(info, [b * embed + r for b in range(blocks) for r in span]))
        flat = torch.sort(torch.cat(idx)).values
        names = tuple(dict.fromkeys(i.name for i, _ in parts))
        groups.append(ParamGroup(f"{path}.head{h}", "head", flat, names))
    return groups


def _label(block: str, infos: Sequence[ParamInfo], what: str) -> str:
    """The one child of ``block`` holding all of ``infos``, else ``<block>:<what>``."""
    heads = {i.name[len(block) + 1 :].split(".")[0] for i in infos}
    if len(heads) == 1 and all(i.name.count(".") > block.count(".") + 1 for i in infos):
        return _join(block, heads.pop())
    return f"{block}:{what}"


def _block_groups(path: str, module: nn.Module, infos: Sequence[ParamInfo]) -> list[ParamGroup]:
    out = [_whole(path, "block", infos)]
    attention: list[tuple[str, nn.Module]] = []
    for name, m in module.named_modules(prefix=path):
        if name == path or any(name.startswith(a + ".") for a, _ in attention):
            continue
        if _is_attention(name, m) and _under(infos, name):
            attention.append((name, m))
    if not attention:
        return out
    covered: set[str] = set()
    for name, m in attention:
        own = _under(infos, name)
        out.append(_whole(name, "attention", own))
        out.extend(_head_groups(name, m, own))
        covered.update(i.name for i in own)
    rest = [i for i in infos if i.name not in covered]
    mlp = [i for i in rest if i.role != "norm"]
    norms = [i for i in rest if i.role == "norm"]
    if mlp:
        out.append(_whole(_label(path, mlp, "mlp"), "mlp", mlp))
    if norms:
        out.append(_whole(_label(path, norms, "norms"), "norm", norms))
    return out


def _walk(
    path: str, module: nn.Module, infos: Sequence[ParamInfo], in_container: bool
) -> list[ParamGroup]:
    own = _under(infos, path)
    if not own:
        return []
    if in_container and not _is_container(module) and _has_param_children(module):
        return _block_groups(path, module, own)
    if path and not _is_container(module) and not _contains_block(module):
        kind = "norm" if all(i.role == "norm" for i in own) else "module"
        return [_whole(path, kind, own)]
    out: list[ParamGroup] = []
    direct = [i for i in own if i.name.rpartition(".")[0] == path]
    if direct:
        kind = "norm" if all(i.role == "norm" for i in direct) else "module"
        out.append(_whole(path or "(root)", kind, direct))
    container = _is_container(module)
    for name, child in module.named_children():
        out.extend(_walk(_join(path, name), child, infos, container))
    return out


def layer_groups(space: ParamSpace) -> list[ParamGroup]:
    """Split θ into per-module groups for :func:`per_layer_hessian`.

    The levels, in module order:

    * each top-level child of the model is a ``module`` group (``norm`` when it is a
      normalization layer), except that children of ``Sequential``/``ModuleList``
      containers are visited one by one;
    * a child of a container that has submodules with parameters (a transformer layer,
      a residual block) is a ``block`` group; if it holds attention (a submodule named
      like ``*attn*``/``*attention*`` or an ``nn.MultiheadAttention``), the block is
      followed by an ``attention`` group per attention module, a ``head`` group per
      head, one ``mlp`` group (the block's other non-norm parameters) and one ``norm``
      group;
    * heads are index sets that cut through tensors: ``nn.MultiheadAttention``'s
      ``in_proj_weight``/``in_proj_bias`` rows (of q, k and v) and ``out_proj.weight``
      columns, or the same of a fused ``qkv`` ``nn.Linear`` (or separate ``q_proj``/
      ``k_proj``/``v_proj``) with ``proj``/``out_proj`` and a ``num_heads`` attribute. The
      output bias is shared and belongs to no head. Other layouts get no head groups.

    Only coordinates of θ are used, so frozen or unselected parameters
    (``ParamSpace(..., params=...)``) drop out and empty groups are left out.

    Example:
        >>> from landscape.io.data import load_data
        >>> from landscape.io.model_bundle import ModelBundle
        >>> m = nn.Sequential(nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 3))
        >>> s = ParamSpace(ModelBundle.from_module(m, load_data("synthetic")))
        >>> [(g.name, g.kind, g.num_params) for g in layer_groups(s)]
        [('0', 'module', 44), ('2', 'module', 15)]
    """
    return _walk("", space.bundle.module, space.infos, False)


@dataclass(frozen=True)
class GroupCurvature:
    """The Hessian block of one parameter group.

    Attributes:
        name: the group's name.
        kind: the group's kind (see :data:`KINDS`).
        num_params: its number of coordinates.
        top: top eigenvalues of the block, descending.
        residuals: ``‖H_G y − λ y‖`` of each.
        converged: whether every top pair met the tolerance.
        trace: ``tr(H_G)`` (Hutch++; exact with zero stderr for dense blocks).
        matvecs: products of the full operator spent on the group.
        method: ``dense`` (the block assembled from unit vectors, then ``eigvalsh``) or
            ``lanczos`` (Lanczos + Hutch++).
    """

    name: str
    kind: str
    num_params: int
    top: tuple[float, ...]
    residuals: tuple[float, ...]
    converged: bool
    trace: Estimate
    matvecs: int
    method: str

    @property
    def lambda_max(self) -> float:
        """The block's largest eigenvalue."""
        return self.top[0]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready row.

        Keys: ``name, kind, num_params, lambda_max, lambda_max_residual, trace`` (``{mean,
        stderr, n, method}``), ``top_eigenvalues, converged, matvecs, method``.
        """
        return {
            "name": self.name,
            "kind": self.kind,
            "num_params": int(self.num_params),
            "lambda_max": _json_float(self.top[0]),
            "lambda_max_residual": _json_float(self.residuals[0]),
            "trace": self.trace.to_dict(),
            "top_eigenvalues": [_json_float(v) for v in self.top],
            "converged": bool(self.converged),
            "matvecs": int(self.matvecs),
            "method": self.method,
        }


def _dense_block(op: RestrictedOperator) -> torch.Tensor:
    """``H_G`` from its columns (``dim`` products), symmetrized, in float64."""
    eye = torch.eye(op.dim, device=op.device, dtype=op.dtype)
    cols: list[torch.Tensor] = []
    start = 0
    for b in batches(op.dim, probe_batch_size(op, op.dim)):
        cols.append(op.matmat(eye[start : start + b]).to(torch.float64))
        start += b
    m = torch.cat(cols)
    return 0.5 * (m + m.T)


def per_layer_hessian(
    op: Operator,
    groups: Sequence[ParamGroup],
    *,
    top_k: int = 3,
    trace_matvecs: int = 30,
    tol: float = 1e-6,
    dense_max: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[GroupCurvature]:
    """λ_max, top eigenvalues and trace of the Hessian block of each group.

    A block with at most ``dense_max`` coordinates is assembled column by column (one
    product per coordinate) and solved exactly; a larger one gets Lanczos (``top_k``
    pairs to ``tol``) and Hutch++ with ``trace_matvecs`` products.

    Args:
        op: the full operator on θ (its ``dim`` is the space's).
        groups: the groups (e.g. :func:`layer_groups`).
        top_k: eigenvalues per block.
        trace_matvecs: Hutch++ budget per block (at least 6).
        tol: relative residual tolerance of the eigenpairs.
        dense_max: largest block solved densely (default ``trace_matvecs + 2·top_k + 2``,
            about what Lanczos + Hutch++ would spend; 0 never).
        seed: seed of the Lanczos start and the Hutch++ probes (the same for each group).
        progress: optional progress reporter (one step per group).

    Returns:
        One :class:`GroupCurvature` per group, in order.

    Raises:
        ConfigError: on ``top_k < 1``, ``trace_matvecs < 6`` or a group whose indices do
            not fit ``op``.

    Example:
        >>> from landscape.engine import DenseOperator
        >>> h = torch.diag(torch.tensor([3.0, 1.0, 2.0, 5.0], dtype=torch.float64))
        >>> g = [ParamGroup("a", "module", torch.tensor([0, 1]), ("w",)),
        ...      ParamGroup("b", "module", torch.tensor([2, 3]), ("w",))]
        >>> [(r.lambda_max, r.trace.mean) for r in per_layer_hessian(DenseOperator(h), g)]
        [(3.0, 4.0), (5.0, 7.0)]
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"per-layer top_k must be a positive integer, got {top_k!r}.")
    if not isinstance(trace_matvecs, int) or trace_matvecs < 6:
        raise ConfigError(f"per-layer trace needs at least 6 matvecs, got {trace_matvecs!r}.")
    limit = trace_matvecs + 2 * top_k + 2 if dense_max is None else int(dense_max)
    out: list[GroupCurvature] = []
    with tracked(progress, "per-layer Hessian", len(groups)) as task:
        for g in groups:
            sub = RestrictedOperator(op, g.indices)
            k = min(top_k, sub.dim)
            if sub.dim <= limit:
                m = _dense_block(sub)
                vals, vecs = torch.linalg.eigh(m)
                order = torch.argsort(vals, descending=True)[:k]
                top_v, top_y = vals[order], vecs[:, order]
                res = torch.linalg.vector_norm(m @ top_y - top_y * top_v, dim=0)
                trace = Estimate(float(torch.trace(m)), 0.0, sub.dim, "exact")
                row = GroupCurvature(
                    g.name,
                    g.kind,
                    sub.dim,
                    tuple(float(v) for v in top_v),
                    tuple(float(r) for r in res),
                    True,
                    trace,
                    sub.matvecs,
                    "dense",
                )
            else:
                pairs = top_eigenpairs(sub, k, tol=tol, seed=seed)
                trace = hutchpp_trace(sub, trace_matvecs, seed=seed + 1)
                row = GroupCurvature(
                    g.name,
                    g.kind,
                    sub.dim,
                    tuple(float(v) for v in np.asarray(pairs.values)),
                    tuple(float(r) for r in np.asarray(pairs.residuals)),
                    bool(pairs.all_converged),
                    trace,
                    sub.matvecs,
                    "lanczos",
                )
            out.append(row)
            task.advance()
    return out
