"""The benchmark suite: every benchmark, one JSON line per case.

``python -m bench`` runs everything for this machine; ``--quick`` shrinks every size so
the whole suite takes under a minute (CI runs it so the benchmarks cannot rot);
``--cases hvp,top5`` picks cases; ``--list`` names them.

Cases:

* ``hvp``, ``top5``, ``trace``, ``surface``, ``surface_fresh`` (:mod:`bench.cases`): ours against PyHessian,
  loss-landscapes and a plain loop on (a) the digits CNN on the CPU and (b) ResNet-20/56
  on CIFAR-shaped data on a GPU (tiny ResNet-20 on the CPU in ``--quick`` without GPU);
* ``hessian_vs_pyhessian``, ``surface_vs_anchors``: the Hessian and surface benchmarks of
  their own issues, run as they are (``missing`` until they exist);
* ``memory`` (:mod:`bench.memory`): HVP peak memory vs forward+backward per strategy;
* ``scaling`` (:mod:`bench.scaling`): seconds vs grid points, data size and parameters.

Every line carries ``case, status, what, size, device, ours_s, anchor, anchor_s, ratio,
disagreement`` (see :mod:`bench.suite`). The exit status is 1 when a case errored.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from bench.suite import KEYS, emit, record

ROOT = Path(__file__).resolve().parents[1]
SUITE_CASES = ("hvp", "top5", "trace", "surface", "surface_fresh")
EXTERNAL = ("hessian_vs_pyhessian", "surface_vs_anchors")
LOCAL_MODULES = ("memory", "scaling", "transformer", "scan_resnet", "trajectory_vs_scan")
ALL_CASES = (*SUITE_CASES, *EXTERNAL, *LOCAL_MODULES)
EXTERNAL_TIMEOUT_S = 3600

_ALIASES = {
    "what": ("what", "name", "benchmark", "task", "quantity"),
    "size": ("size", "problem", "shape", "params"),
    "device": ("device",),
    "ours_s": (
        "ours_s",
        "ours_seconds",
        "our_seconds",
        "seconds_ours",
        "ours_time",
        "time_ours",
        "landscape_s",
        "landscape_seconds",
        "seconds",
    ),
    "anchor": ("anchor", "baseline", "against", "reference"),
    "anchor_s": (
        "anchor_s",
        "anchor_seconds",
        "seconds_anchor",
        "anchor_time",
        "time_anchor",
        "baseline_s",
        "baseline_seconds",
        "pyhessian_s",
        "pyhessian_seconds",
        "theirs_s",
        "theirs_seconds",
    ),
    "ratio": ("ratio", "speedup", "speed_up"),
    "disagreement": (
        "disagreement",
        "rel_diff",
        "rel_err",
        "rel_error",
        "relative_error",
        "max_rel_diff",
        "max_abs_diff",
        "abs_diff",
        "error",
    ),
}


def normalize(raw: dict[str, Any], case: str, device: str) -> dict[str, Any]:
    """Map another benchmark's JSON record onto the suite's keys (its own keys kept)."""
    rec = dict(raw)
    for key, names in _ALIASES.items():
        if rec.get(key) is not None:
            continue
        for name in names:
            if raw.get(name) is not None:
                rec[key] = raw[name]
                break
    rec.setdefault("device", device)
    status = rec.get("status", "ok")
    base = record(case, **{k: v for k, v in rec.items() if k not in ("case", "status")})
    base["status"] = status
    if raw.get("case") not in (None, case):
        base["subcase"] = raw["case"]
    return base


def _missing(case: str, module: str, device: str) -> dict[str, Any]:
    return record(case, status="missing", missing=module, device=device)


def _error(case: str, exc: BaseException, device: str) -> dict[str, Any]:
    lines = traceback.format_exception_only(type(exc), exc)
    return record(case, status="error", error=lines[-1].strip()[:500], device=device)


def _missing_module(exc: ImportError) -> str | None:
    name = getattr(exc, "name", None) or ""
    if name.startswith(("landscape", "bench")):
        return name
    msg = str(exc)
    if "landscape." in msg or "bench." in msg:
        return msg
    return None


def _call_cases(fn: Callable[..., Any], quick: bool, device: str | None) -> Iterable[dict]:
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {}
    if "quick" in params:
        kwargs["quick"] = quick
    if "device" in params and device is not None:
        kwargs["device"] = device
    return fn(**kwargs)


# Arguments for the other issues' scripts, used only when the script mentions the flag.
EXTERNAL_ARGS: dict[str, dict[str, list[list[str]]]] = {
    "hessian_vs_pyhessian": {
        "quick": [["--quick"]],
        "full": [[]],
        "gpu": [["--device", "cuda"]],
    },
    "surface_vs_anchors": {
        "quick": [["--quick"], ["--steps", "5"], ["--repeats", "1"], ["--epochs", "1"]],
        "full": [[]],
        "gpu": [["--device", "cuda", "--model", "resnet", "--bf16"]],
    },
}


def _flags(groups: list[list[str]], source: str) -> list[str]:
    """Concatenate the groups whose flag (first item) appears in the script's source."""
    out: list[str] = []
    for g in groups:
        if not g or g[0] in source:
            out += g
    return out


def parse_json_objects(text: str) -> list[Any]:
    """Every top-level JSON value in ``text`` (JSON lines, or indented objects)."""
    dec = json.JSONDecoder()
    out, i = [], 0
    while True:
        i = min((j for j in (text.find("{", i), text.find("[", i)) if j >= 0), default=-1)
        if i < 0:
            return out
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        out.append(obj)
        i = end


def expand(raw: Any, case: str, device: str) -> list[dict[str, Any]]:
    """Turn one benchmark output into suite records.

    A list is expanded item by item; a dict with ``seconds_total: {ours, <anchor>...}``
    (one object for several anchors) gives one record per anchor, with the disagreement
    found in ``max_rel_disagreement``/``disagreement`` under a key naming that anchor.
    """
    if isinstance(raw, list):
        return [r for item in raw for r in expand(item, case, device)]
    if not isinstance(raw, dict):
        return []
    if isinstance(raw.get("cases"), list):
        return expand(raw["cases"], case, device)
    totals = raw.get("seconds_total")
    if isinstance(totals, dict) and "ours" in totals:
        dis = raw.get("max_rel_disagreement") or raw.get("disagreement") or {}
        dis = dis if isinstance(dis, dict) else {}
        size_bits = [
            str(raw[k])
            for k in ("model", "num_samples", "num_params", "grid")
            if raw.get(k) is not None
        ]
        recs = []
        for anchor, secs in totals.items():
            if anchor == "ours":
                continue
            d = dis.get(f"ours_vs_{anchor}")
            if d is None:
                d = next((v for k, v in dis.items() if anchor in k and "ours" in k), None)
            extra = {k: v for k, v in raw.items() if not isinstance(v, dict | list)}
            recs.append(
                normalize(
                    {
                        **extra,
                        "what": raw.get("benchmark") or raw.get("what") or case,
                        "size": ", ".join(size_bits) or None,
                        "device": raw.get("device", device),
                        "ours_s": totals["ours"],
                        "anchor": anchor,
                        "anchor_s": secs,
                        "ratio": None,
                        "disagreement": d,
                        "disagreements": dis or None,
                    },
                    case,
                    device,
                )
            )
        return recs
    return [normalize(raw, case, device)]


def run_external(name: str, quick: bool, device: str | None) -> list[dict[str, Any]]:
    """Run ``bench.<name>``: its ``run_cases`` in process, else its CLI in a subprocess."""
    gpu = torch.cuda.is_available() and device != "cpu"
    dev = device or ("cuda" if gpu else "cpu")
    modname = f"bench.{name}"
    try:
        mod = importlib.import_module(modname)
    except ImportError as exc:
        missing = _missing_module(exc)
        if missing is None:
            raise
        return [_missing(name, missing, dev)]
    fn = getattr(mod, "run_cases", None)
    if callable(fn):
        return expand(list(_call_cases(fn, quick, device)), name, dev)
    source = Path(mod.__file__).read_text() if mod.__file__ else ""
    spec = EXTERNAL_ARGS.get(name, {})
    runs = [_flags(spec.get("quick" if quick else "full", [[]]), source)]
    if gpu and not quick:
        runs.append(_flags(spec.get("gpu", []), source))
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    out: list[dict[str, Any]] = []
    for args in runs:
        proc = subprocess.run(
            [sys.executable, "-m", modname, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=EXTERNAL_TIMEOUT_S,
            env=env,
        )
        recs = [r for obj in parse_json_objects(proc.stdout) for r in expand(obj, name, dev)]
        for r in recs:
            r["args"] = " ".join(args)
        out += recs
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            out.append(
                record(name, status="error", error=tail[:500], device=dev, args=" ".join(args))
            )
        elif not recs:
            out.append(record(name, status="error", error="printed no JSON", device=dev))
    return out


def run_case(name: str, quick: bool, device: str | None) -> list[dict[str, Any]]:
    """Run one case and return its records (errors become ``error`` records)."""
    gpu = torch.cuda.is_available() and device != "cpu"
    dev_label = device or ("cuda" if gpu else "cpu")
    try:
        if name in SUITE_CASES:
            from bench import cases

            recs: list[dict[str, Any]] = []
            for setup in cases.setups_for(quick, gpu):
                dev = device or cases.device_for(setup, gpu)
                try:
                    recs += cases.CASES[name](setup, quick, dev)
                except ImportError as exc:
                    missing = _missing_module(exc)
                    if missing is None:
                        raise
                    recs.append(_missing(name, missing, dev) | {"size": setup})
                    break
                except Exception as exc:  # noqa: BLE001
                    recs.append(_error(name, exc, dev) | {"size": setup})
            return recs
        if name in EXTERNAL:
            return run_external(name, quick, device)
        if name in LOCAL_MODULES:
            mod = importlib.import_module(f"bench.{name}")
            return [
                normalize(r, name, dev_label) for r in _call_cases(mod.run_cases, quick, device)
            ]
    except ImportError as exc:
        missing = _missing_module(exc)
        if missing is None:
            return [_error(name, exc, dev_label)]
        return [_missing(name, missing, dev_label)]
    except Exception as exc:  # noqa: BLE001
        return [_error(name, exc, dev_label)]
    return [record(name, status="error", error=f"unknown case; use {', '.join(ALL_CASES)}")]


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print one JSON line per result; return 1 if a case errored."""
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run for CI")
    ap.add_argument(
        "--cases", default=None, help=f"comma-separated subset of {', '.join(ALL_CASES)}"
    )
    ap.add_argument("--device", default=None, help="force a device (default: by setup)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 with --quick, else torch's default)",
    )
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)
    threads = args.threads if args.threads is not None else (1 if args.quick else 0)
    if threads > 0:
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # for subprocess benchmarks
    if args.list:
        for c in ALL_CASES:
            print(c)
        return 0
    names = [c.strip() for c in args.cases.split(",") if c.strip()] if args.cases else ALL_CASES
    unknown = [c for c in names if c not in ALL_CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; use {', '.join(ALL_CASES)}")
    failed = False
    t0 = time.perf_counter()
    for name in names:
        for rec in run_case(name, args.quick, args.device):
            failed |= rec.get("status") == "error"
            emit(rec)
    sys.stderr.write(f"bench: {len(names)} case(s) in {time.perf_counter() - t0:.1f} s\n")
    return 1 if failed else 0


__all__ = ["ALL_CASES", "KEYS", "main", "normalize", "run_case"]
