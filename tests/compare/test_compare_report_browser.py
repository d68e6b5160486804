"""The HTML report opened in headless Chromium: tables render, every image decodes, no network.

CI installs Chromium with `apt-get install -y chromium` (Debian); without it these tests skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from landscape.viz.report import write_run_report

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install -y chromium); the report is"
    " checked in a real browser only where it is",
)

PROBE = (
    "<script>window.addEventListener('load',function(){"
    "var im=Array.prototype.slice.call(document.images);"
    "var ok=im.filter(function(i){return i.complete&&i.naturalWidth>0;}).length;"
    "var d=document.createElement('div');d.id='img-check';"
    "d.textContent='loaded='+ok+' total='+im.length;document.body.appendChild(d);});</script>"
)


def _chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", f"--user-data-dir={profile}", *args]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _dom_with_probe(html_path: Path, tmp: Path) -> str:
    probe = tmp / f"probe-{html_path.name}"
    probe.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    proc = _chromium("--dump-dom", probe.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _assert_offline(html: str) -> None:
    assert not re.search(r"<(script|link|iframe)[^>]*(src|href)=", html)
    assert not re.search(r"(src|href)=\"https?://", html)
    assert "<script" not in html  # the report itself has no scripts at all


def test_comparison_report_renders_in_chromium(tmp_path, cli_comparison):
    out, result = cli_comparison
    assert result.exit_code == 0, result.output
    report = out / "report.html"
    html = report.read_text()
    _assert_offline(html)
    dom = _dom_with_probe(report, tmp_path)
    m = re.search(r'id="img-check">loaded=(\d+) total=(\d+)<', dom)
    assert m is not None, dom[-500:]
    assert int(m.group(1)) == int(m.group(2)) == 4
    for name in ("sgd_b16", "sgd_b64", "sgd_b256", "adam_b64"):
        assert f"<td>{name}</td>" in dom  # the runs table was rendered
    assert "λmax (top Hessian eigenvalue)" in dom and "Kendall τ" in dom
    assert dom.count('<span class="rank r1">1</span>') >= 4
    shot = tmp_path / "shot.png"
    proc = _chromium("--window-size=1200,2400", f"--screenshot={shot}", report.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] == 2400 and img.shape[1] == 1200
    assert float(np.std(img[..., :3])) > 0.05  # not a blank page


def test_run_report_renders_in_chromium(tmp_path, fake_runs_shared):
    report = write_run_report(fake_runs_shared[2], tmp_path / "run.html", render_3d=False)
    _assert_offline(report.read_text())
    dom = _dom_with_probe(report, tmp_path)
    m = re.search(r'id="img-check">loaded=(\d+) total=(\d+)<', dom)
    assert m is not None and int(m.group(1)) == int(m.group(2)) == 3
    assert "landscape report · sgd_b256" in dom and "<th>parameters</th>" in dom
