"""Language-model data and the per-token next-token loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.errors import DataError
from landscape.io.data import DataSource, load_data
from landscape.io.losses import resolve_loss
from landscape.io.model_bundle import ModelBundle, logits_of

VOCAB, SEQ = 7, 6


class KwLM(nn.Module):
    """A bag-of-previous-tokens LM called as model(input_ids=..., attention_mask=...)."""

    def __init__(self, output: str = "tensor") -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 5)
        self.out = nn.Linear(5, VOCAB)
        self.output = output
        self.seen: list[tuple[str, torch.dtype]] = []

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> object:
        h = self.emb(input_ids)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1).to(h.dtype)
        logits = self.out(torch.tanh(h.cumsum(dim=1)))
        if self.output == "dict":
            return {"logits": logits, "extra": 1}
        if self.output == "tuple":
            return (logits, None)
        if self.output == "object":

            class Out:
                pass

            o = Out()
            o.logits = logits  # type: ignore[attr-defined]
            return o
        return logits


def _tokens(n: int = 9, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, SEQ), generator=g)
    lengths = torch.randint(2, SEQ + 1, (n,), generator=g)
    mask = (torch.arange(SEQ)[None] < lengths[:, None]).long()
    labels = ids.clone()
    labels[0, 2] = -100  # an explicitly ignored label
    return {"input_ids": ids * mask, "attention_mask": mask, "labels": labels}


def _reference(model: nn.Module, tok: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = logits_of(model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]))
    labels = tok["labels"].masked_fill(tok["attention_mask"] == 0, -100)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)


@pytest.mark.parametrize("fmt", ["pt", "npz"])
def test_token_file_loads_with_keys_and_mask(tmp_path: Path, fmt: str) -> None:
    tok = _tokens()
    path = tmp_path / f"tokens.{fmt}"
    if fmt == "pt":
        torch.save(tok, path)
    else:
        np.savez(path, **{k: v.numpy().astype(np.int32) for k, v in tok.items()})
    d = load_data(str(path), test_fraction=0.0)
    assert d.input_keys == ("input_ids", "attention_mask")
    assert d.x_train.dtype == torch.int64 and d.x_train.shape == (9, 2, SEQ)
    assert d.describe()["input_keys"] == ["input_ids", "attention_mask"]
    assert int((d.y_train == -100).sum()) == int((tok["attention_mask"] == 0).sum()) + 1


def test_labels_default_to_ids_and_test_split(tmp_path: Path) -> None:
    tok = _tokens()
    torch.save(
        {"input_ids": tok["input_ids"], "input_ids_test": tok["input_ids"][:3]},
        tmp_path / "t.pt",
    )
    d = load_data(str(tmp_path / "t.pt"))
    assert d.input_keys == ("input_ids",) and d.num_test == 3
    assert torch.equal(d.y_train, tok["input_ids"])
    torch.save({"input_ids": torch.rand(3, 4)}, tmp_path / "bad.pt")
    with pytest.raises(DataError, match="integer"):
        load_data(str(tmp_path / "bad.pt"))


@pytest.mark.parametrize("output", ["tensor", "dict", "tuple", "object"])
def test_chunked_per_token_mean_matches_cross_entropy(output: str) -> None:
    tok = _tokens()
    torch.manual_seed(0)
    model = KwLM(output).double()
    ref = _reference(model, tok)
    ids, mask = tok["input_ids"], tok["attention_mask"]
    labels = tok["labels"].masked_fill(mask == 0, -100)
    for bs in (1, 2, 4, 9):
        data = DataSource(
            "t",
            torch.stack([ids, mask], 1),
            labels,
            batch_size=bs,
            input_keys=("input_ids", "attention_mask"),
            input_dtypes=(torch.int64, torch.int64),
        )
        space = ParamSpace(ModelBundle.from_module(model, data))
        assert space.bundle.loss.name == "next_token"
        assert space.num_units() == int((labels[:, 1:] != -100).sum())
        assert abs(float(space.loss()) - float(ref)) <= 1e-12, bs
        loss, acc = space.evaluate()
        assert abs(loss - float(ref)) <= 1e-12 and 0.0 <= acc <= 1.0
        g = space.value_and_grad()[1]
        th = space.theta0.clone().requires_grad_(True)
        (g_ref,) = torch.autograd.grad(space.loss(th), th)
        assert torch.allclose(g, g_ref, atol=1e-12)
    # the user's model is untouched
    assert "forward" not in model.__dict__


def test_operator_divides_by_tokens() -> None:
    tok = _tokens()
    torch.manual_seed(0)
    model = KwLM().double()
    labels = tok["labels"].masked_fill(tok["attention_mask"] == 0, -100)
    x = torch.stack([tok["input_ids"], tok["attention_mask"]], 1)
    data = DataSource(
        "t",
        x,
        labels,
        batch_size=4,
        input_keys=("input_ids", "attention_mask"),
        input_dtypes=(torch.int64, torch.int64),
    )
    space = ParamSpace(ModelBundle.from_module(model, data))
    th = space.theta0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(space.loss(th), th, create_graph=True)
    v = torch.randn(space.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (hv,) = torch.autograd.grad(g, th, v)
    for strategy in ("cached", "forward"):
        op = CurvatureOperator(space, strategy=strategy)
        assert torch.allclose(op.matvec(v), hv, atol=1e-12), strategy


def test_next_token_loss_alias_and_units() -> None:
    spec = resolve_loss("lm")
    assert spec.name == "next_token" and not spec.classification
    y = torch.tensor([[1, 2, -100, 3], [0, -100, -100, -100]])
    assert spec.chunk_units(y) == 2
    assert resolve_loss("cross_entropy").chunk_units(y) == 2  # samples
    assert resolve_loss("cross_entropy").chunk_units(torch.zeros(5)) == 5


def test_dataloader_of_dict_batches() -> None:
    from torch.utils.data import DataLoader

    from landscape.io.data import _from_user_object

    tok = _tokens()
    rows = [{k: v[i] for k, v in tok.items()} for i in range(9)]
    x, y, xt, yt, keys = _from_user_object(DataLoader(rows, batch_size=4), "loader")
    assert [k for k, _ in keys] == ["input_ids", "attention_mask"] and xt is None
    assert torch.equal(x[:, 0], tok["input_ids"])
    assert torch.equal(y, tok["labels"].masked_fill(tok["attention_mask"] == 0, -100))


def test_llc_and_pac_bayes_count_tokens() -> None:
    from landscape.basins.llc import LLCConfig, estimate_llc
    from landscape.metrics.pac_bayes import pac_bayes_sigma

    tok = _tokens(n=12)
    torch.manual_seed(0)
    labels = tok["labels"].masked_fill(tok["attention_mask"] == 0, -100)
    x = torch.stack([tok["input_ids"], tok["attention_mask"]], 1)
    data = DataSource(
        "t",
        x,
        labels,
        batch_size=8,
        input_keys=("input_ids", "attention_mask"),
        input_dtypes=(torch.int64, torch.int64),
    )
    space = ParamSpace(ModelBundle.from_module(KwLM().double(), data))
    tokens = int((labels[:, 1:] != -100).sum())
    assert space.num_units() == tokens != space.num_samples()
    cfg = LLCConfig(step_size=1e-5, chains=2, draws=20, burn_in=5, batch_size=4, mala_every=0)
    r = estimate_llc(space, config=cfg)
    assert r.to_dict()["n"] == tokens
    assert r.n == tokens and r.beta == pytest.approx(1 / np.log(tokens))
    assert np.isfinite(r.llc.mean)
    p = pac_bayes_sigma(space, num_samples=2, rel_tol=0.2, max_evaluations=8)
    assert p.num_train == tokens
