"""Detect a checkpoint's format and load it safely.

Supported: our own bundle (``landscape.save``), a state_dict or a dict holding one
(``state_dict``, ``model_state_dict``, ``model``, Lightning's ``state_dict`` with a
``model.`` prefix, DDP's ``module.`` prefix), ``.safetensors``, TorchScript archives,
``torch.export`` programs (``.pt2``) and, only with ``trust=True``, whole pickled modules.
Nothing in a checkpoint is executed unless the caller trusts it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.errors import CheckpointError, ConfigError
from landscape.io.importing import resolve_object

BUNDLE_KEY = "landscape_bundle"
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params")
PREFIXES = ("model.", "module.", "net.", "_orig_mod.")
SAFE_FACTORY_PREFIX = "landscape."


@dataclass
class LoadedModel:
    """A freshly built module (never the caller's object) and where it came from."""

    module: nn.Module
    format: str
    path: str
    sha256: str
    factory: str | None = None
    factory_kwargs: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    scripted: bool = False

    def provenance(self) -> dict[str, Any]:
        """Return a JSON-ready description of the source."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "format": self.format,
            "factory": self.factory,
            "factory_kwargs": self.factory_kwargs,
        }


def file_sha256(path: Path) -> str:
    """Return the SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_model_kwargs(text: str | None) -> dict[str, Any]:
    """Parse ``--model-kwargs`` JSON into a dict.

    Example:
        >>> parse_model_kwargs('{"width": 64}')
        {'width': 64}
    """
    if not text:
        return {}
    try:
        val = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--model-kwargs is not valid JSON ({exc.msg}); write it like '{{\"width\": 64}}'."
        ) from exc
    if not isinstance(val, dict):
        raise ConfigError("--model-kwargs must be a JSON object like '{\"width\": 64}'.")
    return val


def build_from_factory(factory: str, kwargs: dict[str, Any]) -> nn.Module:
    """Call ``MODULE:FACTORY(**kwargs)`` and check it returns a module."""
    fn = resolve_object(factory, "--model")
    if not callable(fn):
        raise ConfigError(f"--model {factory!r} is not callable; point it at a factory function.")
    try:
        module = fn(**kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"--model {factory!r} rejected its arguments ({exc}); check --model-kwargs."
        ) from exc
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"--model {factory!r} returned {type(module).__name__}, not a torch.nn.Module."
        )
    return module


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except zipfile.BadZipFile:
        return []


def _detect(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    names = _zip_names(path)
    if names:
        stems = {n.split("/", 1)[1] if "/" in n else n for n in names}
        if any(s.startswith("code/") for s in stems) and "constants.pkl" in stems:
            return "torchscript"
        if (
            suffix == ".pt2"
            or any(s.startswith("models/") for s in stems)
            or any("serialized_exported_program" in s for s in stems)
        ):
            return "export"
        return "torch"
    if suffix == ".pt2":
        return "export"
    with path.open("rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80":
        return "torch"
    raise CheckpointError(
        f"{path} is not a format landscape reads (torch .pt/.pth, .safetensors, TorchScript,"
        " torch.export .pt2); re-save the model with torch.save(model.state_dict(), ...)."
    )


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    """Find a state_dict in a loaded checkpoint object (a dict of tensors, or under a key)."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            inner = obj.get(key)
            if (
                isinstance(inner, dict)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                return inner
    return None


def _strip_prefix(sd: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    if set(sd) & expected:
        return sd
    for p in PREFIXES:
        stripped = {k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}
        if stripped and set(stripped) & expected:
            return stripped
    return sd


def load_state_into(module: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load ``sd`` into ``module`` strictly, with a readable error listing mismatches."""
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
    bad = [k for k in sd if tuple(sd[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{source}: {len(bad)} tensor shapes differ from the model (e.g. {k}:"
            f" checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)});"
            " check --model-kwargs."
        )
    module.load_state_dict(sd, strict=True)


def check_finite(module: nn.Module, source: str) -> None:
    """Refuse weights holding NaN or Inf, naming the tensors."""
    bad = [
        name
        for name, t in module.state_dict().items()
        if t.is_floating_point() and not torch.isfinite(t).all()
    ]
    if bad:
        raise CheckpointError(
            f"{source}: NaN/Inf in {len(bad)} tensor(s): {', '.join(bad[:5])};"
            " the checkpoint is broken, use an earlier one."
        )


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            raise CheckpointError(
                f"{path} holds pickled Python objects that would run code when loaded;"
                " pass --trust-checkpoint only if you trust its source."
            ) from exc
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"cannot read {path} ({type(exc).__name__}); is it a torch file?"
        ) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"cannot unpickle {path} ({type(exc).__name__}: {exc}); the classes it needs"
            " must be importable."
        ) from exc


def load_model(
    path: str | Path,
    *,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    trust: bool = False,
) -> LoadedModel:
    """Load a checkpoint into a fresh module on the CPU.

    Args:
        path: checkpoint file.
        model: ``MODULE:FACTORY`` or ``file.py:FACTORY`` building the architecture, needed
            for plain state_dicts and safetensors.
        model_kwargs: keyword arguments of the factory.
        trust: allow unpickling arbitrary objects (runs code from the file).

    Returns:
        The :class:`LoadedModel`.

    Raises:
        CheckpointError: on a missing, unknown, untrusted or mismatched checkpoint.

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
    kwargs = dict(model_kwargs or {})
    fmt = _detect(p)
    sha = file_sha256(p)
    src = str(p)

    def need_model(kind: str) -> nn.Module:
        if model is None:
            raise CheckpointError(
                f"{path} is a {kind} without the architecture; pass --model MODULE:FACTORY"
                " (and --model-kwargs if the factory needs arguments)."
            )
        return build_from_factory(model, kwargs)

    if fmt == "safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(p), device="cpu")
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"cannot read {path} as safetensors ({exc}).") from exc
        module = need_model("safetensors file")
        load_state_into(module, sd, src)
        out = LoadedModel(module, "safetensors", src, sha, model, kwargs)
    elif fmt == "torchscript":
        try:
            module = torch.jit.load(str(p), map_location="cpu")
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"cannot load TorchScript archive {path} ({exc}).") from exc
        out = LoadedModel(module, "torchscript", src, sha, scripted=True)
    elif fmt == "export":
        try:
            module = torch.export.load(str(p)).module()
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"cannot load torch.export program {path} ({exc}).") from exc
        out = LoadedModel(module, "export", src, sha)
    else:
        obj = _torch_load(p, trust)
        if isinstance(obj, nn.Module):
            out = LoadedModel(obj, "pickled_module", src, sha)
        elif isinstance(obj, dict) and obj.get(BUNDLE_KEY):
            out = _from_bundle(obj, p, sha, model, kwargs, trust)
        else:
            sd = extract_state_dict(obj)
            if sd is None:
                inner = obj.get("model") if isinstance(obj, dict) else None
                if isinstance(inner, nn.Module):
                    out = LoadedModel(inner, "pickled_module", src, sha)
                else:
                    raise CheckpointError(
                        f"{path} holds no state_dict (top-level keys:"
                        f" {', '.join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__});"
                        " save model.state_dict() or a dict with a 'state_dict' key."
                    )
            else:
                fmt_name = (
                    "lightning"
                    if isinstance(obj, dict) and "pytorch-lightning_version" in obj
                    else "state_dict"
                )
                module = need_model("state_dict")
                load_state_into(module, sd, src)
                out = LoadedModel(module, fmt_name, src, sha, model, kwargs)
    check_finite(out.module, src)
    return out


def _from_bundle(
    obj: dict[str, Any],
    p: Path,
    sha: str,
    model: str | None,
    kwargs: dict[str, Any],
    trust: bool,
) -> LoadedModel:
    factory = model or obj.get("factory")
    fkwargs = kwargs if model else dict(obj.get("factory_kwargs") or {})
    if not isinstance(factory, str):
        raise CheckpointError(f"{p} is a landscape bundle without a factory; pass --model.")
    if model is None and not trust and not factory.startswith(SAFE_FACTORY_PREFIX):
        raise CheckpointError(
            f"{p} names the factory {factory!r} outside landscape; pass --model {factory}"
            " to confirm it, or --trust-checkpoint."
        )
    module = build_from_factory(factory, fkwargs)
    load_state_into(module, obj["state_dict"], str(p))
    defaults = {k: obj[k] for k in ("data", "loss", "data_kwargs") if obj.get(k) is not None}
    return LoadedModel(module, "landscape_bundle", str(p), sha, factory, fkwargs, defaults)
