"""Chunk-size choice from a memory budget, and peak-memory measurement."""

from __future__ import annotations

import pytest
import torch

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.engine.memory import (
    HVP_OVERHEAD,
    available_memory,
    choose_chunk_size,
    current_memory,
    graph_bytes,
    measure_peak_memory,
    parse_bytes,
    per_sample_bytes,
    with_chunk_size,
)
from landscape.errors import ConfigError
from landscape.io.model_bundle import ModelBundle
from landscape.models import mlp


def test_parse_bytes_units_and_errors():
    assert parse_bytes("8GiB") == 8 * 1024**3
    assert parse_bytes("1.5 GB") == 1_500_000_000
    assert parse_bytes("2e6") == 2_000_000
    assert parse_bytes(123) == 123
    for bad in ("lots", "5 parsecs", "-1GB", 0):
        with pytest.raises(ConfigError):
            parse_bytes(bad)


def test_graph_bytes_counts_saved_inputs_exactly():
    x = torch.ones(5, 7)
    w = torch.ones(7, 3, requires_grad=True)
    # mm saves its input x (5*7 float32) to form dL/dW; sum saves nothing
    assert graph_bytes(lambda: (x @ w).sum()) == 5 * 7 * 4
    # the same storage saved twice counts once
    assert graph_bytes(lambda: (x @ w).sum() + (x @ w).sum()) == 5 * 7 * 4


def _space(digits_small, width: int) -> ParamSpace:
    torch.manual_seed(0)
    return ParamSpace(ModelBundle.from_module(mlp(64, width, 10), digits_small))


def test_per_sample_cost_grows_with_width(digits_small):
    small = per_sample_bytes(_space(digits_small, 32))
    large = per_sample_bytes(_space(digits_small, 512))
    assert 0 < small < large
    # hidden activations dominate: 16x the width costs several times more per sample
    assert large / small > 4


def test_choose_chunk_size_follows_the_budget(digits_small):
    space = _space(digits_small, 64)
    per = per_sample_bytes(space) * HVP_OVERHEAD
    budget = int(per * 37.5)
    assert choose_chunk_size(space, memory_budget=budget) == 37
    assert choose_chunk_size(space, memory_budget=1) == 1
    assert choose_chunk_size(space, memory_budget="1TiB") == space.num_samples()
    assert choose_chunk_size(space, memory_budget="1TiB", max_size=100) == 100
    auto = choose_chunk_size(space)
    assert 1 <= auto <= space.num_samples()
    with pytest.raises(ConfigError):
        choose_chunk_size(space, fraction=0)
    assert available_memory() > 0


def test_chunk_size_does_not_change_numbers(mlp_bundle):
    a = ParamSpace(mlp_bundle)
    b = ParamSpace(with_chunk_size(mlp_bundle, 7))
    assert b.bundle.data.batch_size == 7 and a.bundle.data.batch_size == 64
    torch.testing.assert_close(torch.tensor(a.evaluate()), torch.tensor(b.evaluate()))
    v = torch.randn(a.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        CurvatureOperator(a).matvec(v), CurvatureOperator(b).matvec(v), rtol=1e-10, atol=1e-12
    )
    with pytest.raises(ConfigError):
        with_chunk_size(mlp_bundle, 0)


def test_measure_peak_memory_sees_a_large_temporary():
    before = current_memory()
    out, peak = measure_peak_memory(lambda: float(torch.ones(25_000_000).sum()))  # 100 MB
    assert out == 25_000_000.0
    assert peak - before > 80_000_000
