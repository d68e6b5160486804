"""The import layering of DESIGN.md, checked with import-linter.

viz/ and cli/ live at the top level and are mapped into the package at install time, so
the check runs on a temporary tree of symbolic links shaped like the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_layers_hold(tmp_path: Path) -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    pkg = tmp_path / "landscape"
    pkg.mkdir()
    for item in (ROOT / "landscape").iterdir():
        if item.name != "__pycache__":
            (pkg / item.name).symlink_to(item)
    for name in ("viz", "cli", "configs"):
        (pkg / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run(
        [exe, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_core_import_is_headless() -> None:
    code = (
        "import sys, landscape, landscape.io, landscape.engine, landscape.hessian;"
        "bad=[m for m in ('matplotlib','pyvista','typer','rich') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
