"""The Boolean simplicity-bias experiment (Valle-Pérez et al. 2019; Mingard et al. 2021).

**Claim tested.** The parameter-function map of a ReLU network is biased towards simple
functions: under the network's own random initialization, ``log P(f)`` falls with the
complexity of ``f``; and SGD finds a function about as often as Bayesian inference with
that prior would, ``P_SGD(f) ≈ P_B(f | S) ∝ P(f)`` over the functions consistent with the
training set ``S``.

**Design.** Inputs are all ``2ⁿ`` bit strings of ``n_bits`` bits (``0/1``, most significant
bit first; a function is its truth table in that order). An MLP ``n → hidden → 1`` (ReLU,
PyTorch default init) computes ``f(x) = 1[out(x) > 0]``. *Prior*: ``num_samples``
initializations, each function's frequency ``P̂(f) = k/N`` and its Lempel–Ziv complexity.
*SGD*: ``sgd_runs`` networks from independent inits, trained (all at once, vectorized;
binary cross-entropy, minibatches) on ``train_size`` inputs labelled by the ``target``
function until 100% training accuracy; the function each computes on all inputs then is
recorded. *Bayes*: ``log P_B(f|S) = log P(f) − log P(S)`` with both terms from EP on the
NNGP of the network (the infinite-width limit; the sampled prior cannot reach the
probabilities of functions on all inputs that fit ``S``).

**Analysis.** Spearman ρ of ``log10 P̂(f)`` with LZ complexity over every function the
prior sample met, and of ``log10 P_SGD(f)`` with ``log10 P_B(f|S)`` over every function SGD
found, each with a permutation p-value. Functions seen once under the prior all share the
floor ``log10(1/N)``: ρ is driven by the frequent functions.

Results go to a run directory: ``config.json``, ``prior.npz`` and ``sgd.npz`` (raw draws, so
a rerun with ``resume`` skips them), ``prior_functions.csv``, ``sgd_functions.csv``,
``summary.json`` (``boolean`` section) and, from ``landscape.viz.boolean_plots``,
``figures/``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from landscape.basins.nngp import ep_log_orthant, nngp_kernel
from landscape.basins.prior_function import InitSampler, iter_function_chunks, lempel_ziv_complexity
from landscape.errors import ConfigError
from landscape.io.presets import checked_settings, load_preset
from landscape.io.rundir import RunDir, atomic_write, versions
from landscape.models import mlp
from landscape.progress import Progress, tracked
from landscape.stats import stratified_spearman

PRESETS = {"default": "boolean", "quick": "boolean_quick"}
TARGETS = ("first_bit", "parity", "random")


@dataclass(frozen=True)
class BooleanConfig:
    """The Boolean experiment.

    Attributes:
        n_bits: input bits (all ``2**n_bits`` inputs are used).
        hidden: hidden widths.
        num_samples: prior draws.
        sample_batch: draws evaluated at once.
        sgd_runs: networks trained from independent inits.
        train_size: training inputs (a seeded random subset).
        target: ``first_bit`` (``f(x) = x₁``, LZ-simplest non-constant), ``parity``,
            ``random`` (seeded), or a truth table of ``2**n_bits`` characters ``0``/``1``.
        optimizer: ``adam`` or ``sgd``.
        lr: learning rate.
        batch_size: minibatch size.
        max_epochs: epochs before a run that has not fit ``S`` is given up.
        seed: base seed (inits, training subset, batches, permutations).
        permutations: permutations for the p-values.
        top_functions: most frequent prior functions listed in the summary.
        nngp: compute ``P_B`` by EP on the NNGP.
    """

    n_bits: int = 7
    hidden: tuple[int, ...] = (40, 40)
    num_samples: int = 100_000
    sample_batch: int = 4096
    sgd_runs: int = 200
    train_size: int = 64
    target: str = "first_bit"
    optimizer: str = "adam"
    lr: float = 0.01
    batch_size: int = 16
    max_epochs: int = 500
    seed: int = 0
    permutations: int = 1000
    top_functions: int = 30
    nngp: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BooleanConfig:
        """Build from a ``[boolean]`` table (unknown keys are an error).

        Example:
            >>> BooleanConfig.from_dict({"sgd_runs": 10, "hidden": [8]}).hidden
            (8,)
        """
        kw = checked_settings(cls, data, "boolean")
        if "hidden" in kw:
            h = kw["hidden"]
            kw["hidden"] = (int(h),) if isinstance(h, int) else tuple(int(v) for v in h)
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    @property
    def num_inputs(self) -> int:
        """``2**n_bits``."""
        return 2**self.n_bits

    def validate(self) -> None:
        """Raise :class:`ConfigError` on impossible settings."""
        if not 1 <= self.n_bits <= 12:
            raise ConfigError("n_bits must be between 1 and 12.")
        if not self.hidden or any(w < 1 for w in self.hidden):
            raise ConfigError("hidden must list one or more positive widths.")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be ≥ 1, got {self.num_samples}.")
        if self.sample_batch < 1:
            raise ConfigError("sample_batch must be ≥ 1.")
        if self.sgd_runs < 1:
            raise ConfigError(f"sgd_runs must be ≥ 1, got {self.sgd_runs}.")
        if not 1 <= self.train_size <= self.num_inputs:
            raise ConfigError(f"train_size must lie in [1, {self.num_inputs}] (2**n_bits).")
        if self.target not in TARGETS and (
            len(self.target) != self.num_inputs or set(self.target) - {"0", "1"}
        ):
            raise ConfigError(
                f"target must be one of {', '.join(TARGETS)} or a {self.num_inputs}-character"
                " 0/1 truth table."
            )
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer {self.optimizer!r} is unknown; use adam or sgd.")
        if self.lr <= 0 or self.batch_size < 1 or self.max_epochs < 1:
            raise ConfigError("lr must be positive, batch_size and max_epochs ≥ 1.")
        if self.permutations < 0 or self.top_functions < 0:
            raise ConfigError("permutations and top_functions must be ≥ 0.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready configuration."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


def load_config(preset: str | None = None, config_file: str | Path | None = None) -> BooleanConfig:
    """Load a preset (``default``, ``quick``) or a TOML file's ``[boolean]`` table.

    Example:
        >>> load_config("quick").n_bits
        7
    """
    if config_file is not None:
        return BooleanConfig.from_dict(load_preset(str(config_file), "boolean"))
    name = PRESETS.get(preset or "default")
    if name is None:
        raise ConfigError(
            f"unknown preset {preset!r} for boolean; use {', '.join(PRESETS)} or --config FILE."
        )
    return BooleanConfig.from_dict(load_preset(name, "boolean"))


# -- inputs, targets, functions ----------------------------------------------------------
def boolean_inputs(n_bits: int) -> torch.Tensor:
    """All ``2**n_bits`` inputs as ``0/1`` floats, most significant bit first.

    Example:
        >>> boolean_inputs(2).tolist()
        [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    """
    idx = torch.arange(2**n_bits)
    shifts = torch.arange(n_bits - 1, -1, -1)
    return ((idx[:, None] >> shifts[None, :]) & 1).to(torch.float32)


def target_function(config: BooleanConfig) -> np.ndarray:
    """The target's truth table (``uint8``, one entry per input).

    Example:
        >>> target_function(BooleanConfig(n_bits=2, train_size=2, target="parity")).tolist()
        [0, 1, 1, 0]
    """
    x = boolean_inputs(config.n_bits).numpy().astype(np.uint8)
    if config.target == "first_bit":
        return x[:, 0].copy()
    if config.target == "parity":
        return (x.sum(axis=1) % 2).astype(np.uint8)
    if config.target == "random":
        return (
            np.random.default_rng([config.seed, 7])
            .integers(0, 2, config.num_inputs)
            .astype(np.uint8)
        )
    return np.frombuffer(config.target.encode(), dtype=np.uint8) - ord("0")


def train_indices(config: BooleanConfig) -> np.ndarray:
    """The training subset ``S`` (sorted input indices, seeded)."""
    rng = np.random.default_rng([config.seed, 1])
    return np.sort(rng.choice(config.num_inputs, size=config.train_size, replace=False))


def bit_string(bits: np.ndarray) -> str:
    """``"0110…"`` from an array of 0/1."""
    return (np.asarray(bits, dtype=np.uint8) + ord("0")).tobytes().decode()


def _packed(bits: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(bits, dtype=np.uint8), axis=-1)


def _unpacked(packed: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(packed, axis=-1)[..., :n]


def _unique_rows(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.ascontiguousarray(packed)
    view = rows.view(np.dtype((np.void, rows.shape[1]))).ravel()
    _, first, counts = np.unique(view, return_index=True, return_counts=True)
    return rows[first], counts


# -- the two samplers ------------------------------------------------------------------------
def sample_prior(
    config: BooleanConfig, sampler: InitSampler, x: torch.Tensor, progress: Progress | None
) -> dict[str, np.ndarray]:
    """Distinct functions of ``num_samples`` inits and how often each was drawn."""
    packed = [
        _packed(chunk.cpu().numpy())
        for chunk in iter_function_chunks(
            sampler,
            x,
            config.num_samples,
            seed=config.seed,
            batch=config.sample_batch,
            progress=progress,
        )
    ]
    keys, counts = _unique_rows(np.concatenate(packed))
    return {"keys": keys, "counts": counts.astype(np.int64)}


def train_runs(
    config: BooleanConfig,
    sampler: InitSampler,
    x: torch.Tensor,
    target: np.ndarray,
    train_idx: np.ndarray,
    progress: Progress | None,
) -> dict[str, np.ndarray]:
    """Train ``sgd_runs`` nets at once to 100% training accuracy; their functions on all inputs.

    Runs are independent: the loss is a sum of per-run mean losses and both optimizers act
    elementwise, so each run's update depends on its own parameters and batch only.
    """
    runs, m = config.sgd_runs, int(train_idx.size)
    gen = torch.Generator().manual_seed(config.seed + 2)
    theta = sampler.draw(runs, seed=config.seed + 1).requires_grad_(True)
    opt: torch.optim.Optimizer = (
        torch.optim.Adam([theta], lr=config.lr)
        if config.optimizer == "adam"
        else torch.optim.SGD([theta], lr=config.lr)
    )
    xs = x[torch.as_tensor(train_idx)]
    ys = torch.as_tensor(target[train_idx], dtype=x.dtype)
    y_train = torch.as_tensor(target[train_idx].astype(np.int64))
    functions = np.zeros((runs, x.shape[0]), dtype=np.uint8)
    done = np.zeros(runs, dtype=bool)
    epochs = np.full(runs, -1, dtype=np.int64)
    bs = min(config.batch_size, m)

    def record(epoch: int) -> None:
        with torch.no_grad():
            labels = (sampler.outputs(theta.detach(), x)[..., 0] > 0).to(torch.int64)
        fit = (labels[:, torch.as_tensor(train_idx)] == y_train).all(dim=1).numpy()
        new = fit & ~done
        functions[new] = labels.numpy()[new]
        epochs[new] = epoch
        done[new] = True

    with tracked(progress, "SGD runs", runs) as task:
        record(0)
        task.advance(int(done.sum()))
        for epoch in range(1, config.max_epochs + 1):
            if done.all():
                break
            order = torch.argsort(torch.rand(runs, m, generator=gen), dim=1)
            for start in range(0, m, bs):
                idx = order[:, start : start + bs]
                out = sampler.outputs(theta, xs[idx], per_row=True)[..., 0]
                loss = F.binary_cross_entropy_with_logits(out, ys[idx], reduction="none").mean(
                    dim=1
                )
                opt.zero_grad()
                loss.sum().backward()
                opt.step()
            before = int(done.sum())
            record(epoch)
            task.advance(int(done.sum()) - before)
    return {"functions": _packed(functions), "converged": done, "epochs": epochs}


# -- the whole experiment --------------------------------------------------------------------
def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        savez: Any = np.savez  # numpy's stubs reject ** of a dict of arrays
        with open(tmp, "wb") as fh:
            savez(fh, **arrays)

    atomic_write(path, write)


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    text = buf.getvalue()
    atomic_write(path, lambda p: p.write_text(text))


def _rho(x: np.ndarray, y: np.ndarray, config: BooleanConfig) -> dict[str, Any]:
    rho, p, n = stratified_spearman(
        x, y, [0] * len(x), permutations=config.permutations, seed=config.seed
    )
    return {"rho": rho, "p": p, "n": n}


def _same_run(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"boolean": cfg.get("boolean", {})}


def run_boolean(
    config: BooleanConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run (or resume) the Boolean experiment in ``out`` and return its ``boolean`` summary.

    Example:
        >>> import tempfile
        >>> cfg = BooleanConfig(n_bits=3, hidden=(8,), num_samples=500, sgd_runs=4,
        ...                     train_size=4, permutations=10)
        >>> s = run_boolean(cfg, tempfile.mkdtemp() + "/b")
        >>> s["prior"]["num_samples"], s["sgd"]["runs"]
        (500, 4)
    """
    config.validate()
    t_start = time.perf_counter()
    run = RunDir.create(
        out,
        {"command": "experiment boolean", "boolean": config.to_dict(), "versions": versions()},
        resume=resume,
        overwrite=overwrite,
        compare_keys=_same_run,
    )
    root = run.path
    n = config.num_inputs
    x = boolean_inputs(config.n_bits)
    target = target_function(config)
    train_idx = train_indices(config)
    model = mlp(config.n_bits, list(config.hidden), 1)
    sampler = InitSampler(model)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    prior = _load_npz(root / "prior.npz")
    prior_computed = prior is None
    if prior is None:
        with torch.no_grad():
            prior = sample_prior(config, sampler, x, progress)
        _save_npz(root / "prior.npz", prior)
    seconds["prior"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    sgd = _load_npz(root / "sgd.npz")
    sgd_computed = sgd is None
    if sgd is None:
        sgd = train_runs(config, sampler, x, target, train_idx, progress)
        _save_npz(root / "sgd.npz", sgd)
    seconds["sgd"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    summary = analyze(config, prior, sgd, target, train_idx, model, x, root, progress)
    seconds["analysis"] = round(time.perf_counter() - t0, 2)
    seconds["total"] = round(time.perf_counter() - t_start, 2)
    summary["seconds"] = seconds
    summary["prior_computed"] = prior_computed
    summary["sgd_computed"] = sgd_computed
    summary["num_inputs"] = n
    run.update_summary({"name": root.name, "versions": versions(), "boolean": summary})
    return summary


def analyze(
    config: BooleanConfig,
    prior: dict[str, np.ndarray],
    sgd: dict[str, np.ndarray],
    target: np.ndarray,
    train_idx: np.ndarray,
    model: torch.nn.Module,
    x: torch.Tensor,
    root: Path,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Frequencies, complexities, P_B and the two rank correlations; writes the CSV tables."""
    n = config.num_inputs
    total = int(config.num_samples)
    keys, counts = prior["keys"], prior["counts"]
    bits = _unpacked(keys, n)
    strings = [bit_string(b) for b in bits]
    lz = np.array([lempel_ziv_complexity(s) for s in strings])
    log10_p = np.log10(counts / total)
    prior_index = {k.tobytes(): i for i, k in enumerate(keys)}
    fits_s = np.all(bits[:, train_idx] == target[train_idx], axis=1)
    consistent = int(counts[fits_s].sum())
    order = np.argsort(-counts, kind="stable")
    _csv(
        root / "prior_functions.csv",
        ["function", "hits", "log10_p", "lz", "fits_train"],
        [[strings[i], int(counts[i]), float(log10_p[i]), float(lz[i]), bool(fits_s[i])]
         for i in order],
    )  # fmt: skip
    rho_prior = _rho(log10_p, lz, config)

    conv = sgd["converged"].astype(bool)
    sgd_keys, sgd_counts = (
        _unique_rows(sgd["functions"][conv]) if conv.any() else (np.zeros((0, 1), np.uint8), [])
    )
    sgd_counts = np.asarray(sgd_counts, dtype=np.int64)
    sgd_bits = _unpacked(sgd_keys, n)
    sgd_strings = [bit_string(b) for b in sgd_bits]
    sgd_lz = np.array([lempel_ziv_complexity(s) for s in sgd_strings])
    p_sgd = sgd_counts / max(1, int(conv.sum()))
    test_idx = np.setdiff1d(np.arange(n), train_idx)
    test_acc = (
        float(np.mean(_unpacked(sgd["functions"][conv], n)[:, test_idx] == target[test_idx]))
        if conv.any() and test_idx.size
        else math.nan
    )
    hits = np.array([counts[prior_index[k.tobytes()]] if k.tobytes() in prior_index else 0
                     for k in sgd_keys], dtype=np.int64)  # fmt: skip
    log10_pf = np.full(len(sgd_keys), math.nan)
    log10_ps = math.nan
    notes: list[str] = []
    if config.nngp:
        kernel = nngp_kernel(model, x)
        sub = kernel[np.ix_(train_idx, train_idx)]
        res_s = ep_log_orthant(sub, 2.0 * target[train_idx] - 1)
        log10_ps = res_s.log10_p
        unconverged = 0
        with tracked(progress, "EP on the NNGP", len(sgd_keys)) as task:
            for i, b in enumerate(sgd_bits):
                res = ep_log_orthant(kernel, 2.0 * b - 1, tol=1e-4)
                log10_pf[i] = res.log10_p
                unconverged += not res.converged
                task.advance()
        notes.append(
            "P(f) and P(S) of P_B(f|S) = P(f)/P(S) by EP on the NNGP kernel (infinite-width"
            f" limit of the init); EP unconverged for {unconverged} functions"
        )
    log10_pb = log10_pf - log10_ps
    _csv(
        root / "sgd_functions.csv",
        ["function", "sgd_count", "log10_p_sgd", "lz", "prior_hits", "log10_p_nngp",
         "log10_p_bayes"],
        [[sgd_strings[i], int(sgd_counts[i]), float(np.log10(p_sgd[i])), float(sgd_lz[i]),
          int(hits[i]), float(log10_pf[i]), float(log10_pb[i])]
         for i in np.argsort(-sgd_counts, kind="stable")],
    )  # fmt: skip
    rho_sgd = (
        _rho(np.log10(p_sgd), log10_pb, config)
        if config.nngp and len(sgd_keys) >= 3
        else {"rho": math.nan, "p": math.nan, "n": len(sgd_keys)}
    )
    functions: list[dict[str, Any]] = []
    listed: set[bytes] = set()
    for i in order[: config.top_functions]:
        listed.add(keys[i].tobytes())
        functions.append({"function": strings[i], "prior_hits": int(counts[i]),
                          "prior_frequency": float(counts[i] / total), "sgd_count": 0,
                          "sgd_frequency": 0.0, "lz": float(lz[i])})  # fmt: skip
    for i, k in enumerate(sgd_keys):
        entry = {"function": sgd_strings[i], "prior_hits": int(hits[i]),
                 "prior_frequency": float(hits[i] / total), "sgd_count": int(sgd_counts[i]),
                 "sgd_frequency": float(p_sgd[i]), "lz": float(sgd_lz[i]),
                 "log10_p_nngp": float(log10_pf[i]), "log10_p_bayes": float(log10_pb[i])}  # fmt: skip
        if k.tobytes() in listed:
            functions[[f["function"] for f in functions].index(sgd_strings[i])] = entry
        else:
            functions.append(entry)
    target_str = bit_string(target)
    return {
        "n_bits": config.n_bits,
        "train_size": int(train_idx.size),
        "train_indices": train_idx.tolist(),
        "target": {
            "name": config.target,
            "function": target_str,
            "lz": lempel_ziv_complexity(target_str),
        },  # fmt: skip
        "prior": {
            "num_samples": total,
            "functions_seen": len(keys),
            "seen_once": int(np.sum(counts == 1)),
            "consistent_with_train": consistent,
            "log10_p_train_sampling": math.log10(consistent / total) if consistent else None,
            "log10_p_train_nngp": log10_ps,
        },
        "sgd": {
            "runs": int(conv.size),
            "converged": int(conv.sum()),
            "mean_epochs": float(sgd["epochs"][conv].mean()) if conv.any() else math.nan,
            "functions_seen": len(sgd_keys),
            "test_accuracy": test_acc,
        },
        "rho_logp_lz": rho_prior,
        "rho_psgd_pbayes": rho_sgd,
        "functions": functions,
        "notes": notes
        + [
            "functions are truth tables on all inputs (MSB-first order); prior frequencies"
            " of functions seen once sit at the floor 1/num_samples",
            "every function list and table is in prior_functions.csv / sgd_functions.csv",
        ],
    }


def write_summary_table(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, value)`` rows a front end can print."""

    def f(v: Any, spec: str = ".3f") -> str:
        return format(v, spec) if isinstance(v, float) and v == v else str(v)

    rp, rs = summary["rho_logp_lz"], summary["rho_psgd_pbayes"]
    return [
        ("prior draws", str(summary["prior"]["num_samples"])),
        ("functions seen (prior)", str(summary["prior"]["functions_seen"])),
        ("ρ(log P(f), LZ)", f"{f(rp['rho'])} (p={f(rp['p'], '.3g')}, n={rp['n']})"),
        ("SGD runs at 100% train", f"{summary['sgd']['converged']}/{summary['sgd']['runs']}"),
        ("functions seen (SGD)", str(summary["sgd"]["functions_seen"])),
        ("ρ(log P_SGD, log P_B)", f"{f(rs['rho'])} (p={f(rs['p'], '.3g')}, n={rs['n']})"),
        ("SGD test accuracy", f(summary["sgd"]["test_accuracy"])),
        ("seconds", f(summary["seconds"]["total"], ".1f")),
    ]


__all__ = [
    "BooleanConfig",
    "boolean_inputs",
    "load_config",
    "run_boolean",
    "target_function",
    "train_indices",
]
