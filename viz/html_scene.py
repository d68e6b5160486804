"""A self-contained interactive HTML view of a surface (no network, no WebGL, no plugins).

PyVista's ``export_html`` needs trame, which is not a dependency; instead the page embeds
the grid as JSON and draws it with a small vanilla-JavaScript 2D-canvas viewer: a
rotatable shaded height field and a heat map with a hover read-out for 2D surfaces,
curves for 1D, and slices with a slider for 3D grids.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from landscape.io.rundir import atomic_write
from landscape.io.runs import open_run
from landscape.surface.result import Surface
from landscape.viz.labels import axis_label

_PLAIN_LABELS = {0: "alpha", 1: "beta", 2: "gamma"}


def _clean(values: np.ndarray) -> list[Any]:
    """Flatten (C order) to JSON numbers, non-finite values as null."""
    flat = np.asarray(values, dtype=float).ravel(order="C")
    return [float(v) if math.isfinite(v) else None for v in flat.tolist()]


def scene_data(surf: Surface, title: str) -> dict[str, Any]:
    """The JSON the page embeds: axes, flattened variables (C order), labels and markers.

    Example:
        >>> a = np.linspace(-1, 1, 3)
        >>> d = scene_data(Surface((a,), a**2, np.full(3, np.nan)), "t")
        >>> d["variables"]["train_loss"], d["min"]["index"]
        ([1.0, 0.0, 1.0], [1])
    """
    am = surf.argmin("train_loss")
    labels = []
    for i in range(surf.dims):
        text = axis_label(surf, i)
        plain = (
            text.replace(r"$\delta$", "δ")
            .replace(r"$\eta$", "η")
            .replace(r"$\zeta$", "ζ")
            .replace(r"$\alpha$", "α")
            .replace(r"$\beta$", "β")
            .replace(r"$\gamma$", "γ")
            .replace(r"$\theta_0 \to \theta_1$", "θ0 → θ1")
            .replace(r"$\theta_0, \theta_1, \theta_2$", "θ0, θ1, θ2")
        )
        plain = plain.replace("$v_", "v").replace("$", "")
        labels.append(plain)
    data: dict[str, Any] = {
        "title": title,
        "dims": surf.dims,
        "names": list(surf.axis_names),
        "labels": labels,
        "shape": list(surf.shape),
        "axes": [[float(x) for x in a] for a in surf.axes],
        "variables": {k: _clean(v) for k, v in surf.variables.items()},
        "kind": surf.kind,
        "normalization": surf.normalization,
        "min": None
        if am is None
        else {"index": list(am[0]), "value": am[1], "point": list(surf.point(am[0]))},
        "center": list(surf.center_index()) if surf.contains_center() else None,
        "attrs": {k: v for k, v in surf.attrs.items() if _json_number_or_text(v)},
    }
    if surf.trajectory is not None:
        data["trajectory"] = [[float(x) for x in row] for row in surf.trajectory]
    points = surf.anchor_points()
    if points is not None:
        data["anchors"] = [[float(x) for x in row] for row in points]
    return data


def _json_number_or_text(v: Any) -> bool:
    """Whether an attribute goes into the page (finite numbers, text and lists)."""
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, str | int | list)


def _json_for_script(obj: Any) -> str:
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 18px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px 0; }
.meta { color: #555; font-size: 13px; margin: 0 0 10px 0; }
.ctl { margin: 8px 0; font-size: 14px; display: flex; gap: 14px; align-items: center; flex-wrap: wrap; }
.stage { display: flex; gap: 6px; align-items: flex-start; }
canvas { background: #fff; }
#cv { border: 1px solid #ddd; cursor: grab; touch-action: none; }
#info { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; min-height: 1.4em; margin-top: 6px; }
.hint { color: #777; font-size: 12px; }
</style>
</head>
<body>
<h1>__TITLE__</h1>
<p class="meta">__META__</p>
<div class="ctl">
  <label>variable <select id="var"></select></label>
  <label id="viewctl">view <select id="view"></select></label>
  <span id="slicectl" style="display:none">
    <label>slice normal <select id="sliceaxis"></select></label>
    <input type="range" id="slice" min="0" max="0" step="1" value="0">
    <span id="sliceval"></span>
  </span>
  <label><input type="checkbox" id="logc"> log colour scale</label>
  <span class="hint" id="hint"></span>
</div>
<div class="stage">
  <canvas id="cv" width="860" height="620"></canvas>
  <canvas id="cb" width="96" height="620"></canvas>
</div>
<div id="info"></div>
<noscript>This page needs JavaScript to draw the surface; the data are embedded below in the
script element with id "landscape-data" (JSON).</noscript>
<script id="landscape-data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("landscape-data").textContent);
const VIR = [[68,1,84],[72,35,116],[64,67,135],[52,94,141],[41,120,142],[32,144,140],
             [34,167,132],[68,190,112],[121,209,81],[189,223,38],[253,231,37]];
function cmap(t) {
  if (!(t >= 0)) t = 0; if (t > 1) t = 1;
  const x = t * (VIR.length - 1), i = Math.min(Math.floor(x), VIR.length - 2), f = x - i;
  return VIR[i].map((c, k) => c + (VIR[i + 1][k] - c) * f);
}
function rgb(c, s) { s = s === undefined ? 1 : s;
  return "rgb(" + Math.round(c[0] * s) + "," + Math.round(c[1] * s) + "," + Math.round(c[2] * s) + ")"; }
function fmt(v) { if (v === null || v === undefined || !isFinite(v)) return "n/a";
  const a = Math.abs(v); return (a !== 0 && (a < 1e-3 || a >= 1e4)) ? v.toExponential(3) : (+v.toPrecision(4)).toString(); }

const cv = document.getElementById("cv"), ctx = cv.getContext("2d");
const cb = document.getElementById("cb"), cbx = cb.getContext("2d");
const info = document.getElementById("info");
const selVar = document.getElementById("var"), selView = document.getElementById("view");
const selAxis = document.getElementById("sliceaxis"), slider = document.getElementById("slice");
const logc = document.getElementById("logc");
const shape = D.shape, axes = D.axes;
const state = { az: -0.95, el: 0.62, zoom: 1.0, drag: null, hover: null };

for (const k of Object.keys(D.variables)) { const o = document.createElement("option"); o.value = k; o.textContent = k.replace("_", " "); selVar.appendChild(o); }
const views = D.dims === 1 ? ["curves"] : D.dims === 2 ? ["surface", "heat map"] : ["slices"];
for (const v of views) { const o = document.createElement("option"); o.value = v; o.textContent = v; selView.appendChild(o); }
if (D.dims === 3) {
  document.getElementById("slicectl").style.display = "";
  D.names.forEach((n, i) => { const o = document.createElement("option"); o.value = i; o.textContent = n; selAxis.appendChild(o); });
  selAxis.value = 2;
  const centre = () => { const a = +selAxis.value; slider.max = shape[a] - 1;
    slider.value = D.center ? D.center[a] : Math.floor(shape[a] / 2); };
  selAxis.addEventListener("change", () => { centre(); draw(); });
  centre();
}

function idx(ix) { let f = 0; for (let d = 0; d < shape.length; d++) f = f * shape[d] + ix[d]; return f; }
function field() { return D.variables[selVar.value]; }
function tf(v) { if (v === null) return null; if (logc.checked) return v > 0 ? Math.log10(v) : null; return v; }
function range(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { const t = tf(v); if (t !== null && isFinite(t)) { if (t < lo) lo = t; if (t > hi) hi = t; } }
  if (!isFinite(lo)) { lo = 0; hi = 1; } if (hi <= lo) hi = lo + 1e-12;
  return [lo, hi];
}
function colorbar(lo, hi) {
  const w = cb.width, h = cb.height, top = 40, bot = h - 60, x0 = 8, bw = 18;
  cbx.clearRect(0, 0, w, h);
  for (let y = top; y <= bot; y++) { cbx.fillStyle = rgb(cmap((bot - y) / (bot - top))); cbx.fillRect(x0, y, bw, 1); }
  cbx.strokeStyle = "#444"; cbx.strokeRect(x0, top, bw, bot - top);
  cbx.fillStyle = "#222"; cbx.font = "12px sans-serif"; cbx.textBaseline = "middle";
  for (let k = 0; k <= 5; k++) { const t = lo + (hi - lo) * k / 5, y = bot - (bot - top) * k / 5;
    cbx.fillText(logc.checked ? "1e" + t.toFixed(2) : fmt(t), x0 + bw + 4, y); }
  cbx.textBaseline = "alphabetic"; cbx.fillText(selVar.value.replace("_", " "), 2, top - 14);
}

// -- 2D heat map (also slices of 3D grids) -------------------------------------------
let heat = null;
function heatmap(getv, nx, ny, xs, ys, xl, yl, marks) {
  const W = cv.width, H = cv.height, L = 78, R = 16, T = 16, B = 58;
  const pw = W - L - R, ph = H - T - B;
  const vals = []; for (let i = 0; i < nx; i++) for (let j = 0; j < ny; j++) vals.push(getv(i, j));
  const [lo, hi] = range(vals);
  ctx.clearRect(0, 0, W, H);
  const cw = pw / nx, ch = ph / ny;
  for (let i = 0; i < nx; i++) for (let j = 0; j < ny; j++) {
    const t = tf(getv(i, j));
    ctx.fillStyle = t === null ? "#d9d9d9" : rgb(cmap((t - lo) / (hi - lo)));
    ctx.fillRect(L + i * cw, T + (ny - 1 - j) * ch, Math.ceil(cw), Math.ceil(ch));
  }
  ctx.strokeStyle = "#333"; ctx.strokeRect(L, T, pw, ph);
  ctx.fillStyle = "#222"; ctx.font = "13px sans-serif"; ctx.textAlign = "center";
  for (let k = 0; k <= 4; k++) {
    const i = Math.round(k * (nx - 1) / 4), j = Math.round(k * (ny - 1) / 4);
    ctx.fillText(fmt(xs[i]), L + (i + 0.5) * cw, T + ph + 18);
    ctx.textAlign = "right"; ctx.fillText(fmt(ys[j]), L - 6, T + (ny - 1 - j + 0.5) * ch + 4); ctx.textAlign = "center";
  }
  ctx.fillText(xl, L + pw / 2, H - 12);
  ctx.save(); ctx.translate(18, T + ph / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(yl, 0, 0); ctx.restore();
  const at = (i, j) => [L + (i + 0.5) * cw, T + (ny - 1 - j + 0.5) * ch];
  const pos = (x, y) => [L + pw * (x - xs[0]) / (xs[nx - 1] - xs[0]) * (nx - 1) / nx + cw / 2,
                         T + ph - (ph * (y - ys[0]) / (ys[ny - 1] - ys[0]) * (ny - 1) / ny + ch / 2)];
  if (marks.trajectory) { ctx.strokeStyle = "#d62728"; ctx.lineWidth = 2; ctx.beginPath();
    marks.trajectory.forEach((p, k) => { const q = pos(p[0], p[1]); k ? ctx.lineTo(q[0], q[1]) : ctx.moveTo(q[0], q[1]); }); ctx.stroke(); ctx.lineWidth = 1; }
  if (marks.anchors) for (const p of marks.anchors) { const q = pos(p[0], p[1]); ctx.fillStyle = "#fff"; ctx.strokeStyle = "#000";
    ctx.beginPath(); ctx.moveTo(q[0], q[1] - 6); ctx.lineTo(q[0] + 6, q[1]); ctx.lineTo(q[0], q[1] + 6); ctx.lineTo(q[0] - 6, q[1]); ctx.closePath(); ctx.fill(); ctx.stroke(); }
  if (marks.center) { const q = at(marks.center[0], marks.center[1]); ctx.fillStyle = "#fff"; ctx.strokeStyle = "#000";
    ctx.beginPath(); ctx.arc(q[0], q[1], 5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke(); }
  if (marks.min) { const q = at(marks.min[0], marks.min[1]); star(q[0], q[1], 9); }
  colorbar(lo, hi);
  heat = { L, T, cw, ch, nx, ny, getv, xs, ys, xl, yl };
}
function star(x, y, r) {
  ctx.fillStyle = "#ffd92f"; ctx.strokeStyle = "#000"; ctx.beginPath();
  for (let k = 0; k < 10; k++) { const a = -Math.PI / 2 + k * Math.PI / 5, rr = k % 2 ? r * 0.45 : r;
    k ? ctx.lineTo(x + rr * Math.cos(a), y + rr * Math.sin(a)) : ctx.moveTo(x + rr * Math.cos(a), y + rr * Math.sin(a)); }
  ctx.closePath(); ctx.fill(); ctx.stroke();
}

// -- 2D surface as a shaded height field (painter's algorithm) ------------------------
function surface() {
  heat = null;
  const F = field(), nx = shape[0], ny = shape[1], W = cv.width, H = cv.height;
  const [lo, hi] = range(F);
  const xs = axes[0], ys = axes[1];
  const ext = Math.max(xs[nx - 1] - xs[0], ys[ny - 1] - ys[0]);
  const cx = (xs[0] + xs[nx - 1]) / 2, cy = (ys[0] + ys[ny - 1]) / 2;
  const ca = Math.cos(state.az), sa = Math.sin(state.az), ce = Math.cos(state.el), se = Math.sin(state.el);
  const S = state.zoom * Math.min(W, H) * 0.4;
  const P = new Array(nx * ny);
  for (let i = 0; i < nx; i++) for (let j = 0; j < ny; j++) {
    const t = tf(F[idx([i, j])]);
    const x = 2 * (xs[i] - cx) / ext, y = 2 * (ys[j] - cy) / ext, z = t === null ? null : ((t - lo) / (hi - lo) - 0.5) * 1.0;
    const xr = ca * x - sa * y, yr = sa * x + ca * y;
    const zz = z === null ? 0 : z;
    P[i * ny + j] = { sx: W / 2 + S * xr, sy: H * 0.55 - S * (ce * zz + se * yr) * 0.8, d: ce * yr - se * zz, t, x, y, z };
  }
  const quads = [];
  for (let i = 0; i < nx - 1; i++) for (let j = 0; j < ny - 1; j++) {
    const a = P[i * ny + j], b = P[(i + 1) * ny + j], c = P[(i + 1) * ny + j + 1], d = P[i * ny + j + 1];
    if (a.z === null || b.z === null || c.z === null || d.z === null) continue;
    const ux = b.x - a.x, uz = b.z - a.z, vy = d.y - a.y, vz = d.z - a.z;
    const nxv = -uz * vy, nyv = -ux * vz, nzv = ux * vy, nl = Math.hypot(nxv, nyv, nzv) || 1;
    const shade = 0.55 + 0.45 * Math.abs((nxv * -0.3 + nyv * -0.4 + nzv * 0.87) / nl);
    quads.push([(a.d + b.d + c.d + d.d) / 4, a, b, c, d, (a.t + b.t + c.t + d.t) / 4, shade]);
  }
  quads.sort((p, q) => q[0] - p[0]);
  ctx.clearRect(0, 0, W, H);
  for (const [, a, b, c, d, t, shade] of quads) {
    const col = rgb(cmap((t - lo) / (hi - lo)), shade);
    ctx.fillStyle = col; ctx.strokeStyle = col; ctx.beginPath();
    ctx.moveTo(a.sx, a.sy); ctx.lineTo(b.sx, b.sy); ctx.lineTo(c.sx, c.sy); ctx.lineTo(d.sx, d.sy); ctx.closePath(); ctx.fill(); ctx.stroke();
  }
  if (D.min && selVar.value.endsWith("loss")) { const p = P[D.min.index[0] * ny + D.min.index[1]]; star(p.sx, p.sy, 9); }
  if (D.center) { const p = P[D.center[0] * ny + D.center[1]]; ctx.fillStyle = "#fff"; ctx.strokeStyle = "#000";
    ctx.beginPath(); ctx.arc(p.sx, p.sy, 5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke(); }
  ctx.fillStyle = "#555"; ctx.font = "12px sans-serif"; ctx.textAlign = "left";
  ctx.fillText("height: " + selVar.value.replace("_", " ") + (logc.checked ? " (log10)" : "") + ", range scaled to half the plane width", 10, H - 12);
  colorbar(lo, hi);
}

// -- 1D curves ------------------------------------------------------------------------
function curves() {
  heat = null;
  const W = cv.width, H = cv.height, L = 78, R = 20, T = 20, B = 58, pw = W - L - R, ph = H - T - B;
  const xs = axes[0], n = shape[0];
  const names = Object.keys(D.variables).filter(k => k.endsWith(selVar.value.endsWith("accuracy") ? "accuracy" : "loss"));
  let all = []; for (const k of names) all = all.concat(D.variables[k]);
  const [lo, hi] = range(all);
  ctx.clearRect(0, 0, W, H); ctx.strokeStyle = "#333"; ctx.strokeRect(L, T, pw, ph);
  const X = x => L + pw * (x - xs[0]) / (xs[n - 1] - xs[0]), Y = t => T + ph - ph * (t - lo) / (hi - lo);
  const colors = { train: "#1f77b4", test: "#d95f02" };
  names.forEach((k, m) => {
    ctx.strokeStyle = colors[k.split("_")[0]] || "#000"; ctx.lineWidth = 2; ctx.beginPath(); let pen = false;
    D.variables[k].forEach((v, i) => { const t = tf(v); if (t === null) { pen = false; return; }
      pen ? ctx.lineTo(X(xs[i]), Y(t)) : ctx.moveTo(X(xs[i]), Y(t)); pen = true; });
    ctx.stroke(); ctx.lineWidth = 1; ctx.fillStyle = ctx.strokeStyle; ctx.font = "13px sans-serif"; ctx.textAlign = "left";
    ctx.fillText(k.replace("_", " "), L + 10, T + 18 + 16 * m);
  });
  if (D.center) { ctx.strokeStyle = "#888"; ctx.setLineDash([3, 3]); ctx.beginPath(); ctx.moveTo(X(0), T); ctx.lineTo(X(0), T + ph); ctx.stroke(); ctx.setLineDash([]); }
  if (D.min && selVar.value.endsWith("loss") && names.includes("train_loss")) { const t = tf(D.min.value); if (t !== null) star(X(D.min.point[0]), Y(t), 9); }
  ctx.fillStyle = "#222"; ctx.textAlign = "center"; ctx.font = "13px sans-serif";
  for (let k = 0; k <= 4; k++) { const x = xs[0] + (xs[n - 1] - xs[0]) * k / 4; ctx.fillText(fmt(x), X(x), T + ph + 18);
    const t = lo + (hi - lo) * k / 4; ctx.textAlign = "right"; ctx.fillText(logc.checked ? "1e" + t.toFixed(2) : fmt(t), L - 6, Y(t) + 4); ctx.textAlign = "center"; }
  ctx.fillText(D.labels[0], L + pw / 2, H - 12);
  cbx.clearRect(0, 0, cb.width, cb.height);
  heat = { curve: true, L, pw, xs, n, names };
}

function draw() {
  const view = selView.value;
  document.getElementById("hint").textContent = view === "surface" ? "drag to rotate, wheel to zoom" : "hover for values";
  if (view === "surface") return surface();
  if (view === "curves") return curves();
  if (D.dims === 2) {
    return heatmap((i, j) => field()[idx([i, j])], shape[0], shape[1], axes[0], axes[1], D.labels[0], D.labels[1],
      { min: D.min && selVar.value.endsWith("loss") ? D.min.index : null, center: D.center, trajectory: D.trajectory, anchors: D.anchors });
  }
  const ax = +selAxis.value, others = [0, 1, 2].filter(d => d !== ax);
  slider.max = shape[ax] - 1;
  if (+slider.value > shape[ax] - 1) slider.value = shape[ax] - 1;
  const s = +slider.value;
  document.getElementById("sliceval").textContent = D.names[ax] + " = " + fmt(axes[ax][s]);
  const get = (i, j) => { const ix = [0, 0, 0]; ix[ax] = s; ix[others[0]] = i; ix[others[1]] = j; return field()[idx(ix)]; };
  const c = D.center && D.center[ax] === s ? [D.center[others[0]], D.center[others[1]]] : null;
  const m = D.min && D.min.index[ax] === s && selVar.value.endsWith("loss") ? [D.min.index[others[0]], D.min.index[others[1]]] : null;
  heatmap(get, shape[others[0]], shape[others[1]], axes[others[0]], axes[others[1]], D.labels[others[0]], D.labels[others[1]], { min: m, center: c });
}

cv.addEventListener("pointerdown", e => { state.drag = [e.clientX, e.clientY]; cv.setPointerCapture(e.pointerId); });
cv.addEventListener("pointerup", () => { state.drag = null; });
cv.addEventListener("pointermove", e => {
  if (state.drag && selView.value === "surface") {
    state.az += (e.clientX - state.drag[0]) * 0.01; state.el = Math.max(-0.2, Math.min(1.45, state.el + (e.clientY - state.drag[1]) * 0.01));
    state.drag = [e.clientX, e.clientY]; draw(); return;
  }
  if (!heat) return;
  const r = cv.getBoundingClientRect(), x = (e.clientX - r.left) * cv.width / r.width, y = (e.clientY - r.top) * cv.height / r.height;
  if (heat.curve) {
    const i = Math.round((x - heat.L) / heat.pw * (heat.n - 1)); if (i < 0 || i >= heat.n) return;
    info.textContent = D.names[0] + " = " + fmt(heat.xs[i]) + "   " + heat.names.map(k => k + " = " + fmt(D.variables[k][i])).join("   ");
    return;
  }
  const i = Math.floor((x - heat.L) / heat.cw), j = heat.ny - 1 - Math.floor((y - heat.T) / heat.ch);
  if (i < 0 || j < 0 || i >= heat.nx || j >= heat.ny) return;
  info.textContent = heat.xl + " = " + fmt(heat.xs[i]) + "   " + heat.yl + " = " + fmt(heat.ys[j]) + "   " + selVar.value + " = " + fmt(heat.getv(i, j));
});
cv.addEventListener("wheel", e => { if (selView.value !== "surface") return; e.preventDefault();
  state.zoom *= Math.exp(-e.deltaY * 0.001); state.zoom = Math.max(0.3, Math.min(4, state.zoom)); draw(); }, { passive: false });
for (const el of [selVar, selView, selAxis, slider, logc]) el.addEventListener("input", draw);
if (D.min) info.textContent = "minimum train loss " + fmt(D.min.value) + " at (" + D.min.point.map(fmt).join(", ") + ")";
draw();
</script>
</body>
</html>
"""


def render_html_text(surf: Surface, title: str) -> str:
    """The page for ``surf`` (a complete, self-contained HTML document)."""
    grid = "x".join(str(n) for n in surf.shape)
    meta = [f"{surf.dims}D surface, grid {grid}", f"directions: {surf.kind}"]
    if surf.normalization != "none":
        meta.append(f"{surf.normalization}-normalized")
    am = surf.argmin("train_loss")
    if am is not None:
        meta.append(f"minimum train loss {am[1]:.6g}")
    cl = surf.attrs.get("surface_center_loss")
    if isinstance(cl, int | float) and math.isfinite(cl):
        meta.append(f"loss at the centre {cl:.6g}")
    page = _PAGE.replace("__TITLE__", html.escape(title))
    page = page.replace("__META__", html.escape(" · ".join(meta)))
    return page.replace("__DATA__", _json_for_script(scene_data(surf, title)))


def render_html(run_dir: Path) -> Path:
    """Write ``RUN/surface.html``: an interactive, self-contained view of the run's surface.

    The grid is embedded as JSON and drawn by a few hundred lines of plain JavaScript on
    a 2D canvas (no network access, no WebGL, no libraries): 2D surfaces as a rotatable
    shaded height field or a heat map with a hover read-out, trajectory and anchors;
    1D surfaces as curves; 3D grids as slices with a slider. Variables (train/test loss
    and accuracy) and a log colour scale are selectable.

    Args:
        run_dir: the run directory (with a surface in ``results.nc``).

    Returns:
        The path of the page.

    Example:
        >>> import tempfile, xarray as xr
        >>> from landscape.io.rundir import RunDir
        >>> run = RunDir.create(Path(tempfile.mkdtemp()) / "r", {})
        >>> a = np.linspace(-1, 1, 5)
        >>> run.write_arrays(xr.Dataset({"train_loss": ("alpha", a**2)}, coords={"alpha": a}))
        >>> render_html(run.path).name
        'surface.html'
    """
    run = open_run(run_dir)
    surf = Surface.from_run(run.path)
    name = str(run.summary().get("name") or run.path.name)
    text = render_html_text(surf, f"Loss landscape: {name}")
    path = run.path / "surface.html"
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path
