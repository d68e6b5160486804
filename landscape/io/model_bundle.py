"""``ModelBundle``: a private copy of the model with its data, loss, device and dtype."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from landscape.errors import ConfigError, DataError
from landscape.io.data import DataSource
from landscape.io.losses import LossSpec, resolve_loss

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def parse_dtype(name: str | None) -> torch.dtype | None:
    """Map ``float32``/``float64``/... to a torch dtype (``None`` stays ``None``)."""
    if name is None:
        return None
    key = name.lower().replace("torch.", "")
    if key not in _DTYPES:
        raise ConfigError(f"unknown --dtype {name!r}; use one of {', '.join(_DTYPES)}.")
    return _DTYPES[key]


def parse_device(name: str | None) -> torch.device | None:
    """Parse ``--device`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``); ``None`` means infer."""
    if name is None:
        return None
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown --device {name!r}; use cpu, cuda or cuda:N.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu.")
    return dev


def set_eval(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode (also ``torch.export`` modules, whose ``eval`` raises).

    Example:
        >>> set_eval(nn.Dropout()).training
        False
    """
    try:
        module.eval()
    except NotImplementedError:  # torch.export modules: the traced mode is fixed anyway
        for m in module.modules():
            object.__setattr__(m, "training", False)
    return module


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside ``torch.compile``, DataParallel and DDP wrappers.

    Example:
        >>> lin = nn.Linear(2, 2)
        >>> unwrap(nn.DataParallel(lin)) is lin
        True
    """
    for _ in range(4):
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if isinstance(inner, nn.Module) and type(model).__name__ == "OptimizedModule":
            model = inner
            continue
        if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
            continue
        break
    return model


def logits_of(out: Any) -> Any:
    """The logits of a model output: a tensor as is, ``.logits``, ``["logits"]`` or ``[0]``.

    Hugging Face style outputs (any object with a tensor ``logits`` attribute), dicts with
    ``"logits"`` and tuples/lists (first element) are unwrapped; anything else is returned
    unchanged.

    Example:
        >>> logits_of((torch.ones(2, 3), "cache")).shape
        torch.Size([2, 3])
    """
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return out


def call_model(model: nn.Module, x: torch.Tensor, data: DataSource) -> Any:
    """``model(x)``, or ``model(input_ids=x[:, 0], ...)`` for keyed data; logits out.

    Example:
        >>> d = DataSource("d", torch.ones(2, 1, 3, dtype=torch.long), torch.ones(2, 3),
        ...                input_keys=("input", ), input_dtypes=(torch.float32,))
        >>> call_model(nn.Identity(), d.x_train, d).shape
        torch.Size([2, 3])
    """
    if not data.keyed:
        return logits_of(model(x))
    kw = {
        k: x[:, i].to(dt)
        for i, (k, dt) in enumerate(zip(data.input_keys, data.input_dtypes, strict=True))
    }
    return logits_of(model(**kw))


def _adapted_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``forward`` of an adapted private copy: keyed inputs as keywords, logits out."""
    keys, dtypes = self.__dict__["_landscape_inputs"]
    forward = type(self).forward
    if keys and len(args) == 1 and not kwargs:
        x = args[0]
        kw = {k: x[:, i].to(dt) for i, (k, dt) in enumerate(zip(keys, dtypes, strict=True))}
        return logits_of(forward(self, **kw))
    return logits_of(forward(self, *args, **kwargs))


def adapt_module(module: nn.Module, data: DataSource) -> None:
    """Make a private copy take the engine's one input tensor and return its logits.

    With keyed data (``input_ids`` ...) the stacked input ``x`` of shape
    ``(batch, keys, seq)`` is passed as ``module(input_ids=x[:, 0], ...)``; outputs are
    unwrapped with :func:`logits_of`. Only the copy's instance ``forward`` is set (deep
    copies keep it, bound to the copy); its class and parameter names are unchanged.

    Example:
        >>> m = nn.Identity()
        >>> adapt_module(m, DataSource("d", torch.ones(2, 1), torch.ones(2)))
        >>> m(torch.ones(2, 1)).shape
        torch.Size([2, 1])
    """
    import types

    module.__dict__["_landscape_inputs"] = (data.input_keys, data.input_dtypes)
    module.__dict__["forward"] = types.MethodType(_adapted_forward, module)


def _module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


@dataclass
class ModelBundle:
    """Everything needed to evaluate a loss landscape.

    The module is a private deep copy in eval mode: nothing done through the bundle
    touches the caller's model.

    Attributes:
        module: the private copy, on ``device`` in ``dtype``, in eval mode.
        data: the data source (kept where it is; chunks are moved to ``device``).
        loss: the loss specification.
        device: where the model runs.
        dtype: floating dtype of parameters and inputs.
        provenance: file hash, format, factory and so on.
        scripted: whether the module is TorchScript (``functional_call`` rejects it; the
            engine sets its parameters to views of θ per call instead).
    """

    module: nn.Module
    data: DataSource
    loss: LossSpec
    device: torch.device
    dtype: torch.dtype
    provenance: dict[str, Any] = field(default_factory=dict)
    scripted: bool = False

    @classmethod
    def from_module(
        cls,
        model: nn.Module,
        data: DataSource,
        loss: LossSpec | str | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        provenance: dict[str, Any] | None = None,
        scripted: bool | None = None,
        check: bool = True,
    ) -> ModelBundle:
        """Build a bundle around a private copy of ``model``.

        Args:
            model: the user's module (not modified).
            data: data source.
            loss: a :class:`LossSpec`, a loss name, or ``None`` to infer from the targets
                (``next_token`` for token data).
            device: override of the device (default: the model's).
            dtype: override of the dtype (default: the model's).
            provenance: description of where the model came from.
            scripted: force the TorchScript path (default: detected).
            check: run one small forward pass to check that data, model and loss fit.

        Returns:
            The bundle.

        Example:
            >>> from landscape.io.data import load_data
            >>> b = ModelBundle.from_module(nn.Linear(10, 3), load_data("synthetic"))
            >>> b.loss.name
            'cross_entropy'
        """
        if not isinstance(model, nn.Module):
            raise ConfigError(f"expected a torch.nn.Module, got {type(model).__name__}.")
        model = unwrap(model)
        dev0, dt0 = _module_device_dtype(model)
        dev = (parse_device(device) if isinstance(device, str) else device) or dev0
        dt = (parse_dtype(dtype) if isinstance(dtype, str) else dtype) or dt0
        if not dt.is_floating_point:
            raise ConfigError(f"--dtype must be a floating dtype, got {dt}.")
        if scripted is None:
            scripted = isinstance(model, torch.jit.ScriptModule)
        flags = {n: p.requires_grad for n, p in model.named_parameters()}
        try:
            # no_grad: a ScriptModule's deepcopy would otherwise clone its parameters with
            # autograd history, linking the copy's gradients to the caller's parameters.
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.fx deepcopy noise
                private = copy.deepcopy(model)
        except Exception as exc:  # noqa: BLE001 - arbitrary user modules
            raise ConfigError(
                f"cannot copy the model ({type(exc).__name__}: {exc}); landscape works on a"
                " private copy, so the model must support copy.deepcopy (load it from a"
                " checkpoint instead)."
            ) from exc
        for n, p in private.named_parameters():
            p.grad = None
            if n in flags and p.requires_grad != flags[n]:
                p.requires_grad_(flags[n])
        private = private.to(device=dev)
        if dt != dt0:
            private = private.to(dtype=dt)
        set_eval(private)
        if data.keyed:
            if scripted:
                raise ConfigError(
                    "token data (input_ids) needs a Python model; TorchScript modules cannot"
                    " take keyword inputs here. Give a state_dict and --model."
                )
            adapt_module(private, data)
        if loss is None and data.keyed:
            loss = "next_token"
        spec = loss if isinstance(loss, LossSpec) else resolve_loss(loss, data.y_train)
        bundle = cls(private, data, spec, dev, dt, dict(provenance or {}), bool(scripted))
        if check:
            bundle.check_fit()
        return bundle

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """Move a data tensor to the model's device, casting floats to the model's dtype."""
        if x.is_floating_point():
            return x.to(device=self.device, dtype=self.dtype, non_blocking=True)
        return x.to(device=self.device, non_blocking=True)

    def check_fit(self) -> None:
        """Run the model on two samples and check the loss is computable.

        Raises:
            DataError: when the data shape does not fit the model, labels are out of range
                for the model's outputs, or the loss cannot compare outputs and targets.
        """
        n = min(2, self.data.num_train)
        x = self.to_device(self.data.x_train[:n])
        y = self.to_device(self.data.y_train[:n])
        try:
            with torch.no_grad():
                out = self.module(x)
        except Exception as exc:  # noqa: BLE001
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(
                f"data of shape {tuple(self.data.x_train.shape[1:])} per sample does not fit"
                f" the model ({msg[:160]}); check --data or the model's input size."
            ) from exc
        if not isinstance(out, torch.Tensor) and not self.scripted:
            if isinstance(logits_of(out), torch.Tensor):
                adapt_module(self.module, self.data)
                out = logits_of(out)
        if not isinstance(out, torch.Tensor):
            raise DataError(
                f"the model returns {type(out).__name__}, not a tensor; wrap it so forward"
                " returns the logits/outputs."
            )
        if out.dim() == 0 or out.shape[0] != n:
            raise DataError(
                f"the model maps a batch of {n} samples to outputs of shape {tuple(out.shape)};"
                " its forward must keep the batch dimension first."
            )
        if self.loss.classification and not y.is_floating_point():
            n_out = out.shape[-1] if out.dim() >= 2 else 1
            for split, ys in (("", self.data.y_train), ("test ", self.data.y_test)):
                if ys is None or ys.numel() == 0:
                    continue
                ymin, ymax = int(ys.min()), int(ys.max())
                if out.dim() < 2 or ymax >= n_out or ymin < 0:
                    raise DataError(
                        f"{split}labels range over [{ymin}, {ymax}] but the model has {n_out}"
                        " outputs; check --data, or use --loss mse for regression targets."
                    )
        try:
            val = self.loss.per_sample(out, y)
        except Exception as exc:  # noqa: BLE001
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(
                f"loss {self.loss.name!r} cannot compare outputs {tuple(out.shape)} with"
                f" targets {tuple(y.shape)} ({msg[:120]}); check --loss and --data."
            ) from exc
        if not isinstance(val, torch.Tensor) or val.dim() != 1 or val.shape[0] != n:
            shape = tuple(val.shape) if isinstance(val, torch.Tensor) else type(val).__name__
            raise DataError(
                f"loss {self.loss.name!r} gave {shape} for a batch of {n}; it must give one"
                " value per sample (or a batch mean)."
            )
