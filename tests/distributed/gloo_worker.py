"""Worker run under ``torchrun --nproc-per-node 2`` by test_distributed_gloo.py.

Computes curvature products, eigenvalues, traces, loss/grad and a sharded grid with the
gloo backend; every rank saves what it got so the test can compare ranks with each other
and with a single-process run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from landscape.engine import ParamSpace
from landscape.engine.distributed import DataParallel, DistributedContext
from landscape.hessian import hutchinson_trace, top_eigenpairs
from landscape.io.data import load_data
from landscape.io.model_bundle import ModelBundle
from landscape.models import mlp
from landscape.surface.sharded import sharded_grid_eval, sharded_quick_surface

torch.set_num_threads(1)


def build_bundle() -> ModelBundle:
    """A float64 tanh MLP on 203 digits (odd sizes, so shards differ in size)."""
    data = load_data("digits", max_samples=203, batch_size=50, seed=0)
    torch.manual_seed(0)
    return ModelBundle.from_module(mlp(64, 12, 10, activation="tanh"), data, dtype=torch.float64)


def probes(dim: int, k: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    return torch.randn(k, dim, generator=g, dtype=torch.float64)


def grid(dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    dirs = 0.05 * torch.randn(2, dim, generator=g, dtype=torch.float64)
    a = torch.linspace(-1, 1, 5, dtype=torch.float64)
    pts = torch.cartesian_prod(a, a)
    return pts, dirs


class CountingProgress:
    """Records how far each task advanced."""

    def __init__(self) -> None:
        self.done: dict[str, int] = {}
        self.totals: dict[str, int | None] = {}

    def task(self, description: str, total: int | None):  # noqa: ANN201
        self.totals[description] = total
        self.done.setdefault(description, 0)
        outer = self

        class _T:
            def advance(self, n: int = 1) -> None:
                outer.done[description] += n

        return _T()

    def finish(self, task) -> None:  # noqa: ANN001
        pass


def compute(ctx: DistributedContext, out: dict) -> None:
    bundle = build_bundle()
    dp = DataParallel(bundle, ctx)
    V = probes(dp.space.dim)
    for strategy in ("cached", "forward"):
        op = dp.operator(strategy=strategy)
        out[f"hvp_{strategy}"] = op.matvec(V[0])
        out[f"hmm_{strategy}"] = op.matmat(V)
    out["ggn"] = dp.operator(kind="ggn").matmat(V)
    out["fisher"] = dp.operator(kind="fisher").matvec(V[0])
    out["eval_train"] = torch.tensor(dp.evaluate(), dtype=torch.float64)
    out["eval_test"] = torch.tensor(dp.evaluate(split="test"), dtype=torch.float64)
    loss, g = dp.value_and_grad()
    out["loss"] = torch.tensor(loss, dtype=torch.float64)
    out["grad"] = g
    out["n_local"] = torch.tensor(dp.local.num_samples())
    op = dp.operator()
    eig = top_eigenpairs(op, 5, seed=0, tol=1e-8)
    out["top_eigs"] = torch.as_tensor(eig.values)
    out["eig_matvecs"] = torch.tensor(op.matvecs)
    tr = hutchinson_trace(dp.operator(), 20, seed=0)
    out["trace"] = torch.tensor([tr.mean, tr.stderr], dtype=torch.float64)


def compute_grid(ctx: DistributedContext, out: dict, progress_dir: Path) -> None:
    space = ParamSpace(build_bundle())
    pts, dirs = grid(space.dim)
    prog = CountingProgress()
    # first pass stops early (per rank), second pass resumes; both from a single-process
    # progress file written by the test before launch
    part = sharded_grid_eval(
        space,
        pts,
        dirs,
        context=ctx,
        progress_dir=progress_dir,
        max_new_points=3,
        flush_seconds=0.0,
        to_all=True,
    )
    full = sharded_grid_eval(
        space,
        pts,
        dirs,
        context=ctx,
        progress_dir=progress_dir,
        progress=prog,
        flush_seconds=0.0,
    )
    out["grid_part"] = torch.as_tensor(part.values)
    out["grid_part_counts"] = torch.tensor([part.evaluated, part.resumed])
    if full is not None:
        out["grid"] = torch.as_tensor(full.values)
        out["grid_counts"] = torch.tensor([full.evaluated, full.resumed])
        out["grid_progress"] = torch.tensor(
            [prog.done["surface grid"], prog.totals["surface grid"] or -1]
        )
    out["grid_is_none"] = torch.tensor(full is None)
    # a grid without progress files
    fresh = sharded_grid_eval(space, pts, dirs, context=ctx, to_all=True)
    out["grid_fresh"] = torch.as_tensor(fresh.values)
    surf = sharded_quick_surface(space, grid=(5, 4), span=1.0, seed=0, context=ctx)
    out["surf_train"] = torch.as_tensor(surf.train_loss)
    out["surf_test"] = torch.as_tensor(surf.test_loss)
    out["surf_center"] = torch.tensor(surf.center_loss, dtype=torch.float64)


def main() -> None:
    outdir = Path(sys.argv[1])
    ctx = DistributedContext.init_from_env()
    assert ctx.world_size == 2 and ctx.backend == "gloo"
    out: dict = {"rank": torch.tensor(ctx.rank), "world": torch.tensor(ctx.world_size)}
    compute(ctx, out)
    compute_grid(ctx, out, outdir / "progress")
    torch.save(out, outdir / f"rank{ctx.rank}.pt")
    ctx.barrier()
    ctx.shutdown()


if __name__ == "__main__":
    main()
