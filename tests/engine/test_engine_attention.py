"""Curvature through attention: math SDPA backend, dense references, clean errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import hessian, jacrev, vmap

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.engine.attention import derivative_error, is_missing_derivative, math_attention
from landscape.errors import ConfigError
from landscape.hessian.dense import dense_hessian
from landscape.io.data import DataSource
from landscape.io.model_bundle import ModelBundle

VOCAB, SEQ, D = 5, 4, 8


class TinyEncoder(nn.Module):
    """Embedding + LayerNorm + one TransformerEncoderLayer + mean-pooled linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, D)
        self.norm = nn.LayerNorm(D)
        self.layer = nn.TransformerEncoderLayer(
            D, 2, dim_feedforward=12, dropout=0.0, batch_first=True
        )
        self.head = nn.Linear(D, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(self.norm(self.emb(x))).mean(dim=1))


class HandAttention(nn.Module):
    """One causal attention head written with F.scaled_dot_product_attention and RMSNorm."""

    def __init__(self, rms: bool = False) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, D)
        self.norm: nn.Module = nn.RMSNorm(D) if rms else nn.Identity()
        self.qkv = nn.Linear(D, 3 * D)
        self.head = nn.Linear(D, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.emb(x))
        q, k, v = self.qkv(h).view(h.shape[0], h.shape[1], 3, 2, D // 2).unbind(2)
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        return self.head(torch.tanh(a.transpose(1, 2).flatten(2)).mean(dim=1))


class TinyDecoder(nn.Module):
    """A TransformerDecoderLayer (causal self-attention, cross-attention to a memory made by
    an nn.MultiheadAttention over the embeddings) and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, D)
        self.mem = nn.MultiheadAttention(D, 2, batch_first=True)
        self.layer = nn.TransformerDecoderLayer(
            D, 2, dim_feedforward=12, dropout=0.0, batch_first=True
        )
        self.head = nn.Linear(D, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x)
        memory, _ = self.mem(h, h, h, need_weights=False)
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], dtype=h.dtype)
        out = self.layer(h, memory, tgt_mask=mask, tgt_is_causal=True)
        return self.head(out.mean(dim=1))


def _data(n: int = 10, batch: int = 4) -> DataSource:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, VOCAB, (n, SEQ), generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return DataSource("tokens", x, y, batch_size=batch)


def _space(model: nn.Module) -> ParamSpace:
    return ParamSpace(ModelBundle.from_module(model, _data(), dtype=torch.float64))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _seeded(cls: type[nn.Module], **kw: bool) -> nn.Module:
    torch.manual_seed(0)
    return cls(**kw)


@pytest.mark.parametrize(
    ("cls", "kw"),
    [(TinyEncoder, {}), (TinyDecoder, {}), (HandAttention, {}), (HandAttention, {"rms": True})],
)
def test_hessian_strategies_match_dense(cls: type[nn.Module], kw: dict[str, bool]) -> None:
    space = _space(_seeded(cls, **kw))
    assert space.bundle.data.x_train.dtype == torch.int64
    # torch.func.hessian (jacfwd∘jacrev) is wrong for LayerNorm weights whose input also
    # depends on θ (non-symmetric; PyTorch 2.13); jvp∘grad per unit vector is exact, and a
    # central difference of the gradient checks it independently.
    ref = dense_hessian(space)
    u = torch.randn(space.dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    eps = 1e-5
    g_plus = space.value_and_grad(space.theta0 + eps * u)[1]
    g_minus = space.value_and_grad(space.theta0 - eps * u)[1]
    assert _rel((g_plus - g_minus) / (2 * eps), ref @ u) <= 1e-7
    vs = torch.randn(3, space.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for strategy in ("cached", "reverse", "forward"):
        op = CurvatureOperator(space, kind="hessian", strategy=strategy)
        assert _rel(op.matmat(vs), vs @ ref) <= 1e-10, strategy
        assert _rel(op.matvec(vs[0]), ref @ vs[0]) <= 1e-10, strategy


def test_ggn_matches_dense_jt_h_j() -> None:
    space = _space(_seeded(TinyEncoder))
    x, y = space.bundle.data.x_train, space.bundle.data.y_train
    with math_attention():
        jac = jacrev(lambda th: space.forward(th, x))(space.theta0)  # (N, C, P)
    logits = space.forward(space.theta0, x).detach()

    def ce(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z[None], t[None], reduction="sum")

    h_out = vmap(hessian(ce))(logits, y)
    ref = torch.einsum("nip,nij,njq->pq", jac, h_out, jac) / x.shape[0]
    op = CurvatureOperator(space, kind="ggn")
    vs = torch.randn(3, space.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert _rel(op.matmat(vs), vs @ ref) <= 1e-10
    assert _rel(op.matvec(vs[0]), ref @ vs[0]) <= 1e-10


def test_fisher_and_grad_run_through_attention() -> None:
    space = _space(_seeded(TinyEncoder))
    op = CurvatureOperator(space, kind="fisher")
    v = torch.randn(space.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fv = op.matvec(v)
    assert float(v @ fv) >= 0
    loss, g = space.value_and_grad()
    assert g.shape == (space.dim,) and torch.isfinite(g).all() and loss > 0


def test_user_settings_restored() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    assert torch.backends.mha.get_fastpath_enabled()
    before = (
        torch.backends.cuda.flash_sdp_enabled(),
        torch.backends.cuda.math_sdp_enabled(),
        torch.backends.cuda.mem_efficient_sdp_enabled(),
    )
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        inside = torch.backends.cuda.math_sdp_enabled()
        space = _space(_seeded(TinyEncoder))
        CurvatureOperator(space, strategy="forward").matvec(torch.ones(space.dim))
        assert torch.backends.cuda.math_sdp_enabled() == inside
        assert not inside and torch.backends.cuda.flash_sdp_enabled()
    after = (
        torch.backends.cuda.flash_sdp_enabled(),
        torch.backends.cuda.math_sdp_enabled(),
        torch.backends.cuda.mem_efficient_sdp_enabled(),
    )
    assert after == before
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with math_attention():
            pass
        assert not torch.backends.mha.get_fastpath_enabled()
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    with pytest.raises(ValueError), math_attention():
        raise ValueError("boom")
    assert torch.backends.mha.get_fastpath_enabled()


class _NoDoubleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        (x,) = ctx.saved_tensors
        return _Once.apply(g, x)


class _Once(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g, x):  # noqa: ANN001, ANN205
        return g * x.cos()

    @staticmethod
    def backward(ctx, gg):  # noqa: ANN001, ANN205
        raise RuntimeError("derivative for aten::my_fused_op is not implemented")


class _Opaque(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(SEQ, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NoDoubleBackward.apply(self.lin(x.to(self.lin.weight.dtype)))


def test_missing_derivative_is_one_line_config_error() -> None:
    space = _space(_seeded(_Opaque))
    op = CurvatureOperator(space, strategy="reverse")
    with pytest.raises(ConfigError) as info:
        op.matvec(torch.ones(space.dim, dtype=torch.float64))
    msg = str(info.value)
    assert "\n" not in msg and "aten::my_fused_op" in msg and "--strategy forward" in msg
    fwd = derivative_error(
        NotImplementedError(
            "Trying to use forward AD with _scaled_dot_product_flash_attention_for_cpu that"
            " does not support it"
        ),
        "forward",
    )
    assert "_scaled_dot_product_flash_attention_for_cpu" in str(fwd)
    assert "--strategy reverse" in str(fwd)
    assert not is_missing_derivative(ValueError("derivative for x"))


def test_metrics_surface_and_basin_measures_run_on_attention() -> None:
    from landscape.basins.llc import LLCConfig, estimate_llc
    from landscape.metrics import compute_metrics
    from landscape.surface import quick_surface

    space = _space(_seeded(TinyDecoder))
    report = compute_metrics(
        space,
        names=["lambda_max", "trace", "eps_sharpness", "average_sharpness", "relative_flatness"],
        trace_matvecs=9,
        steps=2,
        restarts=1,
        average_samples=4,
        relative_matvecs=9,
    )
    assert not report.skipped, report.skipped
    assert report.value("lambda_max") > 0 and report.value("eps_sharpness") >= 0
    surf = quick_surface(space, grid=(3, 3), span=0.5, seed=0)
    loss = surf.to_dataset()["train_loss"].values
    assert loss.shape == (3, 3) and float(loss[1, 1]) == pytest.approx(space.evaluate()[0])
    res = estimate_llc(space, config=LLCConfig(draws=20, burn_in=5, chains=2))
    assert res.llc.n == 2 and res.loss_trace.shape == (2, 20)
    from landscape.basins.jacobian_rank import jacobian_rank

    jr = jacobian_rank(space, max_samples=10)
    assert 0 < jr.rank <= min(space.dim, 10 * 3)
