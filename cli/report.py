"""``landscape report``: one self-contained HTML file for a run or a comparison directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from landscape.cli.app import app
from landscape.cli.common import QuietOpt, friendly_errors, out_console, progress_bars
from landscape.compare import compare_runs
from landscape.errors import RunDirError


def _comparison_dir(path: Path) -> dict | None:
    table = path / "table.json"
    if not table.is_file():
        return None
    try:
        data = json.loads(table.read_text())
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{table} is broken ({exc.msg}); rerun `landscape compare`.") from exc
    return data if isinstance(data, dict) and data.get("kind") == "comparison" else None


@app.command("report")
@friendly_errors
def report(
    run: Annotated[
        Path, typer.Argument(help="A run directory (from `landscape scan`) or a comparison.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML file (default RUN/report.html).")
    ] = None,
    render_3d: Annotated[
        bool, typer.Option("--render-3d/--no-render-3d", help="Include a PyVista 3D view.")
    ] = True,
    quiet: QuietOpt = False,
) -> None:
    """Write ONE self-contained HTML report (tables, embedded figures, configuration)."""
    from landscape.cli.compare import write_outputs
    from landscape.viz.report import write_run_report

    if not run.exists():
        raise RunDirError(
            f"{run} does not exist; give a run directory written by `landscape scan` or a"
            " comparison directory written by `landscape compare`."
        )
    if not run.is_dir():
        raise RunDirError(f"{run} is a file; give a run or comparison directory.")
    cmp_data = _comparison_dir(run)
    with progress_bars(quiet):
        if cmp_data is not None:
            check = cmp_data.get("check", {})
            boot = cmp_data.get("bootstrap", {})
            cmp = compare_runs(
                [Path(r["path"]) for r in cmp_data.get("runs", [])],
                force=bool(check.get("forced")),
                surfaces=bool(check.get("same_architecture", True)),
                n_boot=int(boot.get("n_boot", 2000)),
                ci_level=float(boot.get("ci_level", 0.95)),
                seed=int(boot.get("seed", 0)),
            )
            written = write_outputs(cmp, run, ("png",), report=True, render_3d=render_3d)
            path = written["report.html"]
            if out is not None:
                path = Path(path).replace(out)
        else:
            path = write_run_report(run, out, render_3d=render_3d)
    out_console.print(f"report: [bold]{path}[/bold]")
