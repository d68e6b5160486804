"""Agreement with PyHessian (optional: skipped when pyhessian is not installed)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from landscape.engine import CurvatureOperator, ParamSpace
from landscape.hessian import hutchpp_trace, top_eigenpairs
from landscape.io import ModelBundle, load_data
from landscape.models import mlp

pyhessian = pytest.importorskip("pyhessian")


def test_top_eigenvalue_and_trace_agree_with_pyhessian(exact):
    data = load_data("digits", max_samples=200, seed=0)
    torch.manual_seed(0)
    model = mlp(64, 8, 10, activation="tanh")  # float32, 610 parameters
    space = ParamSpace(ModelBundle.from_module(model, data))
    op = CurvatureOperator(space)
    ours = top_eigenpairs(op, k=1, tol=1e-5)
    trace = hutchpp_trace(op, 150, seed=0)
    _, ev = exact(space)  # float64 reference of the same function

    theirs_model = copy.deepcopy(model).eval()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        h = pyhessian.hessian(
            theirs_model, torch.nn.CrossEntropyLoss(), data=(data.x_train, data.y_train), cuda=False
        )
        (lam,), _ = h.eigenvalues(top_n=1)
        samples = np.asarray(h.trace())
    # top eigenvalue: ours to float32 precision, theirs to its power-iteration tol 1e-3
    assert ours.values[0] == pytest.approx(ev[-1], rel=1e-4)
    assert lam == pytest.approx(ev[-1], rel=1e-2)
    assert lam == pytest.approx(ours.values[0], rel=1e-2)
    # trace: both unbiased; compare within the combined noise
    se_theirs = samples.std(ddof=1) / math.sqrt(samples.size)
    assert abs(samples.mean() - ev.sum()) <= 4 * se_theirs
    assert abs(trace.mean - ev.sum()) <= 4 * trace.stderr
    assert abs(samples.mean() - trace.mean) <= 4 * math.hypot(se_theirs, trace.stderr)
