"""Function-space degeneracy: numerical rank of the output Jacobian ``∂f(x_i)/∂θ``.

Parameters that the data cannot tell apart add no rank: a network that compresses uses few
effective function-space directions. The rank of ``J`` (rows: every output of every sample
in a subset of the training set; columns: parameters) does not change under an invertible
reparameterization ``θ ↦ Dθ`` in exact arithmetic, but its *numerical* rank does: rescaling
one layer by 4 and the next by ¼ changes the conditioning of ``J`` by 16 and pushes small
singular values under a tolerance relative to ``σ_max``. So by default every column is
scaled to unit norm first (all-zero columns, e.g. dead units, are dropped): the result is
exactly invariant to any per-parameter rescaling ``θ_j ↦ c_j θ_j`` (ReLU rescalings, layer
rescalings) and to permutations, and, through the relative tolerance, to scaling the
outputs.

Singular values come from an SVD, or (much faster on CPUs) from the eigenvalues of the
smaller Gram matrix ``JJᵀ`` or ``JᵀJ`` formed in float64; the Gram route resolves singular
values down to about ``1e-7 · σ_max``, so ``method="auto"`` uses it only when the tolerance
is coarser than ``1e-6 · σ_max`` (float32 models, or ``rtol ≥ 1e-6``).

Besides the thresholded rank we report the *effective rank* of Roy & Vetterli (2007),
``exp(H(p))`` with ``p_i = σ_i / Σ_j σ_j``: a threshold-free count of the directions that
carry the Jacobian, useful when ``J`` has fewer rows than parameters and is generically of
full row rank.

**Functional dimension.** :func:`jacobian_rank` on a few samples is capped by its row count
``N·k`` (64 samples × 10 outputs = 640 rows, fewer than the parameters of most nets), so it
says nothing about degeneracy. :func:`functional_dimension` grows the number of inputs ``N``
(training inputs first, then test inputs) from ``N·k ≈ 2d`` until the rank stops changing,
accumulating the ``d × d`` Gram matrix ``JᵀJ`` in float64 chunk by chunk (no row of ``J`` is
recomputed or kept). It subtracts the symmetries it can count for ReLU MLPs (one rescaling
direction per live hidden unit, the invisible weights of dead units and of always-zero input
features, and for cross-entropy the ``h + 1`` logit-shift directions of the last layer), so
that ``excess_deficit = (d − rank) − symmetry_dim`` is the degeneracy beyond the known
symmetries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from landscape.engine.attention import math_attention
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError, NotApplicable
from landscape.progress import Progress, tracked
from landscape.results import _json_float

JACOBIAN_MAX_ELEMENTS = 50_000_000


@dataclass(frozen=True)
class JacobianRank:
    """Numerical rank of the Jacobian of outputs with respect to parameters.

    Attributes:
        rank: number of singular values above ``tol``.
        tol: the tolerance used.
        method: ``eps`` (``σ_max · max(shape) · eps(dtype)``) or ``relative`` (``rtol · σ_max``).
        singular_values: all singular values, descending.
        shape: ``(rows, params)`` of ``J``.
        num_samples: samples used.
        normalized_columns: whether columns were scaled to unit norm.
    """

    rank: int
    tol: float
    method: str
    singular_values: np.ndarray
    shape: tuple[int, int]
    num_samples: int
    normalized_columns: bool = True

    @property
    def effective_rank(self) -> float:
        """Roy–Vetterli effective rank ``exp(−Σ p_i log p_i)``, ``p_i = σ_i / Σ σ``."""
        return effective_rank(self.singular_values)

    @property
    def normalized(self) -> float:
        """``rank / min(shape)`` (1 means full rank)."""
        return self.rank / max(1, min(self.shape))

    def rank_at(self, rtol: float) -> int:
        """Rank with a relative threshold ``rtol · σ_max`` (recomputed from the values)."""
        sv = self.singular_values
        return int((sv > rtol * (sv[0] if sv.size else 0.0)).sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scalars."""
        return {
            "rank": int(self.rank),
            "normalized": _json_float(self.normalized),
            "effective_rank": _json_float(self.effective_rank),
            "tol": _json_float(self.tol),
            "method": self.method,
            "shape": list(self.shape),
            "num_samples": int(self.num_samples),
            "normalized_columns": bool(self.normalized_columns),
            "sigma_max": _json_float(self.singular_values[0] if self.singular_values.size else 0),
        }


def effective_rank(singular_values: np.ndarray) -> float:
    """Roy & Vetterli's effective rank: ``exp`` of the entropy of the normalized spectrum.

    Example:
        >>> round(effective_rank(np.array([1.0, 1.0, 0.0])), 6)
        2.0
    """
    sv = np.asarray(singular_values, dtype=np.float64)
    total = sv.sum()
    if total <= 0:
        return 0.0
    p = sv[sv > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def singular_values(jac: torch.Tensor, method: str = "svd") -> np.ndarray:
    """Singular values of ``jac`` (descending) by ``svd`` or via the float64 ``gram`` matrix.

    Example:
        >>> singular_values(torch.diag(torch.tensor([3.0, 1.0])), "gram").round(6).tolist()
        [3.0, 1.0]
    """
    if method == "svd":
        return torch.linalg.svdvals(jac.double()).cpu().numpy()
    j = jac.double()
    gram = j @ j.T if j.shape[0] <= j.shape[1] else j.T @ j
    ev = torch.linalg.eigvalsh(gram).clamp(min=0).sqrt().flip(0)
    return ev.cpu().numpy()


def output_jacobian(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    max_samples: int | None = 256,
    chunk: int = 64,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, int]:
    """``J`` of shape ``(samples·outputs, dim)`` on the first ``max_samples`` training samples.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> output_jacobian(sp, max_samples=5)[0].shape
        torch.Size([15, 33])
    """
    if space.scripted:
        raise ConfigError(
            "the Jacobian rank needs torch.func; give a state_dict and --model instead of"
            " a TorchScript archive."
        )
    theta = (space.theta0 if theta is None else theta).detach()
    data = space.bundle.data
    n = data.num_train if max_samples is None else min(max_samples, data.num_train)
    x_all = data.x_train[:n]
    rows: list[torch.Tensor] = []
    with tracked(progress, "Jacobian", -(-n // chunk)) as task:
        for i in range(0, n, chunk):
            x = space.bundle.to_device(x_all[i : i + chunk])

            def f(th: torch.Tensor, x: torch.Tensor = x) -> torch.Tensor:
                return space.forward(th, x).reshape(-1)

            rows.append(jacrev(f)(theta).detach())
            task.advance()
    jac = torch.cat(rows)
    if jac.numel() > JACOBIAN_MAX_ELEMENTS:
        raise ConfigError(
            f"the Jacobian has {jac.numel()} entries; lower the number of samples for it."
        )
    return jac, n


def jacobian_rank(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    max_samples: int | None = 256,
    rtol: float | None = None,
    method: str = "auto",
    normalize_columns: bool = True,
    chunk: int = 64,
    progress: Progress | None = None,
) -> JacobianRank:
    """Numerical rank of the output Jacobian on (a subset of) the training set.

    Args:
        space: the parameter space.
        theta: the point (default ``space.theta0``).
        max_samples: use the first this many training samples (``None``: all).
        rtol: relative threshold ``rtol · σ_max``; default (``None``) uses
            ``σ_max · max(shape) · eps`` with the model dtype's machine epsilon.
        method: ``svd``, ``gram`` or ``auto`` (``gram`` when the tolerance is coarser than
            ``1e-6 · σ_max``, else ``svd``).
        normalize_columns: scale columns to unit norm (drop zero columns) so the rank is
            invariant to per-parameter rescaling.
        chunk: samples per ``jacrev`` call.
        progress: optional progress reporter.

    Returns:
        The rank, its tolerance and the singular values.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> jacobian_rank(sp, max_samples=20).rank  # 3 outputs × (10 inputs + bias)
        33
    """
    if rtol is not None and not 0 < rtol < 1:
        raise ConfigError(f"rtol must lie in (0, 1), got {rtol}.")
    if method not in ("auto", "svd", "gram"):
        raise ConfigError(f"unknown Jacobian method {method!r}; use auto, svd or gram.")
    jac, n = output_jacobian(space, theta, max_samples=max_samples, chunk=chunk, progress=progress)
    shape = (int(jac.shape[0]), int(jac.shape[1]))
    if normalize_columns:
        norms = jac.double().norm(dim=0)
        keep = norms > 0
        jac = jac.double()[:, keep] / norms[keep]
    rel = rtol if rtol is not None else max(jac.shape) * float(torch.finfo(space.dtype).eps)
    if method == "auto":
        method = "gram" if rel >= 1e-6 else "svd"
    sv = singular_values(jac, method)
    smax = float(sv[0]) if sv.size else 0.0
    tol = rel * smax
    rank = int((sv > tol).sum())
    kind = "eps" if rtol is None else "relative"
    return JacobianRank(rank, tol, kind, sv, shape, n, normalize_columns)


# -- functional dimension ------------------------------------------------------------------

GRAM_MAX_PARAMS = 20_000
_GRAM_BLOCK_ROWS = 2048
_SAMPLE_CAP_DEFAULT = 1 << 20


@dataclass(frozen=True)
class SymmetryCount:
    """Null directions of ``J`` that a ReLU MLP has at θ by construction.

    Attributes:
        live_units: hidden units active (pre-activation ``> 0``) on some input used.
        dead_units: hidden units active on no input used.
        always_active_units: hidden units active on every input used (locally linear).
        invisible: coordinates of θ with an identically zero Jacobian column: weights
            ``W_l[i, j]`` whose unit ``i`` is inactive on every input where its input ``j``
            is non-zero (so every weight into or out of a dead unit, and the first-layer
            weights of always-zero input features), and biases of dead units; each once.
        zero_inputs: input features that are zero on every input used.
        rescaling: independent ReLU-rescaling directions left after removing the invisible
            coordinates (one per live unit with visible weights).
        logit_shift: independent logit-shift directions (cross-entropy only) left after
            removing the invisible coordinates and the rescalings.
        total: ``invisible + rescaling + logit_shift``, the dimension of the span of all of
            them (a subspace of the null space of ``J``).
    """

    live_units: int
    dead_units: int
    always_active_units: int
    invisible: int
    zero_inputs: int
    rescaling: int
    logit_shift: int
    total: int

    def to_dict(self) -> dict[str, int]:
        """JSON-ready integers."""
        return {
            "live_units": int(self.live_units),
            "dead_units": int(self.dead_units),
            "always_active_units": int(self.always_active_units),
            "invisible": int(self.invisible),
            "zero_inputs": int(self.zero_inputs),
            "rescaling": int(self.rescaling),
            "logit_shift": int(self.logit_shift),
            "total": int(self.total),
        }


@dataclass(frozen=True)
class FunctionalDimension:
    """Rank of the output Jacobian at a plateau in the number of inputs, symmetries counted.

    Attributes:
        rank: numerical rank of ``J`` (column-normalized) on ``num_samples`` inputs.
        dim: number of parameters ``d``.
        num_samples: inputs ``N`` used for ``rank``.
        outputs_per_sample: rows per input ``k_eff`` (``k − 1`` for cross-entropy, whose
            logit-shift direction is removed; ``k`` otherwise).
        deficit: ``d − rank``.
        symmetry_dim: null directions known from the model's symmetries (``None`` when the
            model is not a recognised ReLU MLP).
        excess_deficit: ``deficit − symmetry_dim``, the degeneracy beyond known symmetries
            (``None`` with ``symmetry_dim``).
        plateau: the rank was unchanged (within ``plateau_tol``) between the last two ``N``,
            both with ``N·k_eff ≥ d + margin`` and not capped by their row count.
        saturated: the last rank equals ``min(N·k_eff, d)``: no plateau below the trivial
            bound could be shown.
        curve: ``(N, rank)`` at every ``N`` tried, in order.
        tol: absolute threshold on the singular values of the column-normalized ``J``.
        rtol: relative threshold, ``tol = rtol · σ_max``.
        effective_rank: Roy–Vetterli effective rank of the spectrum.
        notes: plain-language remarks (saturation, missing plateau, fallbacks, gaps).
        singular_values: singular values of the column-normalized ``J`` (descending; the
            zero columns are dropped, so there are ``d − zero_columns`` of them).
        gap: ``σ_rank / σ_{rank+1}`` (``inf`` when all kept values pass): how clearly the
            threshold separates the rank from the null directions.
        zero_columns: parameters whose Jacobian column is identically zero.
        jacobian_dtype: dtype in which ``J`` was computed.
        symmetry: the breakdown of ``symmetry_dim`` (``None`` when not counted).
    """

    rank: int
    dim: int
    num_samples: int
    outputs_per_sample: int
    deficit: int
    symmetry_dim: int | None
    excess_deficit: int | None
    plateau: bool
    saturated: bool
    curve: tuple[tuple[int, int], ...]
    tol: float
    rtol: float
    effective_rank: float
    notes: tuple[str, ...]
    singular_values: np.ndarray
    gap: float = float("inf")
    zero_columns: int = 0
    jacobian_dtype: str = "float64"
    symmetry: SymmetryCount | None = None

    @property
    def expected_rank(self) -> int | None:
        """``d − symmetry_dim`` (``None`` when the symmetries are not counted)."""
        return None if self.symmetry_dim is None else self.dim - self.symmetry_dim

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scalars (``rank``, ``dim``, ``num_samples``, ``deficit``, ...)."""
        sv = self.singular_values
        return {
            "rank": int(self.rank),
            "dim": int(self.dim),
            "num_samples": int(self.num_samples),
            "outputs_per_sample": int(self.outputs_per_sample),
            "rows": int(self.num_samples * self.outputs_per_sample),
            "deficit": int(self.deficit),
            "symmetry_dim": None if self.symmetry_dim is None else int(self.symmetry_dim),
            "expected_rank": self.expected_rank,
            "excess_deficit": None if self.excess_deficit is None else int(self.excess_deficit),
            "plateau": bool(self.plateau),
            "saturated": bool(self.saturated),
            "curve": [[int(n), int(r)] for n, r in self.curve],
            "tol": _json_float(self.tol),
            "rtol": _json_float(self.rtol),
            "gap": _json_float(self.gap),
            "effective_rank": _json_float(self.effective_rank),
            "sigma_max": _json_float(sv[0] if sv.size else 0.0),
            "zero_columns": int(self.zero_columns),
            "jacobian_dtype": self.jacobian_dtype,
            "symmetry": None if self.symmetry is None else self.symmetry.to_dict(),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Dense:
    weight: slice
    bias: slice | None
    out_features: int
    in_features: int
    activation: nn.Module | None  # after this layer; None for the output layer


def _relu_mlp_layers(space: ParamSpace) -> tuple[list[_Dense], bool] | str:
    """The dense layers of a sequential ReLU/LeakyReLU MLP, or why it is not one.

    Returns ``(layers, flatten)`` where ``flatten`` says the model flattens its input.
    """
    module = space.bundle.module
    if space.scripted or not isinstance(module, nn.Sequential):
        return "the model is not an nn.Sequential"
    by_name = {i.name: i for i in space.infos}
    layers: list[_Dense] = []
    flatten = False
    pending: nn.Linear | None = None
    pending_name = ""
    used: set[str] = set()

    def close(act: nn.Module | None) -> str | None:
        assert pending is not None
        w = by_name.get(f"{pending_name}.weight")
        b = by_name.get(f"{pending_name}.bias")
        if w is None or (pending.bias is not None and b is None):
            return f"layer {pending_name} has frozen parameters"
        used.update({w.name} | ({b.name} if b is not None else set()))
        layers.append(
            _Dense(
                w.slice,
                None if b is None else b.slice,
                pending.out_features,
                pending.in_features,
                act,
            )
        )
        return None

    for name, child in module.named_children():
        if isinstance(child, (nn.Dropout, nn.Identity)):
            continue
        if isinstance(child, nn.Flatten):
            if layers or pending is not None or child.start_dim != 1 or child.end_dim != -1:
                return "a Flatten other than the first module"
            flatten = True
        elif isinstance(child, nn.Linear):
            if pending is not None:
                return "two linear layers without an activation between them"
            pending, pending_name = child, name
        elif isinstance(child, (nn.ReLU, nn.LeakyReLU)):
            if pending is None:
                return "an activation not preceded by a linear layer"
            why = close(child)
            if why:
                return why
            pending = None
        else:
            return f"module {type(child).__name__} (only Linear with ReLU/LeakyReLU is counted)"
    if pending is None:
        return "the model does not end with a linear layer"
    why = close(None)
    if why:
        return why
    if len(layers) < 2:
        return "the model has no hidden layer"
    if used != set(by_name):
        return "θ holds parameters outside the linear layers"
    return layers, flatten


class _MlpStats:
    """Which weights of a ReLU MLP the inputs seen can move at all, and which units fire.

    Weight ``W_l[i, j]`` moves an output on input ``x`` only if unit ``i`` of layer ``l`` is
    active there (pre-activation ``> 0``; output units always are) and its input ``j``
    (the activation of unit ``j`` of layer ``l − 1``, or input feature ``j``) is non-zero.
    A weight for which that never happens has an identically zero Jacobian column, and so
    has the bias of a unit that is never active. This covers the weights into and out of
    dead units and the first-layer weights of always-zero input features, each once.
    """

    def __init__(self, layers: list[_Dense], flatten: bool, theta: torch.Tensor) -> None:
        self.layers, self.flatten, self.theta = layers, flatten, theta
        self.active = [torch.zeros(lay.out_features, dtype=torch.bool) for lay in layers]
        self.always = [torch.ones(lay.out_features, dtype=torch.bool) for lay in layers]
        self.moves = [
            torch.zeros(lay.out_features, lay.in_features, dtype=torch.bool) for lay in layers
        ]
        self.nonzero = torch.zeros(layers[0].in_features, dtype=torch.bool)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        z = x.reshape(x.shape[0], -1) if self.flatten else x
        if z.dim() != 2 or z.shape[1] != self.layers[0].in_features:
            raise ConfigError(
                f"inputs of shape {tuple(x.shape[1:])} do not fit the first linear layer."
            )
        self.nonzero |= (z != 0).any(0).cpu()
        for li, lay in enumerate(self.layers):
            w = self.theta[lay.weight].view(lay.out_features, lay.in_features)
            pre = z @ w.T
            if lay.bias is not None:
                pre = pre + self.theta[lay.bias]
            slope = float(getattr(lay.activation, "negative_slope", 0.0))
            if lay.activation is None or slope != 0:
                on = torch.ones_like(pre, dtype=torch.bool)
            else:
                on = pre > 0
            self.active[li] |= on.any(0).cpu()
            self.always[li] &= (pre > 0).all(0).cpu()
            co = on.to(torch.float64).T @ (z != 0).to(torch.float64)
            self.moves[li] |= (co > 0).cpu()
            z = pre if lay.activation is None else lay.activation(pre)

    def count(self, dim: int, logit_shift: bool) -> SymmetryCount:
        """Dimension of the span of the known null directions at θ."""
        th = self.theta.detach().double().cpu()
        layers = self.layers
        invisible = torch.zeros(dim, dtype=torch.bool)
        for li, lay in enumerate(layers):
            invisible[lay.weight] = ~self.moves[li].reshape(-1)
            if lay.bias is not None:
                invisible[lay.bias] = ~self.active[li]
        dead_total = live_total = always_total = 0
        gens: list[torch.Tensor] = []
        for li, lay in enumerate(layers[:-1]):
            nxt = layers[li + 1]
            live = self.active[li]
            dead_total += int((~live).sum())
            live_total += int(live.sum())
            always_total += int((self.always[li] & live).sum())
            w_in = th[lay.weight].view(lay.out_features, lay.in_features)
            w_out = th[nxt.weight].view(nxt.out_features, nxt.in_features)
            for i in torch.nonzero(live).flatten().tolist():
                v = torch.zeros(dim, dtype=torch.float64)
                a = torch.zeros_like(w_in)
                a[i] = w_in[i]
                v[lay.weight] = a.reshape(-1)
                if lay.bias is not None:
                    v[lay.bias.start + i] = th[lay.bias.start + i]
                c = torch.zeros_like(w_out)
                c[:, i] = -w_out[:, i]
                v[nxt.weight] = c.reshape(-1)
                gens.append(v)
        n_rescale = len(gens)
        if logit_shift:
            last = layers[-1]
            for j in range(last.in_features):
                v = torch.zeros(dim, dtype=torch.float64)
                e = torch.zeros(last.out_features, last.in_features, dtype=torch.float64)
                e[:, j] = 1.0
                v[last.weight] = e.reshape(-1)
                gens.append(v)
            if last.bias is not None:
                v = torch.zeros(dim, dtype=torch.float64)
                v[last.bias] = 1.0
                gens.append(v)
        rescaling = shift = 0
        if gens:
            g = torch.stack(gens)
            g[:, invisible] = 0
            # scaling rows to unit norm leaves their rank unchanged
            norms = g.norm(dim=1, keepdim=True)
            g = g / torch.where(norms > 0, norms, 1.0)
            rescaling = _matrix_rank(g[:n_rescale])
            shift = _matrix_rank(g) - rescaling
        inv = int(invisible.sum())
        return SymmetryCount(
            live_total,
            dead_total,
            always_total,
            inv,
            int((~self.nonzero).sum()),
            rescaling,
            shift,
            inv + rescaling + shift,
        )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _matrix_rank(g: torch.Tensor) -> int:
    if g.shape[0] == 0:
        return 0
    sv = torch.linalg.svdvals(g)
    return int((sv > 1e-9 * sv[0]).sum()) if sv.numel() and sv[0] > 0 else 0


def _jacobian_forward(
    space: ParamSpace, theta: torch.Tensor, notes: list[str]
) -> tuple[Any, torch.Tensor, torch.dtype]:
    """A differentiable ``f(θ, x)`` in float64 when the model allows, else in its dtype."""
    probe = space.bundle.data.x_train[:2]
    if space.dtype != torch.float64:
        module = space.bundle.module
        bufs = {k: (v.double() if v.is_floating_point() else v) for k, v in space.buffers.items()}
        th64 = theta.double()

        def f64(th: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            params = space.unflatten(th)
            params.update(bufs)
            return functional_call(module, params, (x,), strict=False)

        try:
            with torch.no_grad():
                out64 = f64(th64, probe.to(device=space.device, dtype=torch.float64))
                ref = space.forward(theta, space.bundle.to_device(probe))
            scale = float(ref.abs().max()) + 1.0
            ok = bool(torch.isfinite(out64).all()) and bool(
                (out64.to(ref.dtype) - ref).abs().max() <= 1e-3 * scale
            )
        except Exception:  # noqa: BLE001 - any failure means: use the model's own dtype
            ok = False
        if ok:
            return f64, th64, torch.float64
        notes.append(
            f"the model does not run in float64; J was computed in {_dtype_name(space.dtype)}"
            " (coarser tolerance)."
        )
    return space.forward, theta, space.dtype


@math_attention()
def _chunk_jacobian(
    f: Any, theta: torch.Tensor, x: torch.Tensor, state: dict[str, bool]
) -> torch.Tensor:
    """``(samples, outputs..., d)``: per-sample ``jacrev`` under ``vmap``, else batched."""
    if state.get("vmap", True):
        try:

            def single(th: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
                return f(th, xi.unsqueeze(0))[0]

            return vmap(jacrev(single), in_dims=(None, 0))(theta, x).detach()
        except Exception:  # noqa: BLE001 - models vmap cannot batch: fall back
            state["vmap"] = False

    def batched(th: torch.Tensor) -> torch.Tensor:
        return f(th, x)

    jac = jacrev(batched)(theta).detach()
    out_shape = jac.shape[: jac.dim() - 1]
    return jac.reshape(*out_shape, -1)


def _normalized_spectrum(gram: np.ndarray) -> tuple[np.ndarray, int]:
    """Singular values of the column-normalized ``J`` from ``JᵀJ``; and the zero columns."""
    diag = np.diag(gram).copy()
    keep = diag > 0
    s = 1.0 / np.sqrt(diag[keep])
    g = gram[np.ix_(keep, keep)]
    g *= s[:, None]
    g *= s[None, :]
    ev = np.linalg.eigvalsh(g)[::-1]
    return np.sqrt(np.clip(ev, 0.0, None)), int((~keep).sum())


def functional_dimension(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    start_samples: int | None = None,
    max_samples: int | None = None,
    growth: float = 2.0,
    rtol: float | None = None,
    plateau_tol: int = 0,
    chunk: int = 64,
    inputs: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> FunctionalDimension:
    """Functional dimension: the Jacobian rank at a plateau in the number of inputs.

    ``J`` stacks ``∂f(x_i)/∂θ`` for ``N`` inputs (training inputs, then test inputs, or the
    given ``inputs``: the rank needs no labels, so any inputs of the task will do). Its rank
    can exceed neither ``d`` nor the ``N·k_eff`` rows, so ``N`` starts at ``⌈2d / k_eff⌉``
    (or as many inputs as there are) and grows by ``growth`` until two successive ranks
    agree within ``plateau_tol`` with ``N·k_eff ≥ 1.1·d`` for both, or the inputs run out.
    The Gram ``JᵀJ`` is accumulated in float64 (each row of ``J`` is computed once), its
    columns are normalized to unit norm (so the rank is invariant to any per-parameter
    rescaling) and its eigenvalues give the singular values.

    Outputs: for cross-entropy the log-softmax outputs, whose Jacobian rows span exactly the
    rows of the class-centred logit Jacobian ``(I − 11ᵀ/k) J``, so ``k_eff = k − 1`` rows per
    sample; for other losses the raw outputs (``k_eff = k``).

    Tolerance: ``σ_i > rtol · σ_max``. The default ``rtol = 1e-6`` when ``J`` is computed in
    float64 (the model is run on a float64 copy of θ when it allows): the Gram route
    resolves singular values down to about ``1e-8 · σ_max`` (measured on digits MLPs, where
    the null directions sit at ``2e-8`` and the smallest genuine ones at ``6e-5``); when the
    model cannot run in float64, ``rtol = min(1e-2, 100 · eps)`` of its dtype. ``gap`` reports
    ``σ_rank / σ_{rank+1}`` so a threshold inside a continuum of values is visible.

    Symmetries (``symmetry_dim``) are counted for ``nn.Sequential`` MLPs of ``nn.Linear``
    layers with ReLU or LeakyReLU activations, at θ on the inputs used: one rescaling
    direction per live hidden unit, the coordinates of dead units (inactive on every input)
    and of input features that are zero on every input, and for cross-entropy the
    ``h_last + 1`` logit shifts of the last layer, as the dimension of their span.

    Args:
        space: the parameter space.
        theta: the point (default ``space.theta0``).
        start_samples: first ``N`` (default ``⌈2d / k_eff⌉``).
        max_samples: cap on ``N`` (default: every training and test input).
        growth: factor between successive ``N`` (``> 1``).
        rtol: relative threshold in ``(0, 1)`` (default as above).
        plateau_tol: largest rank change still counted as a plateau.
        chunk: inputs per Jacobian call.
        inputs: inputs to use instead of the training and test inputs (unlabelled).
        progress: optional progress reporter.

    Returns:
        The rank, its plateau curve, the deficit and the known symmetry dimension.

    Raises:
        NotApplicable: for ``d > GRAM_MAX_PARAMS`` (a pipeline skips the measure).
        ConfigError: for a TorchScript model or bad arguments.

    Example:
        >>> from torch import nn
        >>> from landscape.io import ModelBundle, load_data
        >>> sp = ParamSpace(ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic")))
        >>> fd = functional_dimension(sp)
        >>> fd.rank, fd.dim, fd.plateau  # cross-entropy: (3 − 1) centred logits × (10 + 1)
        (22, 33, True)
    """
    if space.scripted:
        raise ConfigError(
            "the functional dimension needs torch.func; give a state_dict and --model instead"
            " of a TorchScript archive."
        )
    if rtol is not None and not 0 < rtol < 1:
        raise ConfigError(f"rtol must lie in (0, 1), got {rtol}.")
    if not growth > 1:
        raise ConfigError(f"growth must exceed 1, got {growth}.")
    if chunk < 1 or plateau_tol < 0:
        raise ConfigError("need chunk ≥ 1 and plateau_tol ≥ 0.")
    for name, val in (("start_samples", start_samples), ("max_samples", max_samples)):
        if val is not None and val < 1:
            raise ConfigError(f"{name} must be positive, got {val}.")
    d = space.dim
    if d > GRAM_MAX_PARAMS:
        raise NotApplicable(
            f"the model has {d} parameters; the dense {d}×{d} Gram matrix allows at most"
            f" {GRAM_MAX_PARAMS}; restrict the analysis to a smaller model."
        )
    theta = (space.theta0 if theta is None else theta).detach()
    space._check_theta(theta)
    notes: list[str] = []
    f, th, jdtype = _jacobian_forward(space, theta, notes)
    data = space.bundle.data
    if inputs is not None:
        pools = [inputs]
    else:
        pools = [data.x_train] + ([data.x_test] if data.x_test is not None else [])
    available = sum(int(p.shape[0]) for p in pools)
    if max_samples is not None:
        available = min(available, max_samples)

    def take(i: int, j: int) -> torch.Tensor:
        parts, off = [], 0
        for p in pools:
            n = int(p.shape[0])
            lo, hi = max(i - off, 0), min(j - off, n)
            if lo < hi:
                parts.append(p[lo:hi])
            off += n
        x = torch.cat(parts)
        if x.is_floating_point():
            return x.to(device=space.device, dtype=jdtype)
        return x.to(device=space.device)

    with torch.no_grad():
        out = f(th, take(0, 1))
    k = int(out[0].numel())
    centre = space.bundle.loss.name == "cross_entropy" and out.dim() >= 2 and out.shape[1] > 1
    k_eff = k - k // int(out.shape[1]) if centre else k
    margin = -(-d // 10)
    need = -(-(d + margin) // k_eff)
    if start_samples is not None:
        n0 = min(start_samples, available)
    else:
        target = -(-2 * d // k_eff)
        n0 = target if available >= target else max(min(need, available), -(-available // 2))
        n0 = min(n0, available)
    sizes = [n0]
    while sizes[-1] < available:
        sizes.append(min(available, max(sizes[-1] + 1, int(np.ceil(sizes[-1] * growth)))))

    mlp = _relu_mlp_layers(space)
    stats = _MlpStats(mlp[0], mlp[1], th) if isinstance(mlp, tuple) else None
    default_rtol = 1e-6 if jdtype == torch.float64 else min(1e-2, 100 * torch.finfo(jdtype).eps)
    rel = default_rtol if rtol is None else rtol

    gram = np.zeros((d, d), dtype=np.float64)
    block: list[np.ndarray] = []
    block_rows = 0
    vstate: dict[str, bool] = {}
    curve: list[tuple[int, int]] = []
    sv = np.zeros(0)
    zero_cols = 0
    plateau = False
    done = 0

    def flush() -> None:
        nonlocal block, block_rows
        if block:
            b = np.concatenate(block)
            gram[...] += b.T @ b
        block, block_rows = [], 0

    with tracked(progress, "Functional dimension", -(-sizes[-1] // chunk)) as task:
        for size in sizes:
            while done < size:
                hi = min(done + chunk, size)
                x = take(done, hi)
                jac = _chunk_jacobian(f, th, x, vstate).double()
                if centre:
                    jac = jac.reshape(jac.shape[0], out.shape[1], -1, d)
                    jac = jac - jac.mean(dim=1, keepdim=True)
                rows = jac.reshape(-1, d).cpu().numpy()
                block.append(rows)
                block_rows += rows.shape[0]
                if block_rows >= _GRAM_BLOCK_ROWS:
                    flush()
                if stats is not None:
                    stats.update(x)
                done = hi
                task.advance()
            flush()
            sv, zero_cols = _normalized_spectrum(gram)
            smax = float(sv[0]) if sv.size else 0.0
            rank = int((sv > rel * smax).sum()) if smax > 0 else 0
            curve.append((size, rank))
            if len(curve) >= 2:
                (n_a, r_a), (_, r_b) = curve[-2], curve[-1]
                if (
                    abs(r_b - r_a) <= plateau_tol
                    and n_a * k_eff >= d + margin
                    and r_a < n_a * k_eff
                ):
                    plateau = True
                    break

    n_used, rank = curve[-1]
    smax = float(sv[0]) if sv.size else 0.0
    tol = rel * smax
    gap = float("inf") if rank >= sv.size or rank == 0 else float(sv[rank - 1] / sv[rank])
    saturated = rank == min(n_used * k_eff, d)
    if saturated and rank == n_used * k_eff:
        notes.append(
            f"rank capped by the sample count ({n_used} inputs × {k_eff} outputs ="
            f" {n_used * k_eff} rows for {d} parameters); give more inputs."
        )
    elif saturated:
        notes.append("J has full rank d: no null direction at this tolerance.")
    elif not plateau:
        if len(curve) == 1:
            notes.append(
                f"only one input count ({n_used}) was possible, so no plateau could be shown;"
                " give more inputs."
            )
        else:
            notes.append(
                f"the rank still changed at the last step ({curve[-2][1]} → {rank}); the inputs"
                " ran out before a plateau; give more inputs."
            )
    if np.isfinite(gap) and gap < 10:
        notes.append(
            f"no clear gap at the threshold (σ_r/σ_r+1 = {gap:.3g}); the rank depends on rtol."
        )
    if jdtype != space.dtype:
        notes.append(f"J computed in float64 from a {_dtype_name(space.dtype)} model.")
    if centre:
        notes.append("cross-entropy: log-softmax outputs, logit-shift direction removed.")

    symmetry: SymmetryCount | None = None
    if stats is not None:
        symmetry = stats.count(d, logit_shift=centre)
        if symmetry.invisible != zero_cols:
            notes.append(
                f"{zero_cols} Jacobian columns are zero but {symmetry.invisible} were predicted"
                " from the activation patterns (zero gradients from deeper layers)."
            )
        if symmetry.always_active_units > 1:
            notes.append(
                f"{symmetry.always_active_units} hidden units are active on every input;"
                " linear units can mix (GL symmetries), which symmetry_dim does not count."
            )
    else:
        notes.append(f"symmetry_dim not counted: {mlp}.")
    sym_dim = None if symmetry is None else symmetry.total
    deficit = d - rank
    return FunctionalDimension(
        rank=rank,
        dim=d,
        num_samples=n_used,
        outputs_per_sample=k_eff,
        deficit=deficit,
        symmetry_dim=sym_dim,
        excess_deficit=None if sym_dim is None else deficit - sym_dim,
        plateau=plateau,
        saturated=saturated,
        curve=tuple(curve),
        tol=tol,
        rtol=rel,
        effective_rank=effective_rank(sv),
        notes=tuple(notes),
        singular_values=sv,
        gap=gap,
        zero_columns=zero_cols,
        jacobian_dtype=_dtype_name(jdtype),
        symmetry=symmetry,
    )
