"""Bad checkpoints give one-line errors that name the fix, and untrusted files never run."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from landscape.errors import CheckpointError, ConfigError
from landscape.io.checkpoint import is_landscape_factory, load_model, parse_model_kwargs
from landscape.io.save import save

MLP = "landscape.models:mlp"
MLP_KW = {"in_features": 64, "hidden": 8, "num_classes": 10}


class _Marker:
    """Unpickling this object would create ``path`` (by calling ``open(path, "w")``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


@pytest.fixture()
def sd_path(tmp_path: Path, small_mlp) -> Path:
    p = tmp_path / "sd.pt"
    torch.save(small_mlp.state_dict(), p)
    return p


def test_missing_file(tmp_path: Path, one_line) -> None:
    with pytest.raises(CheckpointError) as ei:
        load_model(tmp_path / "nope.pt")
    one_line(ei.value, "does not exist", "check the path")


def test_directory(tmp_path: Path, one_line) -> None:
    with pytest.raises(CheckpointError) as ei:
        load_model(tmp_path)
    one_line(ei.value, "is a directory", "file inside it")


def test_unknown_format_random_bytes(tmp_path: Path, one_line) -> None:
    p = tmp_path / "junk.pt"
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (4096,), generator=g, dtype=torch.uint8).numpy().tobytes()
    p.write_bytes(b"\x13" + data)
    with pytest.raises(CheckpointError) as ei:
        load_model(p, model=MLP)
    one_line(ei.value, "not a format landscape reads", "torch.save(model.state_dict()")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError) as ei:
        load_model(empty)
    one_line(ei.value, "empty")


def test_truncated_torch_file(tmp_path: Path, sd_path: Path, one_line) -> None:
    p = tmp_path / "cut.pt"
    p.write_bytes(sd_path.read_bytes()[:300])
    with pytest.raises(CheckpointError) as ei:
        load_model(p, model=MLP, model_kwargs=MLP_KW)
    one_line(ei.value)


def test_state_dict_without_model(sd_path: Path, one_line) -> None:
    with pytest.raises(CheckpointError) as ei:
        load_model(sd_path)
    one_line(ei.value, "without the architecture", "--model MODULE:FACTORY")


def test_factory_not_importable(sd_path: Path, tmp_path: Path, one_line) -> None:
    with pytest.raises(ConfigError) as ei:
        load_model(sd_path, model="no_such_module_xyz:make")
    one_line(ei.value, "cannot import", "no_such_module_xyz")
    with pytest.raises(ConfigError) as ei:
        load_model(sd_path, model="landscape.models:no_such_factory")
    one_line(ei.value, "no attribute", "no_such_factory")
    with pytest.raises(ConfigError) as ei:
        load_model(sd_path, model=str(tmp_path / "missing.py") + ":make")
    one_line(ei.value, "does not exist")
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_dependency_xyz\n")
    with pytest.raises(ConfigError) as ei:
        load_model(sd_path, model=f"{broken}:make")
    one_line(ei.value, "cannot import", "ModuleNotFoundError")
    with pytest.raises(ConfigError) as ei:
        load_model(sd_path, model="landscape.models")
    one_line(ei.value, "MODULE:NAME")
    with pytest.raises(ConfigError) as ei:
        load_model(sd_path, model=MLP, model_kwargs={"widthh": 3})
    one_line(ei.value, "rejected its arguments", "--model-kwargs")


def test_keys_do_not_match(sd_path: Path, one_line) -> None:
    with pytest.raises(CheckpointError) as ei:
        load_model(sd_path, model="landscape.models:digits_cnn")
    one_line(ei.value, "keys do not match", "missing 14", "0.weight", "--model")
    with pytest.raises(CheckpointError) as ei:
        load_model(
            sd_path,
            model="landscape.models:linear_model",
            model_kwargs={"in_features": 64, "out_features": 10},
        )
    one_line(ei.value, "keys do not match", "unexpected 2", "3.weight")


def test_shape_mismatch(sd_path: Path, one_line) -> None:
    with pytest.raises(CheckpointError) as ei:
        load_model(sd_path, model=MLP, model_kwargs={"hidden": 16})
    one_line(ei.value, "shape", "1.weight", "(8, 64)", "(16, 64)", "--model-kwargs")


def test_nan_and_inf_weights_are_named(tmp_path: Path, small_mlp, one_line) -> None:
    with torch.no_grad():
        small_mlp[1].weight[0, 0] = float("nan")
        small_mlp[3].bias[2] = float("inf")
    p = tmp_path / "nan.pt"
    torch.save(small_mlp.state_dict(), p)
    with pytest.raises(CheckpointError) as ei:
        load_model(p, model=MLP, model_kwargs=MLP_KW)
    one_line(ei.value, "NaN/Inf", "2 tensor(s)", "1.weight", "3.bias", "earlier one")


def test_bad_model_kwargs_json(sd_path: Path, one_line) -> None:
    with pytest.raises(ConfigError) as ei:
        load_model(sd_path, model=MLP, model_kwargs="{hidden: 8")
    one_line(ei.value, "not valid JSON", '{"width": 64}')
    with pytest.raises(ConfigError) as ei:
        parse_model_kwargs("[1, 2]")
    one_line(ei.value, "JSON object")


def test_no_state_dict_inside(tmp_path: Path, one_line) -> None:
    p = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1}, p)
    with pytest.raises(CheckpointError) as ei:
        load_model(p, model=MLP)
    one_line(ei.value, "no state_dict", "epoch", "'state_dict' key")


# -- nothing in an untrusted file runs ------------------------------------------------


def test_pickled_payload_never_executes(tmp_path: Path, one_line) -> None:
    marker = tmp_path / "pwned.txt"
    p = tmp_path / "evil.pt"
    torch.save(_Marker(str(marker)), p)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as ei:
        load_model(p, model=MLP)
    one_line(ei.value, "--trust-checkpoint", "open")
    assert not marker.exists()
    q = tmp_path / "evil_model.pt"
    torch.save({"model": _Marker(str(marker)), "epoch": 1}, q)
    with pytest.raises(CheckpointError) as ei:
        load_model(q, model=MLP)
    one_line(ei.value, "--trust-checkpoint")
    assert not marker.exists()


def test_payload_next_to_weights_is_skipped_not_run(tmp_path: Path, small_mlp, batch) -> None:
    marker = tmp_path / "pwned.txt"
    p = tmp_path / "ckpt.pt"
    torch.save({"state_dict": small_mlp.state_dict(), "extra": _Marker(str(marker))}, p)
    loaded = load_model(p, model=MLP, model_kwargs=MLP_KW)
    assert not marker.exists()
    assert len(loaded.skipped) == 1 and loaded.skipped[0].endswith("open")
    with torch.no_grad():
        assert torch.equal(loaded.module(batch), small_mlp.eval()(batch))


def test_whole_pickled_module_refused_without_trust(tmp_path: Path, small_mlp, one_line) -> None:
    p = tmp_path / "whole.pt"
    torch.save(small_mlp, p)
    with pytest.raises(CheckpointError) as ei:
        load_model(p)
    one_line(ei.value, "--trust-checkpoint", "torch.nn.modules.container.Sequential")


def test_bundle_factory_outside_landscape_refused(tmp_path: Path, small_mlp, one_line) -> None:
    for factory in (
        "subprocess:run",
        "os:system",
        "landscape.io.rundir:write_json",
        "landscape.io.data:replace",
    ):
        p = save(small_mlp, tmp_path / "b.pt", factory=factory, factory_kwargs={"args": ["true"]})
        with pytest.raises(CheckpointError) as ei:
            load_model(p)
        one_line(ei.value, factory, "--model", "--trust-checkpoint")
    assert is_landscape_factory(MLP)
    assert is_landscape_factory("landscape.models:tiny_cnn")
    assert not is_landscape_factory("landscape.io.checkpoint:load_model")


def test_bundle_factory_path_traversal_refused(
    tmp_path: Path, small_mlp, monkeypatch, one_line
) -> None:
    """``landscape./evil.py:make`` starts with ``landscape.`` but is a file path."""
    marker = tmp_path / "pwned.txt"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "landscape.").mkdir()
    (tmp_path / "landscape." / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef make():\n    pass\n"
    )
    p = save(small_mlp, tmp_path / "b.pt", factory="landscape./evil.py:make")
    with pytest.raises(CheckpointError) as ei:
        load_model(p)
    one_line(ei.value, "--trust-checkpoint")
    assert not marker.exists()


def test_export_archive_with_pickled_payload_never_executes(
    tmp_path: Path, small_mlp, one_line
) -> None:
    """torch.export.load unpickles payloads marked use_pickle; without trust it is refused."""
    import io
    import zipfile

    small_mlp.eval()
    ep = torch.export.export(small_mlp, (torch.zeros(2, 1, 8, 8),))
    p = tmp_path / "m.pt2"
    torch.export.save(ep, str(p))
    marker = tmp_path / "pwned.txt"
    buf = io.BytesIO()
    torch.save(_Marker(str(marker)), buf)
    q = tmp_path / "tampered.pt2"
    with zipfile.ZipFile(p) as zin, zipfile.ZipFile(q, "w") as zout:
        cfg_name = next(n for n in zin.namelist() if n.endswith("model_weights_config.json"))
        cfg = json.loads(zin.read(cfg_name))
        entry = next(iter(cfg["config"].values()))
        entry["use_pickle"] = True
        target = entry["path_name"]
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == cfg_name:
                data = json.dumps(cfg).encode()
            elif item.filename.endswith("/" + target):
                data = buf.getvalue()
            zout.writestr(item, data)
    with pytest.raises(CheckpointError) as ei:
        load_model(q)
    one_line(ei.value, "pickled Python objects", "--trust-checkpoint")
    assert not marker.exists()
    assert load_model(p).format == "export"  # the untampered archive loads without trust


def test_aoti_and_export_detection_do_not_need_suffix(tmp_path: Path, small_mlp) -> None:
    small_mlp.eval()
    ep = torch.export.export(small_mlp, (torch.zeros(2, 1, 8, 8),))
    p = tmp_path / "exported.pt"  # wrong suffix: detected by content
    torch.export.save(ep, str(p))
    assert load_model(p).format == "export"
    q = tmp_path / "sd.pt2"  # a state_dict named .pt2
    torch.save(small_mlp.state_dict(), q)
    assert load_model(q, model=MLP, model_kwargs=MLP_KW).format == "state_dict"


def test_loaded_model_is_fresh(tmp_path: Path, small_mlp) -> None:
    p = tmp_path / "whole.pt"
    torch.save(small_mlp, p)
    a = load_model(p, trust=True).module
    b = load_model(p, trust=True).module
    assert a is not b and isinstance(a, nn.Module)


def test_bundle_code_defaults_are_held_back(tmp_path: Path, small_mlp) -> None:
    """A bundle's data/loss naming outside code would run it when the scan loads data."""
    p = save(
        small_mlp,
        tmp_path / "b.pt",
        factory=MLP,
        factory_kwargs=MLP_KW,
        data="os:getcwd",
        loss="subprocess:getoutput",
    )
    loaded = load_model(p)
    assert loaded.defaults == {}
    assert loaded.untrusted_defaults == {"data": "os:getcwd", "loss": "subprocess:getoutput"}
    assert load_model(p, trust=True).defaults == {
        "data": "os:getcwd",
        "loss": "subprocess:getoutput",
    }
    q = save(
        small_mlp,
        tmp_path / "c.pt",
        factory=MLP,
        factory_kwargs=MLP_KW,
        data=str(tmp_path / "d.npz"),
        loss="landscape.io.losses:resolve_loss",
    )
    assert load_model(q).defaults == {
        "data": str(tmp_path / "d.npz"),
        "loss": "landscape.io.losses:resolve_loss",
    }
