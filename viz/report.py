"""Self-contained HTML reports: one file with the tables, every figure and the configuration.

The file has no external dependencies: CSS is inline, figures are embedded as base64
``data:`` URIs and there are no scripts, so it opens offline in any browser and can be
mailed or archived as it is.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from landscape.compare import (
    Comparison,
    RankCorrelation,
    RunData,
    format_value,
    load_run,
    metric_label,
    run_metrics,
)
from landscape.io.rundir import atomic_write

REPORT_NAME = "report.html"

_CSS = """
:root { --fg:#1d2330; --muted:#5b6474; --line:#dde1e8; --accent:#0072B2; --good:#e7f3ec;
        --bad:#fbeaea; --bg:#ffffff; --head:#f4f6f9; }
* { box-sizing: border-box; }
body { font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: var(--bg); margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 60px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: var(--muted); font-size: 12.5px; margin-bottom: 18px; }
.callout { border-left: 4px solid var(--accent); background: #f2f7fb; padding: 10px 14px;
           margin: 12px 0; border-radius: 3px; }
.callout.warn { border-color: #D55E00; background: #fdf3ec; }
.callout ul { margin: 4px 0; padding-left: 20px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13px; width: auto; }
th, td { border: 1px solid var(--line); padding: 5px 9px; vertical-align: top; }
th { background: var(--head); text-align: left; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.role-performance td:first-child, tr.role-info td:first-child { color: var(--muted); }
.rank { display: inline-block; min-width: 18px; padding: 0 4px; margin-left: 6px;
        border-radius: 9px; background: #e9edf3; color: var(--muted); font-size: 11px;
        text-align: center; }
.rank.r1 { background: var(--accent); color: #fff; font-weight: 600; }
.scroll { overflow-x: auto; }
figure { margin: 18px 0 26px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 3px;
             background: #fff; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 4px; }
details { margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f6f8fa; border: 1px solid var(--line); padding: 10px; border-radius: 3px;
      overflow-x: auto; font-size: 12px; line-height: 1.4; }
.small { font-size: 12px; color: var(--muted); }
.sig { color: #006d3c; font-weight: 600; }
.nsig { color: var(--muted); }
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def png_data_uri(data: bytes) -> str:
    """A ``data:image/png;base64,…`` URI of PNG bytes.

    Example:
        >>> png_data_uri(b"abc")
        'data:image/png;base64,YWJj'
    """
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_png(fig: Any, dpi: int = 150) -> bytes:
    """Render a matplotlib figure to PNG bytes (and close it)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _png_dpi(data: bytes) -> float | None:
    i = data.find(b"pHYs", 0, 4096)
    if i < 0 or len(data) < i + 13 or data[i + 12] != 1:
        return None
    return int.from_bytes(data[i + 4 : i + 8], "big") * 0.0254


def _img(data: bytes, alt: str, caption: str) -> str:
    size = _png_size(data)
    style = ""
    if size is not None:
        # figures at about 150 CSS px per inch; renders without a resolution at 70 %
        dpi = _png_dpi(data)
        css = round(size[0] / dpi * 150) if dpi else round(size[0] * 0.7)
        css = min(1100 if dpi else 900, css)
        if css > 0:
            style = f' style="width:{css}px"'
    return (
        f'<figure><img src="{png_data_uri(data)}" alt="{_e(alt)}"{style}>'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _page(title: str, body: str) -> str:
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    try:
        from landscape import __version__ as version
    except ImportError:  # pragma: no cover
        version = "?"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{_e(title)}</h1>\n"
        f'<div class="meta">landscape {version} · generated {stamp}</div>\n'
        f"{body}\n</main>\n</body>\n</html>\n"
    )


def _write(path: Path, text: str) -> Path:
    import os

    atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # a report is for sharing (temp files are created 0600)
    return path


def _json_block(obj: Any) -> str:
    return f"<pre>{_e(json.dumps(obj, indent=2, sort_keys=False, default=str))}</pre>"


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}" if math.isfinite(x) else str(x)
    if isinstance(x, Mapping) and "mean" in x:
        m, s = x.get("mean"), x.get("stderr")
        if isinstance(m, int | float) and isinstance(s, int | float) and math.isfinite(s):
            return f"{m:.6g} ± {s:.2g}"
        return _fmt(m)
    if isinstance(x, list | tuple):
        return ", ".join(_fmt(v) for v in x[:8]) + (" …" if len(x) > 8 else "")
    return "—" if x is None else str(x)


# -- comparison report ----------------------------------------------------------------


def _label(comparison: Comparison, key: str) -> str:
    try:
        return comparison.table.row(key).label
    except KeyError:
        return metric_label(key)


def _corr_sentence(c: RankCorrelation, label: str) -> str:
    if not math.isfinite(c.kendall_tau):
        return f"{_e(label)}: {_e(c.note)}."
    agree = c.kendall_tau * c.expected_sign
    direction = (
        "sharper runs had larger gaps"
        if agree > 0
        else ("sharper runs had smaller gaps" if agree < 0 else "no monotone relation")
    )
    sig = (
        '<span class="sig">significant</span>'
        if c.significant
        else '<span class="nsig">not significant</span>'
    )
    ci = (
        f", 95% CI [{c.kendall_ci[0]:+.2f}, {c.kendall_ci[1]:+.2f}]"
        if c.ci_reliable
        else " (too few runs for a CI)"
    )
    return (
        f"<b>{_e(label)}</b>: τ = {c.kendall_tau:+.2f}{ci}, "
        f"p = {c.kendall_p:.2g} ({_e(c.p_method)}), {sig}; {direction}."
    )


def _findings(comparison: Comparison) -> str:
    t = comparison.table
    items = []
    for key in ("lambda_max", "trace"):
        try:
            row = t.row(key)
        except KeyError:
            continue
        if 1 in row.ranks:
            first = t.runs[row.ranks.index(1)]
            worst = max(k for k in row.ranks if k is not None)
            last = t.runs[row.ranks.index(worst)]
            items.append(
                f"Flattest by {_e(row.label)}: <b>{_e(first)}</b>; sharpest: <b>{_e(last)}</b>."
            )
    try:
        gap = t.row("generalization_gap")
        if 1 in gap.ranks:
            items.append(f"Smallest generalization gap: <b>{_e(t.runs[gap.ranks.index(1)])}</b>.")
    except KeyError:
        items.append("The runs have no test data, so flatness is not compared with a gap.")
    for c in t.correlations[:4]:
        items.append(_corr_sentence(c, _label(comparison, c.metric)))
    if t.correlations:
        items.append(_e(t.correlations[0].note) + ".")
    return '<div class="callout"><ul>' + "".join(f"<li>{i}</li>" for i in items) + "</ul></div>"


def _check_block(comparison: Comparison) -> str:
    chk = comparison.check
    if chk.comparable and not chk.notes:
        return (
            '<div class="callout">All runs share data, loss, seeds, probe counts and surface'
            " settings: their numbers are comparable.</div>"
        )
    cls = "callout warn" if chk.forced else "callout"
    items = [f"<li>{_e(d.describe())} (compared anyway: --force)</li>" for d in chk.differences]
    items += [f"<li>{_e(n)}</li>" for n in chk.notes if not n.startswith("forced despite")]
    return f'<div class="{cls}"><ul>{"".join(items)}</ul></div>'


def _runs_table(comparison: Comparison) -> str:
    head = "<tr><th>run</th><th>architecture</th><th>data (train / test)</th><th>loss</th>" \
        "<th>checkpoint</th><th>run directory</th></tr>"  # fmt: skip
    rows = []
    for info in comparison.run_info():
        data = info.get("data") or {}
        rows.append(
            "<tr>"
            f"<td>{_e(info['name'])}</td>"
            f"<td>{_e(info.get('factory') or '?')}<br><span class='small'>"
            f"{_e(info.get('num_params'))} parameters</span></td>"
            f"<td>{_e(data.get('name', '?'))} ({_e(data.get('num_samples'))} /"
            f" {_e(data.get('num_test_samples'))})</td>"
            f"<td>{_e(info.get('loss_function') or '?')}</td>"
            f"<td class='small'>{_e(info.get('checkpoint') or '—')}</td>"
            f"<td class='small'>{_e(info['path'])}</td>"
            "</tr>"
        )
    return f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'


def _metrics_table(comparison: Comparison) -> str:
    t = comparison.table
    head = "<tr><th>metric</th>" + "".join(f"<th>{_e(n)}</th>" for n in t.runs)
    head += "<th>τ with gap</th></tr>"
    rows = []
    for r in t.rows:
        cells = [f"<td>{_e(r.label)}</td>"]
        for v, k in zip(r.values, r.ranks, strict=True):
            badge = f'<span class="rank{" r1" if k == 1 else ""}">{k}</span>' if k else ""
            cells.append(f'<td class="num">{_e(format_value(v))}{badge}</td>')
        c = t.correlation(r.key)
        cells.append(
            f'<td class="num">{c.kendall_tau:+.2f}</td>'
            if c is not None and math.isfinite(c.kendall_tau)
            else "<td></td>"
        )
        rows.append(f'<tr class="role-{r.role}">' + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'


def _corr_table(comparison: Comparison) -> str:
    t = comparison.table
    if not t.correlations:
        return "<p>No correlations: the runs have no test data (no generalization gap).</p>"
    lvl = int(round(100 * t.ci_level))
    notes = {c.note for c in t.correlations}
    one_note = len(notes) == 1
    head = (
        f"<tr><th>metric</th><th>n</th><th>Kendall τ</th><th>{lvl}% CI</th><th>p</th>"
        f"<th>Spearman ρ</th><th>{lvl}% CI</th><th>p</th><th>expected sign</th>"
        + ("" if one_note else "<th>note</th>")
        + "</tr>"
    )

    def ci(v: tuple[float, float], ok: bool) -> str:
        if not ok or not all(math.isfinite(x) for x in v):
            return "—"
        return f"[{v[0]:+.2f}, {v[1]:+.2f}]"

    def num(x: float, fmt: str) -> str:
        return format(x, fmt) if math.isfinite(x) else "—"

    rows = []
    for c in t.correlations:
        rows.append(
            "<tr>"
            f"<td>{_e(_label(comparison, c.metric))}</td><td class='num'>{c.n}</td>"
            f"<td class='num'>{num(c.kendall_tau, '+.3f')}</td>"
            f"<td class='num'>{ci(c.kendall_ci, c.ci_reliable)}</td>"
            f"<td class='num'>{num(c.kendall_p, '.3g')}</td>"
            f"<td class='num'>{num(c.spearman_rho, '+.3f')}</td>"
            f"<td class='num'>{ci(c.spearman_ci, c.ci_reliable)}</td>"
            f"<td class='num'>{num(c.spearman_p, '.3g')}</td>"
            f"<td class='num'>{'+' if c.expected_sign > 0 else '−'}</td>"
            + ("" if one_note else f"<td class='small'>{_e(c.note)}</td>")
            + "</tr>"
        )
    common = f'<div class="callout">{_e(next(iter(notes)))}.</div>' if one_note else ""
    return (
        f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>{common}'
        f'<p class="small">Intervals: percentile bootstrap over runs ({t.n_boot} replicates,'
        f" seed {t.seed}; values with a standard error are also perturbed by it), shown only"
        " with ≥ 8 runs. p: two-sided permutation test (exact up to 8 runs). Expected sign +:"
        " a sharper minimum should have a larger gap; −: the metric grows with flatness.</p>"
    )


def _figures_block(
    figures: Mapping[str, Path | bytes], captions: Mapping[str, str], skipped: Mapping[str, str]
) -> str:
    parts = []
    for name, src in figures.items():
        data = src if isinstance(src, bytes) else Path(src).read_bytes()
        parts.append(_img(data, name, captions.get(name, name)))
    if skipped:
        parts.append(
            '<div class="callout warn"><b>Figures not made</b><ul>'
            + "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in skipped.items())
            + "</ul></div>"
        )
    return "\n".join(parts) or "<p>No figures.</p>"


def comparison_report_html(
    comparison: Comparison,
    figures: Mapping[str, Path | bytes],
    *,
    captions: Mapping[str, str] | None = None,
    skipped: Mapping[str, str] | None = None,
    title: str = "landscape comparison",
) -> str:
    """The comparison report as one HTML string (see :func:`write_comparison_report`)."""
    body = [
        "<h2>Findings</h2>",
        _findings(comparison),
        "<h2>Comparability</h2>",
        _check_block(comparison),
        "<h2>Runs</h2>",
        _runs_table(comparison),
        "<h2>Metrics</h2>",
        '<p class="small">value ± standard error (Lanczos residual bound for λmax, binomial'
        " for accuracies); badge: rank, 1 = flattest (or smallest gap).</p>",
        _metrics_table(comparison),
        "<h2>Does flatness track generalization?</h2>",
        _corr_table(comparison),
        "<h2>Figures</h2>",
        _figures_block(figures, captions or {}, skipped or {}),
        "<h2>Configuration</h2>",
    ]
    for r in comparison.runs:
        body.append(f"<details><summary>{_e(r.name)}</summary>{_json_block(r.config)}</details>")
    body.append(
        "<details><summary>comparison settings</summary>"
        + _json_block(
            {
                "check": comparison.check.to_dict(),
                "bootstrap": {
                    "n_boot": comparison.table.n_boot,
                    "ci_level": comparison.table.ci_level,
                    "seed": comparison.table.seed,
                },
            }
        )
        + "</details>"
    )
    return _page(title, "\n".join(body))


def write_comparison_report(
    comparison: Comparison,
    figures: Mapping[str, Path | bytes],
    path: str | Path,
    *,
    captions: Mapping[str, str] | None = None,
    skipped: Mapping[str, str] | None = None,
    title: str = "landscape comparison",
) -> Path:
    """Write the self-contained comparison report (tables, figures, configuration).

    Args:
        comparison: the comparison.
        figures: ``{name: PNG path or PNG bytes}``, embedded in this order.
        path: the HTML file to write (atomically).
        captions: ``{name: caption}``.
        skipped: ``{figure name: why it is missing}``, listed in the report.
        title: the page title.

    Returns:
        The path written.

    Example:
        >>> write_comparison_report  # doctest: +ELLIPSIS
        <function write_comparison_report at ...>
    """
    text = comparison_report_html(
        comparison, figures, captions=captions, skipped=skipped, title=title
    )
    return _write(Path(path), text)


# -- single-run report ----------------------------------------------------------------


def _summary_rows(run: RunData) -> list[tuple[str, str]]:
    s = run.summary
    model = s.get("model", {}) or {}
    data = s.get("data", {}) or {}
    h = s.get("hessian", {}) or {}
    rows = [
        ("model", f"{model.get('factory') or model.get('format') or '?'}"),
        ("parameters", _fmt(model.get("num_params"))),
        ("data", f"{data.get('name', '?')}"),
        ("samples (train / test)", f"{data.get('num_samples')} / {data.get('num_test_samples')}"),
        ("loss function", _fmt(s.get("loss_function"))),
    ]
    for key, (est, _role) in run_metrics(run).items():
        rows.append((metric_label(key), format_value(est)))
    if h.get("top_eigenvalues"):
        rows.append(("top eigenvalues", _fmt(h.get("top_eigenvalues"))))
        conv = h.get("top_converged")
        if conv is not None:
            rows.append(("top eigenpairs converged", f"{sum(map(bool, conv))} / {len(conv)}"))
    if h.get("bottom_eigenvalues"):
        rows.append(("bottom eigenvalues", _fmt(h.get("bottom_eigenvalues"))))
    if "matvecs" in h:
        rows.append(("Hessian-vector products", _fmt(h.get("matvecs"))))
    if "surface" in s and "skipped" not in (s["surface"] or {}):
        sf = s["surface"]
        rows.append(
            (
                "surface",
                f"{'x'.join(map(str, sf.get('grid', [])))} grid, range {_fmt(sf.get('range'))},"
                f" {sf.get('normalization', '?')} normalization, min loss {_fmt(sf.get('min_loss'))}",
            )
        )
    timing = s.get("timing")
    if isinstance(timing, Mapping) and timing:
        rows.append(("time (s)", ", ".join(f"{k} {_fmt(v)}" for k, v in timing.items())))
    return rows


def run_report_html(run: RunData, *, render_3d: bool = True) -> str:
    """The single-run report as one HTML string (see :func:`write_run_report`)."""
    from landscape.viz import compare_plots as cp

    figures: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    skipped: dict[str, str] = {}
    fig_dir = run.path / "figures"
    if fig_dir.is_dir():
        for p in sorted(fig_dir.glob("*.png")):
            figures[p.stem] = p.read_bytes()
            captions[p.stem] = f"{p.name} (from the run's figures/)"
    if figures:
        pass  # the scan rendered its figures: embed those, draw nothing twice
    elif run.has_surface or run.has_density:
        if run.has_surface:
            figures["curves"] = figure_png(cp.curves_figure([run]))
            captions["curves"] = "Loss along the first normalized direction through the minimum."
            if cp.grid2d(run) is not None:
                figures["contours"] = figure_png(cp.contours_figure([run]))
                captions["contours"] = "2D loss surface; + marks the trained parameters."
        else:
            skipped["surface"] = "the scan stored no surface (rerun with --surface)"
        if run.has_density:
            figures["density"] = figure_png(cp.density_figure([run]))
            captions["density"] = "Hessian eigenvalue density (SLQ), log scale."
        if render_3d and cp.grid2d(run) is not None:
            ok, why = cp.offscreen_available()
            if ok:
                import tempfile

                with tempfile.TemporaryDirectory() as tmp:
                    p = cp.surfaces_3d_panel([run], Path(tmp) / "s.png")
                    figures["surfaces_3d"] = p.read_bytes()
                captions["surfaces_3d"] = "3D view of the 2D surface."
            else:
                skipped["surfaces_3d"] = why
    else:
        skipped["all"] = "the run has neither a surface nor a spectral density in results.nc"
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td class='num'>{_e(v)}</td></tr>" for k, v in _summary_rows(run)
    )
    metrics = run.summary.get("metrics")
    body = [
        f'<p class="small">run directory: {_e(run.path)}</p>',
        "<h2>Summary</h2>",
        f"<table>{rows}</table>",
        "<h2>Figures</h2>",
        _figures_block(figures, captions, skipped),
        "<h2>Configuration</h2>",
        _json_block(run.config),
    ]
    if isinstance(metrics, Mapping):
        body += ["<details><summary>metrics section</summary>", _json_block(metrics), "</details>"]
    body += [
        "<details><summary>full summary.json</summary>",
        _json_block(run.summary),
        "</details>",
    ]
    return _page(f"landscape report · {run.name}", "\n".join(body))


def write_run_report(
    run_dir: str | Path, path: str | Path | None = None, *, render_3d: bool = True
) -> Path:
    """Write a self-contained HTML report of one run (summary, figures, configuration).

    The run's own ``figures/*.png`` are embedded when the scan rendered them; otherwise
    the 1D slice, 2D contour, spectral density and 3D view are drawn from ``results.nc``.

    Args:
        run_dir: the run directory.
        path: the HTML file (default ``RUN/report.html``).
        render_3d: include a PyVista view of the surface when off-screen rendering works.

    Returns:
        The path written.

    Raises:
        RunDirError: if the run directory is missing, broken or from an older format.

    Example:
        >>> write_run_report  # doctest: +ELLIPSIS
        <function write_run_report at ...>
    """
    run = load_run(run_dir, require=("loss",))
    out = Path(path) if path is not None else run.path / REPORT_NAME
    return _write(out, run_report_html(run, render_3d=render_3d))


def figure_sources(files: Mapping[str, Sequence[Path]]) -> dict[str, Path]:
    """``{name: PNG path}`` from a FigureSet's ``files`` (names without a PNG are dropped)."""
    out = {}
    for name, paths in files.items():
        png = next((p for p in paths if Path(p).suffix == ".png"), None)
        if png is not None:
            out[name] = Path(png)
    return out
