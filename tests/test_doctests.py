"""The ``>>>`` examples in every module's docstrings run, each module as one test."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import random

import numpy as np
import pytest
import torch

import landscape
import landscape.cli
import landscape.viz

# examples that train or scan for several seconds: the slow set runs them
SLOW = {
    "landscape.experiments.demo",
    "landscape.experiments.demo_compare",
    "landscape.experiments.sharp_vs_flat",
    "landscape.basins.llc_tuning",
}


def _modules() -> list[str]:
    names = {"landscape"}
    for pkg in (landscape, landscape.viz, landscape.cli):
        names.add(pkg.__name__)
        names.update(m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."))
    return sorted(names)


def _param(name: str) -> object:
    return pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name


@pytest.mark.parametrize("name", [_param(n) for n in _modules()])
def test_docstring_examples(name: str, tmp_path, monkeypatch) -> None:
    """Run the module's examples from a scratch directory with every RNG seeded."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    failures: list[str] = []
    for test in finder.find(module, name, globs=vars(module).copy()):
        if test.examples:
            out: list[str] = []
            result = runner.run(test, out=out.append)
            if result.failed:
                failures.append("".join(out))
    assert not failures, "\n".join(failures)
