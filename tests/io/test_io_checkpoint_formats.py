"""Every checkpoint format users have loads back into a module with the same outputs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from landscape.io.checkpoint import load_model
from landscape.io.save import load_bundle, save

MLP = "landscape.models:mlp"
MLP_KW = {"in_features": 64, "hidden": 8, "num_classes": 10}


def _same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor, exact: bool = True) -> None:
    with torch.no_grad():
        ya, yb = a.eval()(x), b(x)
    if exact:
        assert torch.equal(ya, yb)
    else:  # a different batch size may pick a different BLAS kernel: float32 round-off
        torch.testing.assert_close(ya, yb, rtol=1e-6, atol=1e-6)


def _prefixed(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in sd.items()}


@pytest.mark.parametrize(
    ("wrap", "fmt"),
    [
        (lambda sd: sd, "state_dict"),
        (lambda sd: {"state_dict": sd, "epoch": 3}, "state_dict"),
        (
            lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {}, "loss": 0.1},
            "state_dict",
        ),
        (lambda sd: {"model": sd}, "state_dict"),
        (lambda sd: _prefixed(sd, "module."), "state_dict"),
        (lambda sd: {"model": _prefixed(sd, "module.")}, "state_dict"),
        (lambda sd: _prefixed(sd, "_orig_mod."), "state_dict"),
        (lambda sd: {"state_dict": _prefixed(sd, "model._orig_mod.")}, "state_dict"),
    ],
    ids=[
        "plain",
        "state_dict",
        "model_state_dict",
        "model",
        "ddp",
        "model-ddp",
        "compile",
        "nested-prefix",
    ],
)
def test_state_dict_variants(tmp_path: Path, small_mlp, batch, wrap, fmt) -> None:
    p = tmp_path / "ckpt.pt"
    torch.save(wrap(small_mlp.state_dict()), p)
    loaded = load_model(p, model=MLP, model_kwargs=MLP_KW)
    assert loaded.format == fmt
    assert loaded.factory == MLP and loaded.factory_kwargs == MLP_KW
    assert not loaded.module.training
    _same_outputs(small_mlp, loaded.module, batch)


def _lightning_ckpt(model: nn.Module, extra_hparams: dict | None = None) -> dict:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.zeros(2, 1, 8, 8)).sum().backward()
    opt.step()
    opt.zero_grad()
    sd = _prefixed(model.state_dict(), "model.")
    sd["train_acc.correct"] = torch.tensor(7)  # a torchmetrics-like buffer outside `model.`
    return {
        "epoch": 4,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": sd,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 5}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.3)}
        },
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 1e-3, "width": 8, **(extra_hparams or {})},
    }


def test_lightning_checkpoint(tmp_path: Path, small_mlp, batch) -> None:
    p = tmp_path / "epoch=4-step=120.ckpt"
    torch.save(_lightning_ckpt(small_mlp), p)
    loaded = load_model(p, model=MLP, model_kwargs=MLP_KW)
    assert loaded.format == "lightning"
    assert loaded.skipped == []
    _same_outputs(small_mlp, loaded.module, batch)


def test_lightning_checkpoint_with_pickled_hparams(tmp_path: Path, small_mlp, batch) -> None:
    """Real Lightning files often keep a loss module among hyper-parameters, which
    weights_only refuses; the weights are still read, and the object is never built."""
    p = tmp_path / "last.ckpt"
    torch.save(_lightning_ckpt(small_mlp, {"loss_fn": nn.CrossEntropyLoss()}), p)
    loaded = load_model(p, model=MLP, model_kwargs=MLP_KW)
    assert loaded.format == "lightning"
    assert loaded.skipped == ["torch.nn.modules.loss.CrossEntropyLoss"]
    assert loaded.provenance()["skipped_objects"] == loaded.skipped
    _same_outputs(small_mlp, loaded.module, batch)


def test_factory_from_file_with_kwargs(tmp_path: Path, batch) -> None:
    (tmp_path / "mymodels.py").write_text(
        "from torch import nn\n"
        "def make(width=4, classes=10):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(),\n"
        "                         nn.Linear(width, classes))\n"
    )
    torch.manual_seed(3)
    from torch import nn as tnn

    model = tnn.Sequential(tnn.Flatten(), tnn.Linear(64, 6), tnn.ReLU(), tnn.Linear(6, 10))
    p = tmp_path / "w.pth"
    torch.save({"model_state_dict": model.state_dict()}, p)
    loaded = load_model(p, model=f"{tmp_path / 'mymodels.py'}:make", model_kwargs='{"width": 6}')
    assert loaded.factory_kwargs == {"width": 6}
    _same_outputs(model, loaded.module, batch)


def test_safetensors(tmp_path: Path, small_mlp, batch) -> None:
    p = tmp_path / "model.safetensors"
    save_file(small_mlp.state_dict(), str(p))
    loaded = load_model(p, model=MLP, model_kwargs=MLP_KW)
    assert loaded.format == "safetensors"
    _same_outputs(small_mlp, loaded.module, batch)
    # detected by content too, whatever the file is called
    q = tmp_path / "weights.bin"
    q.write_bytes(p.read_bytes())
    assert load_model(q, model=MLP, model_kwargs=MLP_KW).format == "safetensors"


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript(tmp_path: Path, small_mlp, batch, how: str) -> None:
    sm = torch.jit.script(small_mlp) if how == "script" else torch.jit.trace(small_mlp, batch)
    p = tmp_path / "model.pt"
    sm.save(str(p))
    loaded = load_model(p)
    assert loaded.format == "torchscript" and loaded.scripted
    _same_outputs(small_mlp, loaded.module, batch)
    clone = copy.deepcopy(loaded.module)
    _same_outputs(small_mlp, clone, batch)


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_export(tmp_path: Path, small_mlp, batch, dynamic: bool) -> None:
    small_mlp.eval()
    if dynamic:
        shapes = ({0: torch.export.Dim("batch")},)
        ep = torch.export.export(small_mlp, (batch[:3],), dynamic_shapes=shapes)
    else:
        ep = torch.export.export(small_mlp, (batch[:2],))  # static batch of 2
    p = tmp_path / "model.pt2"
    torch.export.save(ep, str(p))
    loaded = load_model(p)
    assert loaded.format == "export"
    assert loaded.module.batch_size == (None if dynamic else 2)
    _same_outputs(small_mlp, loaded.module, batch, exact=False)  # pieces of 2, padded
    _same_outputs(small_mlp, loaded.module, batch[:1], exact=False)


def test_pickled_module_with_trust(tmp_path: Path, small_mlp, batch) -> None:
    p = tmp_path / "whole.pt"
    torch.save(small_mlp, p)
    loaded = load_model(p, trust=True)
    assert loaded.format == "pickled_module"
    _same_outputs(small_mlp, loaded.module, batch)
    q = tmp_path / "in_dict.pt"
    torch.save({"model": small_mlp, "epoch": 1}, q)
    assert load_model(q, trust=True).format == "pickled_module"


def test_bundle_loads_with_no_other_argument(tmp_path: Path, small_mlp, batch) -> None:
    p = save(
        small_mlp,
        tmp_path / "b.pt",
        factory=MLP,
        factory_kwargs=MLP_KW,
        data="digits",
        loss="cross_entropy",
        meta={"epochs": 3},
    )
    before = {k: v.clone() for k, v in small_mlp.state_dict().items()}
    loaded = load_bundle(p)
    assert loaded.format == "landscape_bundle"
    assert loaded.defaults == {"data": "digits", "loss": "cross_entropy"}
    assert loaded.factory == MLP and loaded.factory_kwargs == MLP_KW
    _same_outputs(small_mlp, loaded.module, batch)
    assert all(torch.equal(before[k], v) for k, v in small_mlp.state_dict().items())
    assert [f.name for f in tmp_path.iterdir()] == ["b.pt"]  # no temp file left
    # confirming the stored factory with --model keeps the stored kwargs
    assert load_model(p, model=MLP).factory_kwargs == MLP_KW


def test_bundle_with_file_factory_needs_confirmation(tmp_path: Path, one_line, batch) -> None:
    marker = tmp_path / "imported.txt"
    f = tmp_path / "arch.py"
    f.write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from landscape.models import mlp\n"
        "def make(**kw):\n    return mlp(**kw)\n"
    )
    torch.manual_seed(0)
    from landscape.models import mlp

    model = mlp(**MLP_KW)
    factory = f"{f}:make"
    p = save(model, tmp_path / "b.pt", factory=factory, factory_kwargs=MLP_KW)
    with pytest.raises(Exception) as ei:
        load_model(p)
    one_line(ei.value, "--model", "--trust-checkpoint", factory)
    assert not marker.exists()  # the file was never imported
    _same_outputs(model, load_model(p, model=factory).module, batch)
    marker.unlink()
    _same_outputs(model, load_model(p, trust=True).module, batch)


def test_trusted_checkpoint_with_missing_classes_still_gives_weights(
    tmp_path: Path, small_mlp, batch, monkeypatch
) -> None:
    """A trusted Lightning-style file whose callback class is not installed any more."""
    import importlib
    import sys

    (tmp_path / "gone_callbacks.py").write_text("class EarlyStop:\n    patience = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("gone_callbacks")
    p = tmp_path / "ckpt.pt"
    torch.save({"state_dict": small_mlp.state_dict(), "callbacks": [mod.EarlyStop()]}, p)
    (tmp_path / "gone_callbacks.py").unlink()
    monkeypatch.delitem(sys.modules, "gone_callbacks")
    importlib.invalidate_caches()
    loaded = load_model(p, model=MLP, model_kwargs=MLP_KW, trust=True)
    assert loaded.skipped == ["gone_callbacks.EarlyStop"]
    _same_outputs(small_mlp, loaded.module, batch)


def test_a_checkpoint_naming_the_former_zoo_module_still_loads(tmp_path):
    import torch

    from landscape.io import load_bundle
    from landscape.io.save import save
    from landscape.models import mlp

    torch.manual_seed(0)
    model = mlp(64, 8, 10)
    path = save(model, tmp_path / "old.pt", factory="landscape.experiments.models:mlp",
                factory_kwargs={"in_features": 64, "hidden": 8, "num_classes": 10})  # fmt: skip
    loaded = load_bundle(path)
    for (k, a), b in zip(model.state_dict().items(), loaded.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
