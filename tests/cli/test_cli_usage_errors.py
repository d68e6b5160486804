"""Usage errors print click's short usage message and exit 2; ``--help`` works everywhere.

Every registered command (and sub-command) is taken from the typer app itself, so a new
command is covered without editing this file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from landscape.cli.app import app, main


def _walk(cmd: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    out = [path] if path else []
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        out.extend(_walk(sub, (*path, name)))
    return out


COMMANDS = _walk(typer.main.get_command(app), ())


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    code = info.value.code
    cap = capsys.readouterr()
    return (code if isinstance(code, int) else 1), cap.out + cap.err


def _short_usage_error(code: int, text: str, *needles: str) -> None:
    assert code == 2, (code, text)
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) <= 5, text
    assert lines[0].startswith("Usage: landscape"), text
    assert "--help" in text, text
    for n in needles:
        assert n in text, (n, text)


def test_every_command_is_found() -> None:
    names = {p[0] for p in COMMANDS}
    assert {"scan", "surface", "render", "metrics", "compare"} <= names
    assert len(COMMANDS) >= 9


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p))
def test_unknown_option(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run([*path, "--bogus"], capsys)
    _short_usage_error(code, text, "--bogus")


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p))
def test_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run([*path, "--help"], capsys)
    assert code == 0, text
    assert "Usage" in text and "Traceback" not in text, text


def test_suggestion_for_a_near_miss(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(["scan", "model.pt", "--no-figure"], capsys)
    _short_usage_error(code, text, "--no-figure", "--no-figures")


def test_missing_argument(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(["scan"], capsys)
    _short_usage_error(code, text, "Missing argument")


def test_bad_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(["render", str(tmp_path), "--camera", "fish"], capsys)
    _short_usage_error(code, text, "--camera", "fish", "iso")


def test_bad_int(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(["scan", "model.pt", "--top-k", "many"], capsys)
    _short_usage_error(code, text, "--top-k", "integer")


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(["scna"], capsys)
    _short_usage_error(code, text, "scna")


def test_console_script() -> None:
    exe = Path(sys.executable).with_name("landscape")
    script = str(exe) if exe.exists() else shutil.which("landscape")
    assert script, "the `landscape` console script is not installed; pip install -e ."
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.run(
        [script, "scan", "model.pt", "--bogus"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    text = proc.stdout + proc.stderr
    _short_usage_error(proc.returncode, text, "--bogus")
