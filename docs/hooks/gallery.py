"""mkdocs hooks: command help pages and a figure gallery built from a small run.

``<!-- help: COMMAND -->`` in a page is replaced by ``landscape COMMAND --help``, and
``<!-- metrics-table -->`` by the metric registry as a table. The
gallery page is generated at build time: a tiny model is trained and scanned with the
commands shown on the page, and every figure they write is placed under ``gallery/``.
Set ``LANDSCAPE_DOCS_GALLERY=0`` to skip the run (the page then says so).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

_HELP = re.compile(r"<!--\s*help:\s*([a-z ]+?)\s*-->")
_METRICS_TABLE = re.compile(r"<!--\s*metrics-table\s*-->")
_ENV = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", "MPLBACKEND": "Agg"}
_TRAIN = (
    "from landscape.experiments.demo import train_demo_model\n"
    "from landscape.training import TrainConfig\n"
    "train_demo_model('{path}', seed={seed}, channels=4,"
    " config=TrainConfig(epochs=3, lr={lr}, batch_size={bs}, seed={seed}))"
)


def _landscape(*args: str) -> str:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("landscape")), *args],
        capture_output=True,
        text=True,
        env=_ENV,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"landscape {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def metrics_table(markdown: str) -> str:
    """Replace ``<!-- metrics-table -->`` with the registry's markdown table."""
    if not _METRICS_TABLE.search(markdown):
        return markdown
    from landscape.metrics.registry import markdown_table

    table = markdown_table()
    return _METRICS_TABLE.sub(lambda _: table, markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace help placeholders with ``--help`` text and the metrics placeholder with the table."""

    def repl(m: re.Match[str]) -> str:
        text = _landscape(*m.group(1).split(), "--help").rstrip()
        return f"```text\n{text}\n```"

    return metrics_table(_HELP.sub(repl, markdown))


def _build_gallery(work: Path) -> list[tuple[str, list[Path]]]:
    """Run the gallery's commands in ``work``; return (command, figures) pairs."""
    steps: list[tuple[str, list[Path]]] = []

    def train(name: str, seed: int, lr: float, bs: int) -> None:
        code = _TRAIN.format(path=work / name, seed=seed, lr=lr, bs=bs)
        subprocess.run([sys.executable, "-c", code], check=True, env=_ENV, capture_output=True)

    def run(cmd: list[str], figures_dir: Path | None) -> None:
        _landscape(*cmd, "--quiet")
        shown = "landscape " + " ".join(shlex.quote(c.replace(str(work) + "/", "")) for c in cmd)
        figs = sorted(figures_dir.rglob("*.png")) if figures_dir else []
        steps.append((shown, figs))

    train("model.pt", 0, 0.05, 64)
    train("model_b.pt", 1, 0.2, 256)
    scan = work / "runs/scan"
    run(["scan", str(work / "model.pt"), "--preset", "scan_quick", "--out", str(scan)], scan)
    line = work / "runs/line"
    run(
        ["surface", str(work / "model.pt"), "--dims", "1", "--grid", "41", "--out", str(line)],
        None,
    )
    run(["render", str(line), "--format", "png"], line / "figures")
    scan_b = work / "runs/scan_b"
    run(["scan", str(work / "model_b.pt"), "--preset", "scan_quick", "--out", str(scan_b)], None)
    cmp_dir = work / "runs/compare"
    run(["compare", str(scan), str(scan_b), "--out", str(cmp_dir)], cmp_dir)
    conn = work / "runs/connect"
    run(["connect", str(work / "model.pt"), str(work / "model_b.pt"), "--out", str(conn)], conn)
    return steps


def _gallery_markdown(steps: list[tuple[str, list[Path]]], uris: dict[Path, str]) -> str:
    out = [
        "# Gallery",
        "",
        "Every figure below was made while this site was built, by the command above it,",
        "from a 4-channel digits CNN trained for three epochs (two of them, with different",
        "learning rates and batch sizes, for the comparison). Nothing here is a stored image.",
        "",
    ]
    for cmd, figs in steps:
        out += ["```bash", cmd, "```", ""]
        for fig in figs:
            out += [f"![{fig.stem}]({uris[fig]})", "", f"`{fig.name}`", ""]
    return "\n".join(out)


def on_files(files: Files, config: Any) -> Files:
    """Add the generated gallery page and its figures to the site."""
    if os.environ.get("LANDSCAPE_DOCS_GALLERY", "1") == "0":
        text = "# Gallery\n\nThis build skipped the gallery (`LANDSCAPE_DOCS_GALLERY=0`).\n"
        files.append(File.generated(config, "gallery.md", content=text))
        return files
    work = Path(tempfile.mkdtemp(prefix="landscape-gallery-"))
    steps = _build_gallery(work)
    uris: dict[Path, str] = {}
    for i, (_, figs) in enumerate(steps):
        for fig in figs:
            uri = f"gallery/{i}-{fig.parent.parent.name}-{fig.name}"
            uris[fig] = uri
            files.append(File.generated(config, uri, abs_src_path=str(fig)))
    files.append(File.generated(config, "gallery.md", content=_gallery_markdown(steps, uris)))
    return files
