"""Detect a checkpoint's format and load it safely.

Supported: our own bundle (``landscape.save``), a state_dict or a dict holding one
(``state_dict``, ``model_state_dict``, ``model``, Lightning's ``state_dict`` with a
``model.`` prefix, DDP's ``module.`` prefix, ``torch.compile``'s ``_orig_mod.``),
``.safetensors``, TorchScript archives, ``torch.export`` programs (``.pt2``) and, only
with ``trust=True``, whole pickled modules.

Nothing in a checkpoint is executed unless the caller trusts it: pickles are read with
``weights_only=True`` first, then (for checkpoints that also hold other Python objects,
such as Lightning hyper-parameters) with an inert unpickler that never imports or calls
what the file names (:mod:`landscape.io.inert`); a bundle's factory is looked up by name
and only landscape's own model factories are called without confirmation.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import struct
import typing
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import torch
from torch import nn

from landscape.errors import CheckpointError, ConfigError
from landscape.io.importing import resolve_object
from landscape.io.inert import find_inert, inert_load
from landscape.io.model_bundle import set_eval

BUNDLE_KEY = "landscape_bundle"
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params")
PREFIXES = ("model.", "module.", "net.", "_orig_mod.", "network.")
SAFE_FACTORY_PREFIX = "landscape."
_SAFE_FACTORY = re.compile(r"^landscape(\.[A-Za-z_]\w*)+:[A-Za-z_]\w*$")
_TRUST_HINT = "pass --trust-checkpoint only if you trust its source"
_DATA_FILES = (".npz", ".pt", ".pth")


@dataclass
class LoadedModel:
    """A freshly built module (never the caller's object) and where it came from.

    Attributes:
        module: the module, on the CPU, in eval mode.
        format: ``state_dict``, ``lightning``, ``safetensors``, ``torchscript``, ``export``,
            ``pickled_module`` or ``landscape_bundle``.
        path: the checkpoint file.
        sha256: its SHA-256.
        factory: the ``MODULE:FACTORY`` that built the architecture, if any.
        factory_kwargs: its keyword arguments.
        defaults: ``data`` / ``loss`` / ``data_kwargs`` stored in a bundle.
        untrusted_defaults: stored ``data`` / ``loss`` that name code outside landscape
            (``MODULE:FUNCTION``); not used unless the file is trusted or the user passes
            them explicitly.
        scripted: whether the module is TorchScript.
        skipped: pickled classes/functions in the file that were left unloaded (never run).
    """

    module: nn.Module
    format: str
    path: str
    sha256: str
    factory: str | None = None
    factory_kwargs: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    scripted: bool = False
    skipped: list[str] = field(default_factory=list)
    untrusted_defaults: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        """Return a JSON-ready description of the source."""
        out: dict[str, Any] = {
            "path": self.path,
            "sha256": self.sha256,
            "format": self.format,
            "factory": self.factory,
            "factory_kwargs": self.factory_kwargs,
        }
        if self.skipped:
            out["skipped_objects"] = list(self.skipped)
        return out


def file_sha256(path: Path) -> str:
    """Return the SHA-256 hex digest of a file.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mktemp()); _ = p.write_bytes(b"")
        >>> file_sha256(p)[:8]
        'e3b0c442'
    """
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_model_kwargs(text: str | dict[str, Any] | None) -> dict[str, Any]:
    """Parse ``--model-kwargs`` JSON into a dict (a dict is returned as a copy).

    Example:
        >>> parse_model_kwargs('{"width": 64}')
        {'width': 64}
    """
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        val = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--model-kwargs is not valid JSON ({exc.msg} at character {exc.pos});"
            " write it like '{\"width\": 64}' (double quotes around names)."
        ) from exc
    if not isinstance(val, dict):
        raise ConfigError("--model-kwargs must be a JSON object like '{\"width\": 64}'.")
    return val


def build_from_factory(factory: str, kwargs: dict[str, Any]) -> nn.Module:
    """Call ``MODULE:FACTORY(**kwargs)`` and check it returns a module.

    Example:
        >>> build_from_factory("torch.nn:Linear", {"in_features": 2, "out_features": 1})
        Linear(in_features=2, out_features=1, bias=True)
    """
    fn = resolve_object(factory, "--model")
    if not callable(fn):
        raise ConfigError(f"--model {factory!r} is not callable; point it at a factory function.")
    try:
        module = fn(**kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"--model {factory!r} rejected its arguments ({exc}); check --model-kwargs."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - user code can raise anything
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"--model {factory!r} failed to build the model ({type(exc).__name__}: {first});"
            " check --model-kwargs."
        ) from exc
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"--model {factory!r} returned {type(module).__name__}, not a torch.nn.Module."
        )
    return module


def is_landscape_factory(factory: str) -> bool:
    """Whether ``factory`` names one of landscape's own model factories.

    Only such factories are called from a bundle without the caller's confirmation: the
    name must be ``landscape.<modules>:<name>`` (no file paths), and resolve to an
    ``nn.Module`` subclass or a landscape function annotated to return one.

    Example:
        >>> is_landscape_factory("landscape.models:mlp")
        True
        >>> is_landscape_factory("subprocess:run")
        False
    """
    if not _SAFE_FACTORY.match(factory):
        return False
    try:
        fn = resolve_object(factory, "bundle factory")
    except ConfigError:
        return False
    if isinstance(fn, type):
        return issubclass(fn, nn.Module) and fn.__module__.startswith(SAFE_FACTORY_PREFIX)
    if not callable(fn) or not getattr(fn, "__module__", "").startswith(SAFE_FACTORY_PREFIX):
        return False
    try:
        ret = typing.get_type_hints(fn).get("return")
    except Exception:  # noqa: BLE001 - unresolvable annotations mean "not ours"
        return False
    return isinstance(ret, type) and issubclass(ret, nn.Module)


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _looks_like_safetensors(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 2 <= n <= path.stat().st_size - 8


def _unknown_format(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a format landscape reads (torch .pt/.pth/.ckpt, .safetensors,"
        " TorchScript, torch.export .pt2); re-save the model with"
        " torch.save(model.state_dict(), ...)."
    )


def detect_format(path: Path) -> str:
    """Return ``safetensors``, ``torchscript``, ``export``, ``aoti`` or ``torch`` by content.

    Raises:
        CheckpointError: if the file is none of these.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mktemp(suffix=".pt"))
        >>> torch.save({"w": torch.ones(1)}, p)
        >>> detect_format(p)
        'torch'
    """
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty; the checkpoint was not written completely.")
    names = _zip_names(path)
    if names:
        stems = {n.split("/", 1)[1] if "/" in n else n for n in names}
        if any("aotinductor" in s for s in stems):
            return "aoti"
        if any(s.startswith("code/") for s in stems) and "constants.pkl" in stems:
            return "torchscript"
        if (
            "archive_format" in stems
            or any(s.startswith("models/") for s in stems)
            or any("serialized_exported_program" in s for s in stems)
        ):
            return "export"
        if "data.pkl" in stems:
            return "torch"
        raise _unknown_format(path)
    if path.suffix.lower() == ".safetensors" or _looks_like_safetensors(path):
        return "safetensors"
    with path.open("rb") as f:
        head = f.read(2)
    # Legacy (pre-1.6) torch.save files are a pickle protocol 2+ stream.
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch"
    raise _unknown_format(path)


def _is_tensor_dict(obj: Any) -> TypeGuard[dict[str, torch.Tensor]]:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) for k in obj)
        and all(type(v) in (torch.Tensor, nn.Parameter) for v in obj.values())
    )


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    """Find a state_dict in a loaded checkpoint object (a dict of tensors, or under a key).

    Example:
        >>> sd = {"w": torch.ones(1)}
        >>> extract_state_dict({"epoch": 3, "model_state_dict": sd}) is sd
        True
    """
    if _is_tensor_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            inner = obj.get(key)
            if _is_tensor_dict(inner):
                return inner
    return None


def _strip_prefix(sd: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes (``model.``, ``module.``, ``_orig_mod.``...) to match ``expected``.

    Prefixes may be nested (Lightning around DDP around ``torch.compile``); at each step the
    prefix that matches the most expected keys is stripped, and keys outside it (a
    Lightning module's metrics or loss buffers) are dropped.
    """
    if set(sd) == expected:
        return sd
    best, best_hits = sd, len(set(sd) & expected)
    frontier = [sd]
    for _ in range(3):
        nxt = []
        for cur in frontier:
            for p in PREFIXES:
                stripped = {k[len(p) :]: v for k, v in cur.items() if k.startswith(p)}
                if not stripped:
                    continue
                nxt.append(stripped)
                hits = len(set(stripped) & expected)
                if hits > best_hits:
                    best, best_hits = stripped, hits
        frontier = nxt
    return best


def load_state_into(module: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load ``sd`` into ``module`` strictly, with a readable error listing mismatches.

    Example:
        >>> m = nn.Linear(2, 1)
        >>> load_state_into(m, {"module." + k: v for k, v in nn.Linear(2, 1).state_dict().items()},
        ...                 "ddp.pt")
    """
    expected = set(module.state_dict().keys())
    sd = _strip_prefix(sd, expected)
    missing = sorted(expected - set(sd))
    unexpected = sorted(set(sd) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(
            f"{source}: keys do not match the model: {'; '.join(parts)};"
            " check --model and --model-kwargs."
        )
    own = module.state_dict()
    bad = [k for k in sorted(sd) if tuple(sd[k].shape) != tuple(own[k].shape)]
    if bad:
        eg = "; ".join(
            f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in bad[:3]
        )
        raise CheckpointError(
            f"{source}: {len(bad)} tensor shape(s) differ from the model (e.g. {eg});"
            " check --model-kwargs."
        )
    module.load_state_dict(sd, strict=True)


def check_finite(module: nn.Module, source: str) -> None:
    """Refuse weights holding NaN or Inf, naming the tensors.

    Example:
        >>> check_finite(nn.Linear(2, 1), "ok.pt")
    """
    bad = [
        name
        for name, t in module.state_dict().items()
        if (t.is_floating_point() or t.is_complex()) and not torch.isfinite(t).all()
    ]
    if bad:
        raise CheckpointError(
            f"{source}: NaN/Inf in {len(bad)} tensor(s): {', '.join(bad[:5])};"
            " the checkpoint is broken, use an earlier one."
        )


def _unsafe_globals(path: Path) -> list[str]:
    fn = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if fn is None:
        return []
    try:
        return list(fn(str(path)))
    except Exception:  # noqa: BLE001 - only used to improve a message
        return []


def _torch_load(path: Path, trust: bool) -> tuple[Any, list[str]]:
    """Load a torch pickle: weights only, else inert (untrusted) or full (trusted).

    Returns:
        The object and the names of pickled classes/functions that were not loaded.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True), []
    except pickle.UnpicklingError:
        pass
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"cannot read {path} ({type(exc).__name__}); is it a complete torch file?"
            " Re-save it with torch.save(model.state_dict(), ...)."
        ) from exc
    if not trust:
        try:
            return inert_load(path)
        except Exception as exc:  # noqa: BLE001
            names = _unsafe_globals(path)
            what = f" ({', '.join(names[:3])})" if names else ""
            raise CheckpointError(
                f"{path} holds pickled Python objects{what} that would run code when"
                f" loaded; {_TRUST_HINT}."
            ) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False), []
    except Exception as exc:  # noqa: BLE001
        # The classes may simply not be installed (a Lightning module, a callback): the
        # weights can still be read without them.
        try:
            obj, skipped = inert_load(path)
        except Exception:  # noqa: BLE001
            obj = None
        if obj is not None and extract_state_dict(obj) is not None:
            return obj, skipped
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"cannot unpickle {path} ({type(exc).__name__}: {first[:160]}); the classes it"
            " needs must be importable (add their folder to PYTHONPATH)."
        ) from exc


def load_model(
    path: str | Path,
    *,
    model: str | None = None,
    model_kwargs: dict[str, Any] | str | None = None,
    trust: bool = False,
) -> LoadedModel:
    """Load a checkpoint into a fresh module on the CPU, in eval mode.

    Args:
        path: checkpoint file.
        model: ``MODULE:FACTORY`` or ``file.py:FACTORY`` building the architecture, needed
            for plain state_dicts and safetensors (ignored for TorchScript, torch.export
            and pickled modules, which carry their architecture).
        model_kwargs: keyword arguments of the factory (a dict or a JSON string).
        trust: allow unpickling arbitrary objects (runs code from the file).

    Returns:
        The :class:`LoadedModel`.

    Raises:
        CheckpointError: on a missing, unknown, untrusted or mismatched checkpoint.
        ConfigError: on a factory that cannot be imported or called.

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> p = tempfile.mktemp(suffix=".pt")
        >>> torch.save(nn.Linear(2, 1).state_dict(), p)
        >>> load_model(p, model="torch.nn:Linear", model_kwargs={"in_features": 2,
        ...            "out_features": 1}).format
        'state_dict'
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path.")
    if p.is_dir():
        raise CheckpointError(f"{path} is a directory; give the checkpoint file inside it.")
    kwargs = parse_model_kwargs(model_kwargs)
    fmt = detect_format(p)
    sha = file_sha256(p)
    src = str(p)

    def need_model(kind: str) -> nn.Module:
        if model is None:
            raise CheckpointError(
                f"{path} is a {kind} without the architecture; pass --model MODULE:FACTORY"
                " (and --model-kwargs if the factory needs arguments)."
            )
        return build_from_factory(model, kwargs)

    if fmt == "aoti":
        raise CheckpointError(
            f"{path} is an AOTInductor package (compiled code, no differentiable graph);"
            " save the program with torch.export.save instead."
        )
    if fmt == "safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(p), device="cpu")
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"cannot read {path} as safetensors ({exc}); re-save it with"
                " safetensors.torch.save_file."
            ) from exc
        module = need_model("safetensors file")
        load_state_into(module, sd, src)
        out = LoadedModel(module, "safetensors", src, sha, model, kwargs)
    elif fmt == "torchscript":
        try:
            with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(p), map_location="cpu")
        except Exception as exc:  # noqa: BLE001
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(
                f"cannot load TorchScript archive {path} ({first[:160]}); re-save it with"
                " torch.jit.save using this torch version."
            ) from exc
        out = LoadedModel(module, "torchscript", src, sha, scripted=True)
    elif fmt == "export":
        from landscape.io.exported import load_exported

        out = LoadedModel(load_exported(p, trust=trust), "export", src, sha)
    else:
        obj, skipped = _torch_load(p, trust)
        if isinstance(obj, nn.Module):
            out = LoadedModel(obj, "pickled_module", src, sha)
        elif isinstance(obj, dict) and obj.get(BUNDLE_KEY):
            out = _from_bundle(obj, p, sha, model, kwargs, trust)
        else:
            out = _from_checkpoint_object(obj, p, sha, need_model, model, kwargs, skipped)
    set_eval(out.module)
    check_finite(out.module, src)
    return out


def _from_checkpoint_object(
    obj: Any,
    p: Path,
    sha: str,
    need_model: Any,
    model: str | None,
    kwargs: dict[str, Any],
    skipped: list[str],
) -> LoadedModel:
    src = str(p)
    sd = extract_state_dict(obj)
    if sd is None:
        inner = obj.get("model") if isinstance(obj, dict) else None
        if isinstance(inner, nn.Module):
            return LoadedModel(inner, "pickled_module", src, sha)
        inert = find_inert(obj)
        if inert:
            raise CheckpointError(
                f"{p} holds pickled Python objects ({', '.join(inert[:3])}) that would run"
                f" code when loaded; {_TRUST_HINT}, or save model.state_dict() instead."
            )
        keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else None
        raise CheckpointError(
            f"{p} holds no state_dict ("
            + (f"top-level keys: {keys}" if keys is not None else f"a {type(obj).__name__}")
            + "); save model.state_dict() or a dict with a 'state_dict' key."
        )
    fmt_name = (
        "lightning"
        if isinstance(obj, dict) and "pytorch-lightning_version" in obj
        else "state_dict"
    )
    module = need_model("state_dict")
    load_state_into(module, {k: v.detach() for k, v in sd.items()}, src)
    return LoadedModel(module, fmt_name, src, sha, model, kwargs, skipped=list(skipped))


def _from_bundle(
    obj: dict[str, Any],
    p: Path,
    sha: str,
    model: str | None,
    kwargs: dict[str, Any],
    trust: bool,
) -> LoadedModel:
    stored = obj.get("factory")
    stored_kwargs = obj.get("factory_kwargs") or {}
    if not isinstance(stored_kwargs, dict):
        raise CheckpointError(f"{p} is a landscape bundle with malformed factory_kwargs.")
    factory = model or stored
    if model is None or (model == stored and not kwargs):
        fkwargs = dict(stored_kwargs)
    else:
        fkwargs = kwargs
    if not isinstance(factory, str):
        raise CheckpointError(f"{p} is a landscape bundle without a factory; pass --model.")
    if model is None and not trust and not is_landscape_factory(factory):
        raise CheckpointError(
            f"{p} names the factory {factory!r}, which is not one of landscape's model"
            f" factories; pass --model {factory} to confirm it, or --trust-checkpoint."
        )
    sd = obj.get("state_dict")
    if not _is_tensor_dict(sd):
        raise CheckpointError(f"{p} is a landscape bundle without weights; re-save it.")
    module = build_from_factory(factory, fkwargs)
    load_state_into(module, sd, str(p))
    defaults: dict[str, Any] = {}
    held: dict[str, Any] = {}
    for k in ("data", "loss", "data_kwargs"):
        v = obj.get(k)
        if v is None:
            continue
        # "MODULE:FUNCTION" data/loss would import and call code named by the file
        code_ref = isinstance(v, str) and ":" in v and Path(v).suffix.lower() not in _DATA_FILES
        if code_ref and not trust and not _SAFE_FACTORY.match(v):
            held[k] = v
        else:
            defaults[k] = v
    return LoadedModel(
        module, "landscape_bundle", str(p), sha, factory, fkwargs, defaults, untrusted_defaults=held
    )
