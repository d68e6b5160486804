"""LoadOptions built from a command's parameters."""

from __future__ import annotations

from pathlib import Path

from landscape.cli.common import LoadOptions


def test_from_params_takes_the_fields_and_either_trust_name():
    params = {
        "checkpoint": Path("m.pt"),
        "model": "pkg:make",
        "data": "digits",
        "batch_size": 64,
        "seed": 3,
        "trust_checkpoint": True,
        "grid": "21x21",  # not a load option: ignored
    }
    opts = LoadOptions.from_params(params)
    assert opts == LoadOptions(
        Path("m.pt"), model="pkg:make", data="digits", batch_size=64, seed=3, trust=True
    )
    assert LoadOptions.from_params({"checkpoint": Path("m.pt"), "trust": True}).trust is True
    assert LoadOptions.from_params({"checkpoint": Path("m.pt")}).trust is False
