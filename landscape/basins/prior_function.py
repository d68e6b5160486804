"""Prior probability ``P(f)`` of the learned function under the model's own initialization.

**Definition.** On a fixed set of inputs ``x_1 … x_n`` a network computes the function
``f(θ) = (argmax_c out(θ, x_i)_c)_i`` (for one output: ``1[out > 0]``). The prior
probability of the learned function ``f* = f(θ*)`` is the probability that a random
initialization ``θ ~ p_init`` computes exactly ``f*`` (Valle-Pérez et al. 2019, "Deep
learning generalizes because the parameter-function map is biased towards simple
functions"; Mingard et al. 2021, "Is SGD a Bayesian sampler? Well, almost"). If
exponentially more parameterizations compute simple functions, ``P(f)`` of simple
functions is exponentially larger.

**Estimators.** ``sampling`` draws ``N`` initializations by re-running every submodule's
``reset_parameters`` (the model's own init), evaluates all of them at once
(``torch.func.functional_call`` under ``vmap``, in chunks) and counts the ``k`` that
compute ``f*``: ``log10 P̂ = log10(k/N)`` with the delta-method standard error
``√((1 − k/N)/k) / ln 10`` and a Clopper–Pearson 95% interval. When ``k = 0`` the mean
is the log10 of the Clopper–Pearson upper limit (``upper_bound`` is set), so the value
is a bound, not an estimate. ``nngp`` replaces the finite network by its infinite-width
Gaussian process (fully connected ReLU nets at PyTorch's default init only) and estimates
``log P(sign f(x_i) = y_i ∀i)`` by expectation propagation; binary functions only.

**Where it is undefined or saturated.** Sampling resolves ``P(f) ≳ 1/N``: on more than a
few dozen inputs most learned functions have ``k = 0``. The NNGP value is the
infinite-width limit (a finite net's prior differs, mostly for narrow nets) and EP is an
approximation (good to a few hundredths of a decade on small problems, see the tests).
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from landscape.basins.nngp import ep_log_orthant, nngp_kernel, relu_mlp_layers
from landscape.engine.params import ParamSpace
from landscape.errors import ConfigError
from landscape.io.model_bundle import set_eval
from landscape.progress import Progress, tracked
from landscape.results import Estimate, _json_float

DEFAULT_MAX_INPUTS = 64
METHODS = ("auto", "sampling", "nngp")

ModelSource = ParamSpace | nn.Module | Callable[[], nn.Module]


# -- drawing initializations -------------------------------------------------------------
class InitSampler:
    """Draws flat parameter vectors from a model's own init and evaluates them in batches.

    The model is deep-copied once (the caller's module is never touched). Each draw re-runs
    ``reset_parameters()`` of every submodule that has one; plain ``nn.Linear`` layers
    (whose ``reset_parameters`` draws weights and biases from ``U(−1/√fan_in, 1/√fan_in)``)
    are drawn for a whole batch at once from that same distribution. Parameters of modules
    without ``reset_parameters`` keep their current values (listed in :attr:`fixed`).

    Args:
        source: a :class:`ParamSpace` (its ``bundle.module``), a module, or a factory.

    Example:
        >>> s = InitSampler(nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1)))
        >>> s.draw(5, seed=0).shape
        torch.Size([5, 11])
    """

    def __init__(self, source: ModelSource) -> None:
        if isinstance(source, ParamSpace):
            if source.scripted:
                raise ConfigError(
                    "P(f) needs torch.func; give a state_dict and --model instead of a"
                    " TorchScript archive."
                )
            template = copy.deepcopy(source.bundle.module)
            names = source.names
            buffers = {k: v.detach().clone() for k, v in source.buffers.items()}
        else:
            module = source if isinstance(source, nn.Module) else source()
            if not isinstance(module, nn.Module):
                raise ConfigError("the factory must return an nn.Module; check the callable.")
            template = copy.deepcopy(module)
            names = [n for n, p in template.named_parameters() if p.requires_grad]
            buffers = {k: v.detach().clone() for k, v in template.named_buffers()}
            buffers.update(
                {n: p.detach() for n, p in template.named_parameters() if not p.requires_grad}
            )
        set_eval(template)
        if not names:
            raise ConfigError("the model has no trainable parameters; nothing to initialize.")
        self.module = template
        self.buffers = buffers
        params = dict(template.named_parameters())
        self.names: list[str] = list(names)
        self.shapes = [tuple(params[n].shape) for n in self.names]
        sizes = [int(params[n].numel()) for n in self.names]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        self.dim = int(self.offsets[-1])
        first = params[self.names[0]]
        self.device, self.dtype = first.device, first.dtype
        self.base = torch.cat([params[n].detach().reshape(-1) for n in self.names])
        index = {n: i for i, n in enumerate(self.names)}
        # (module, [(param index, leaf name)]) for every module that resets its own params
        self._fast: list[tuple[nn.Linear, int, int | None]] = []
        self._slow: list[tuple[nn.Module, list[tuple[int, str]]]] = []
        covered: set[int] = set()
        for mname, mod in template.named_modules():
            own = [
                (index[f"{mname}.{leaf}" if mname else leaf], leaf)
                for leaf, _ in mod.named_parameters(recurse=False)
                if (f"{mname}.{leaf}" if mname else leaf) in index
            ]
            if not own or not callable(getattr(mod, "reset_parameters", None)):
                continue
            if type(mod) is nn.Linear:
                w = next(i for i, leaf in own if leaf == "weight")
                b = next((i for i, leaf in own if leaf == "bias"), None)
                self._fast.append((mod, w, b))
            else:
                self._slow.append((mod, own))
            covered.update(i for i, _ in own)
        self.fixed: tuple[str, ...] = tuple(n for i, n in enumerate(self.names) if i not in covered)

    def _slice(self, i: int) -> slice:
        return slice(self.offsets[i], self.offsets[i + 1])

    @property
    def notes(self) -> tuple[str, ...]:
        """What the draws do and do not resample."""
        out = []
        if self._fast:
            out.append(
                "nn.Linear layers drawn batch-wise from their reset_parameters distribution"
                " U(-1/sqrt(fan_in), 1/sqrt(fan_in))"
            )
        if self._slow:
            out.append(
                "reset_parameters() re-run per draw for "
                + ", ".join(sorted({type(m).__name__ for m, _ in self._slow}))
            )
        if self.fixed:
            out.append(
                "kept at their current values (owning module has no reset_parameters): "
                + ", ".join(self.fixed)
            )
        return tuple(out)

    def draw(self, count: int, *, seed: int) -> torch.Tensor:
        """``(count, dim)`` flat parameter vectors drawn from the init, reproducibly."""
        theta = self.base.detach().clone().unsqueeze(0).repeat(count, 1)
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        for mod, wi, bi in self._fast:
            fan_in = mod.in_features
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            for i in (wi, bi):
                if i is None:
                    continue
                sl = self._slice(i)
                u = torch.rand(
                    (count, sl.stop - sl.start), generator=gen, device=self.device, dtype=self.dtype
                )
                theta[:, sl] = (2 * u - 1) * bound
        if self._slow:
            devices = [self.device] if self.device.type != "cpu" else []
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(int(seed) ^ 0x5EED)
                for row in range(count):
                    for sub, own in self._slow:
                        sub.reset_parameters()  # type: ignore[operator]
                        for i, leaf in own:
                            theta[row, self._slice(i)] = getattr(sub, leaf).detach().reshape(-1)
        return theta

    def outputs(
        self, theta: torch.Tensor, inputs: torch.Tensor, *, per_row: bool = False
    ) -> torch.Tensor:
        """Outputs ``(B, n, ...)`` of the model at each row of ``theta``.

        ``inputs`` is ``(n, ...)`` shared by every row, or with ``per_row`` ``(B, n, ...)``
        (row ``b`` of ``theta`` sees ``inputs[b]``). Differentiable in ``theta``.
        """

        def one(th: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            params: dict[str, torch.Tensor] = {
                n: th[self._slice(i)].view(s)
                for i, (n, s) in enumerate(zip(self.names, self.shapes, strict=True))
            }
            params.update(self.buffers)
            return functional_call(self.module, params, (x,), strict=False)

        return torch.vmap(one, in_dims=(0, 0 if per_row else None))(theta, inputs)


def function_labels(outputs: torch.Tensor) -> torch.Tensor:
    """Class labels from outputs ``(..., n, C)``.

    One output (``C = 1``): ``1[out > 0]``; otherwise the argmax over the last axis.

    Example:
        >>> function_labels(torch.tensor([[0.5], [-1.0]])).tolist()
        [1, 0]
        >>> function_labels(torch.tensor([[0.5, 2.0], [1.0, -1.0]])).tolist()
        [1, 0]
    """
    if outputs.shape[-1] == 1:
        outputs = outputs[..., 0]
        return (outputs > 0).to(torch.int64)
    return outputs.argmax(dim=-1)


def _labels_batched(out: torch.Tensor, n: int) -> torch.Tensor:
    if out.dim() == 2 and out.shape[1] == n:  # (B, n): one squeezed output
        return (out > 0).to(torch.int64)
    if out.dim() != 3 or out.shape[1] != n:
        raise ConfigError(
            f"P(f) needs outputs of shape (n,) or (n, classes); got {tuple(out.shape[1:])}."
        )
    return function_labels(out)


def _chunk_seed(seed: int, index: int) -> int:
    return zlib.crc32(f"{seed}:{index}".encode()) & 0x7FFFFFFF


def iter_function_chunks(
    sampler: InitSampler,
    inputs: torch.Tensor,
    num_samples: int,
    *,
    seed: int,
    batch: int = 2048,
    progress: Progress | None = None,
) -> Iterator[torch.Tensor]:
    """Yield ``(b, n)`` label chunks of ``num_samples`` initializations (memory-bounded)."""
    if num_samples < 1:
        raise ConfigError(f"num_samples must be ≥ 1, got {num_samples}; pass a positive count.")
    if batch < 1:
        raise ConfigError(f"batch must be ≥ 1, got {batch}; pass a positive chunk size.")
    x = inputs.to(sampler.device, sampler.dtype if inputs.is_floating_point() else None)
    n = int(x.shape[0])
    chunks = -(-num_samples // batch)
    with tracked(progress, "P(f) samples", chunks) as task, torch.no_grad():
        for c in range(chunks):
            b = min(batch, num_samples - c * batch)
            theta = sampler.draw(b, seed=_chunk_seed(seed, c))
            out = sampler.outputs(theta, x)
            small = out.dim() == 2 or out.shape[-1] <= 256
            yield _labels_batched(out, n).to(torch.uint8 if small else torch.int32)
            task.advance()


def sample_functions(
    space_or_module_factory: ModelSource,
    inputs: torch.Tensor,
    num_samples: int,
    *,
    seed: int,
    batch: int = 2048,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Functions computed by ``num_samples`` draws of the model's own initialization.

    Args:
        space_or_module_factory: a :class:`ParamSpace`, a module, or a module factory.
        inputs: ``(n, ...)`` inputs the model accepts.
        num_samples: initializations to draw.
        seed: seed of the draws (chunk ``c`` uses a seed derived from ``seed`` and ``c``,
            so the result depends on ``batch`` too).
        batch: initializations evaluated at once.
        progress: optional progress reporter.

    Returns:
        ``(num_samples, n)`` labels (``uint8``; ``int32`` beyond 256 classes): the argmax
        class per input, or ``1[out > 0]`` for one output.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> sample_functions(net, torch.eye(3), 10, seed=0).shape
        torch.Size([10, 3])
    """
    sampler = InitSampler(space_or_module_factory)
    return torch.cat(
        list(
            iter_function_chunks(
                sampler, inputs, num_samples, seed=seed, batch=batch, progress=progress
            )
        )
    )


# -- the estimate ----------------------------------------------------------------------
def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper–Pearson interval of a binomial proportion ``k/n``.

    Example:
        >>> lo, hi = clopper_pearson(0, 100)
        >>> lo, round(hi, 4)
        (0.0, 0.0362)
    """
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def log10_binomial(k: int, n: int) -> tuple[float, float, tuple[float, float], bool]:
    """``(log10 mean, delta-method stderr, log10 CP 95% interval, upper_bound)`` of ``k/n``.

    With ``k = 0`` the mean is the log10 of the CP upper limit, the stderr NaN and
    ``upper_bound`` True.

    Example:
        >>> m, se, ci, ub = log10_binomial(10, 1000)
        >>> round(m, 3), round(se, 3), ub
        (-2.0, 0.137, False)
    """
    lo, hi = clopper_pearson(k, n)
    ci = (math.log10(lo) if lo > 0 else -math.inf, math.log10(hi))
    if k == 0:
        return ci[1], math.nan, ci, True
    p = k / n
    return math.log10(p), math.sqrt((1 - p) / k) / math.log(10.0), ci, False


@dataclass(frozen=True)
class PriorProbability:
    """Prior probability of a function under the model's initialization.

    Attributes:
        log10_p: ``log10 P(f)`` (mean and standard error; for ``upper_bound`` the mean is
            the log10 Clopper–Pearson 95% upper limit and the stderr NaN; for ``nngp`` the
            EP value with NaN stderr).
        hits: sampled initializations computing ``f``.
        num_samples: initializations drawn (0 for ``nngp``).
        num_inputs: inputs the function is defined on.
        method: ``sampling`` or ``nngp``.
        upper_bound: whether ``log10_p.mean`` is only an upper bound (no hits).
        nngp_log10_p: NNGP/EP estimate where available (binary, fully connected ReLU).
        notes: how the estimate was made and what it leaves out.
        log10_ci: log10 of the Clopper–Pearson 95% interval (sampling only).
    """

    log10_p: Estimate
    hits: int
    num_samples: int
    num_inputs: int
    method: str
    upper_bound: bool
    nngp_log10_p: float | None
    notes: tuple[str, ...]
    log10_ci: tuple[float, float] = (math.nan, math.nan)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scalars (the CLI stores them under ``basins.prior``)."""
        return {
            "log10_p": {
                "mean": _json_float(self.log10_p.mean),
                "stderr": _json_float(self.log10_p.stderr),
            },
            "log10_ci": [_json_float(v) for v in self.log10_ci],
            "num_samples": int(self.num_samples),
            "hits": int(self.hits),
            "num_inputs": int(self.num_inputs),
            "method": self.method,
            "upper_bound": bool(self.upper_bound),
            "nngp_log10_p": None if self.nngp_log10_p is None else _json_float(self.nngp_log10_p),
            "notes": list(self.notes),
        }


def nngp_log10_probability(
    module: nn.Module, inputs: torch.Tensor, labels: torch.Tensor | np.ndarray, *, classes: int
) -> tuple[float, str]:
    """EP estimate of ``log10 P(f)`` under the NNGP of a ReLU MLP, and a note.

    ``classes`` is the number of outputs: 1 (label = ``1[out > 0]``) or 2 (label 1 when the
    second output is larger; the difference of two independent GPs is a GP with twice
    the kernel, and the sign probability does not depend on the scale).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> v, _ = nngp_log10_probability(net, torch.eye(2)[:1], torch.tensor([1]), classes=1)
        >>> round(v, 4)
        -0.301
    """
    if classes > 2:
        raise ConfigError("nngp not available for multi-class; use method='sampling'.")
    kernel = nngp_kernel(module, inputs)
    y = np.asarray(labels).reshape(-1).astype(np.float64)
    res = ep_log_orthant(kernel, 2 * y - 1)
    note = f"EP on the NNGP kernel ({res.sweeps} sweeps, converged={res.converged})"
    return res.log10_p, note


def prior_probability(
    space: ParamSpace,
    theta: torch.Tensor | None = None,
    *,
    inputs: torch.Tensor | None = None,
    num_samples: int = 100_000,
    method: str = "auto",
    seed: int = 0,
    max_inputs: int = DEFAULT_MAX_INPUTS,
    batch: int = 2048,
    progress: Progress | None = None,
) -> PriorProbability:
    """Prior probability of the function the model computes at ``theta``.

    Args:
        space: the model (its ``bundle.module`` defines the init; it is not changed).
        theta: the trained parameters (default ``space.theta0``).
        inputs: inputs defining the function (default: the first ``max_inputs`` training
            inputs).
        num_samples: initializations to draw (``sampling``/``auto``).
        method: ``sampling`` (count hits), ``nngp`` (EP on the NNGP only) or ``auto``
            (sampling, plus the NNGP estimate where the model supports it).
        seed: seed of the draws.
        max_inputs: cap on the default inputs.
        batch: initializations evaluated at once.
        progress: optional progress reporter.

    Returns:
        A :class:`PriorProbability`.

    Raises:
        ConfigError: on bad arguments, or ``nngp`` for an unsupported model.

    Example:
        >>> from landscape.io import ModelBundle, load_data
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
        >>> sp = ParamSpace(ModelBundle.from_module(net, load_data("digits")))
        >>> r = prior_probability(sp, max_inputs=2, num_samples=2000)
        >>> r.num_inputs, r.hits > 0, r.method
        (2, True, 'sampling')
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; use {', '.join(METHODS)}.")
    if num_samples < 1:
        raise ConfigError(f"num_samples must be ≥ 1, got {num_samples}; pass a positive count.")
    if max_inputs < 1:
        raise ConfigError(f"max_inputs must be ≥ 1, got {max_inputs}; pass a positive count.")
    if space.scripted:
        raise ConfigError(
            "P(f) needs torch.func; give a state_dict and --model instead of a TorchScript archive."
        )
    theta = (space.theta0 if theta is None else theta).detach()
    notes: list[str] = []
    if inputs is None:
        data = space.bundle.data
        n = min(max_inputs, data.num_train)
        if n == 0:
            raise ConfigError("the training split is empty; pass inputs=... explicitly.")
        inputs = data.x_train[:n]
        notes.append(f"function defined on the first {n} of {data.num_train} training inputs")
    else:
        notes.append(f"function defined on {int(inputs.shape[0])} given inputs")
    x = space.bundle.to_device(inputs)
    n = int(x.shape[0])
    with torch.no_grad():
        out = space.forward(theta, x)
    if out.dim() == 1:
        out = out[:, None]
    if out.dim() != 2 or out.shape[0] != n:
        raise ConfigError(
            f"P(f) needs outputs of shape (n,) or (n, classes); got {tuple(out.shape)}."
        )
    classes = int(out.shape[1])
    target = function_labels(out).cpu()
    notes.append("f = 1[output > 0] per input" if classes == 1 else "f = argmax class per input")
    nngp_val: float | None = None
    supported = relu_mlp_layers(space.bundle.module) is not None
    if classes > 2:
        notes.append("nngp not available for multi-class; sampling only")
    elif not supported:
        notes.append("nngp unsupported (not a fully connected nn.Linear/nn.ReLU net)")
    if method == "nngp" and (classes > 2 or not supported):
        raise ConfigError("nngp needs a binary fully connected ReLU net; use method='sampling'.")
    if classes <= 2 and supported:
        nngp_val, note = nngp_log10_probability(space.bundle.module, x, target, classes=classes)
        notes.append(note + "; infinite-width limit of the init, not the finite net")
    if method == "nngp":
        assert nngp_val is not None  # guaranteed by the checks above
        return PriorProbability(
            Estimate(nngp_val, math.nan, 0, "nngp"), 0, 0, n, "nngp", False, nngp_val, tuple(notes)
        )
    sampler = InitSampler(space)
    notes.extend(sampler.notes)
    tgt = target.to(sampler.device)
    hits = 0
    for labels in iter_function_chunks(
        sampler, x, num_samples, seed=seed, batch=batch, progress=progress
    ):
        hits += int((labels.to(torch.int64) == tgt).all(dim=1).sum())
    mean, se, ci, upper = log10_binomial(hits, num_samples)
    if upper:
        notes.append(
            f"no hits in {num_samples} draws: log10_p is the 95% Clopper-Pearson upper limit"
        )
    return PriorProbability(
        Estimate(mean, se, num_samples, "sampling"),
        hits,
        num_samples,
        n,
        "sampling",
        upper,
        nngp_val,
        tuple(notes),
        ci,
    )


# -- complexity ------------------------------------------------------------------------
def lz76_phrases(bits: str) -> int:
    """Number of phrases of the LZ76 exhaustive parsing (Lempel & Ziv 1976).

    Each new phrase is the shortest substring starting where the last one ended that
    cannot be copied from earlier text (the copy may overlap the phrase, not its last
    symbol). Equal to Kaspar & Schuster's (1987) counting; substring search keeps it fast.

    Example:
        >>> lz76_phrases("0001101001000101")  # 0 · 001 · 10 · 100 · 1000 · 101
        6
    """
    n = len(bits)
    count, pos = 0, 0
    while pos < n:
        length = 1
        while pos + length <= n and bits[pos : pos + length] in bits[: pos + length - 1]:
            length += 1
        count += 1
        pos += length
    return count


def lempel_ziv_complexity(bits: str | np.ndarray | torch.Tensor | list[int]) -> float:
    """Lempel–Ziv complexity of a binary string as used by Valle-Pérez et al. (2019).

    ``K_LZ(x) = log2(n)`` for the constant strings ``0ⁿ``, ``1ⁿ``, and otherwise
    ``log2(n) · (N_w(x₁…xₙ) + N_w(xₙ…x₁)) / 2`` with ``N_w`` the LZ76 phrase count.

    Example:
        >>> lempel_ziv_complexity("0" * 128), lempel_ziv_complexity("01" * 64)
        (7.0, 21.0)
    """
    if isinstance(bits, str):
        s = bits
    else:
        arr = bits.detach().cpu().numpy() if isinstance(bits, torch.Tensor) else np.asarray(bits)
        s = "".join("1" if int(v) else "0" for v in arr.reshape(-1))
    if set(s) - {"0", "1"}:
        raise ConfigError("lempel_ziv_complexity needs a binary string of 0s and 1s.")
    n = len(s)
    if n == 0:
        raise ConfigError("lempel_ziv_complexity needs a non-empty string.")
    if n == 1:
        return 0.0
    log_n = math.log2(n)
    if s in ("0" * n, "1" * n):
        return log_n
    return log_n * (lz76_phrases(s) + lz76_phrases(s[::-1])) / 2
