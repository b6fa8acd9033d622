// Hand-drawn SVG charts: lines over time, bars, and interval bars for lift. Colours come from
// the stylesheet (classes s0…s7 per series), so the charts follow the page's theme.

import { h, s } from "./dash-dom.js";

const W = 640;
const PAD = { left: 56, right: 16, top: 12, bottom: 28 };

/** About `count` round tick values covering [lo, hi] (whole numbers if `integer`). */
export function ticks(lo, hi, count = 5, integer = false) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0];
  if (hi === lo) {
    hi = lo === 0 ? 1 : lo + Math.abs(lo) * 0.5;
    lo = lo === 0 ? 0 : lo - Math.abs(lo) * 0.5;
  }
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((x) => x >= raw);
  if (integer) step = Math.max(1, Math.ceil(step));
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Number(v.toPrecision(12)));
  }
  if (out[out.length - 1] < hi) out.push(out[out.length - 1] + step);
  return out;
}

function scale(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

function legend(names) {
  return h("ul", { class: "legend" },
    names.map((name, i) => h("li", { class: `s${i % 8}` }, h("span", { class: "swatch" }), name)));
}

const dayFormat = new Intl.DateTimeFormat("en", { month: "short", day: "numeric", timeZone: "UTC" });
const clockFormat = new Intl.DateTimeFormat("en", {
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});

/**
 * Lines over time. series: [{name, points: [[epochMs, y], …]}]; xKind "day" or "clock".
 */
export function lineChart({ series, yFormat = String, xKind = "day", height = 200, title, integer = false }) {
  const H = height;
  const xs = series.flatMap((line) => line.points.map((p) => p[0]));
  const ys = series.flatMap((line) => line.points.map((p) => p[1])).filter(Number.isFinite);
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`, class: "chart line-chart", role: "img",
    "aria-label": title || "line chart",
  });
  if (!xs.length || !ys.length) {
    svg.append(s("text", { x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle" }, "no data yet"));
    return h("figure", { class: "figure" }, title ? h("figcaption", {}, title) : null, svg);
  }
  const yt = ticks(Math.min(0, ...ys), Math.max(...ys), 5, integer);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const x = scale(x0, x1 === x0 ? x0 + 1 : x1, PAD.left, W - PAD.right);
  const y = scale(yt[0], yt[yt.length - 1], H - PAD.bottom, PAD.top);
  for (const v of yt) {
    svg.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(s("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, yFormat(v)));
  }
  const format = xKind === "day" ? dayFormat : clockFormat;
  const labels = x1 === x0 ? [x0] : [x0, x0 + (x1 - x0) / 2, x1];
  labels.forEach((v, i) => {
    const anchor = labels.length === 1 ? "middle" : ["start", "middle", "end"][i];
    svg.append(s("text", { x: x(v), y: H - 8, "text-anchor": anchor, class: "axis" }, format.format(new Date(v))));
  });
  series.forEach((line, i) => {
    const points = line.points.filter((p) => Number.isFinite(p[1])).sort((a, b) => a[0] - b[0]);
    const cls = `s${i % 8}`;
    if (points.length > 1) {
      const d = points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
      svg.append(s("path", { d, class: `line ${cls}` }));
    }
    if (points.length <= 40) {
      for (const p of points) {
        svg.append(s("circle", { cx: x(p[0]), cy: y(p[1]), r: 3, class: `dot ${cls}` },
          s("title", {}, `${line.name} · ${format.format(new Date(p[0]))}: ${yFormat(p[1])}`)));
      }
    }
  });
  return h("figure", { class: "figure" }, title ? h("figcaption", {}, title) : null, svg,
    series.length > 1 || series[0].name ? legend(series.map((l) => l.name)) : null);
}

/** Vertical bars. bars: [{label, value, title?}]. */
export function barChart({ bars, yFormat = String, height = 200, title, integer = false }) {
  const H = height;
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`, class: "chart bar-chart", role: "img", "aria-label": title || "bar chart",
  });
  const top = Math.max(0, ...bars.map((b) => b.value));
  const yt = ticks(0, top || 1, 4, integer);
  const y = scale(0, yt[yt.length - 1], H - PAD.bottom, PAD.top);
  for (const v of yt) {
    svg.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(s("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, yFormat(v)));
  }
  const band = (W - PAD.left - PAD.right) / Math.max(bars.length, 1);
  const every = Math.ceil(bars.length / 12);
  bars.forEach((bar, i) => {
    const left = PAD.left + i * band;
    const height = Math.max(0, y(0) - y(bar.value));
    svg.append(s("rect", {
      x: left + band * 0.12, y: y(0) - height, width: band * 0.76, height, class: "bar s0",
    }, s("title", {}, bar.title || `${bar.label}: ${yFormat(bar.value)}`)));
    if (i % every === 0) {
      svg.append(s("text", { x: left + band / 2, y: H - 8, "text-anchor": "middle", class: "axis" }, bar.label));
    }
  });
  return h("figure", { class: "figure" }, title ? h("figcaption", {}, title) : null, svg);
}

/**
 * Estimates with interval bars around zero (lift). rows: [{label, estimate, low, high,
 * note}]; a missing bound (null: not estimable), or one past the axis, ends in an open arrow.
 */
export function intervalChart({ rows, format = String, title }) {
  const W = 1000; // drawn full width, so wider than the half-width charts
  const rowH = 30;
  const left = 260;
  const right = 170;
  const H = PAD.top + rows.length * rowH + 24;
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`, class: "chart interval-chart", role: "img", "aria-label": title || "intervals",
  });
  const finite = rows.flatMap((r) => [r.estimate, r.low, r.high]).filter(Number.isFinite);
  // one very wide interval must not squeeze the others flat: the axis reaches three times
  // the largest estimate (at least 1 either way) and longer bars run off its edge
  const estimates = rows.map((r) => Math.abs(r.estimate)).filter(Number.isFinite);
  const cap = Math.max(1, 3 * Math.max(0, ...estimates));
  const lo = Math.max(Math.min(0, ...finite), -cap);
  const hi = Math.max(Math.min(Math.max(0, ...finite), cap), lo + 0.02);
  const xt = ticks(lo, hi, 4);
  const x = scale(xt[0], xt[xt.length - 1], left, W - right);
  const clamp = (v, edge) => (Number.isFinite(v) ? Math.min(Math.max(x(v), left), W - right) : edge);
  for (const v of xt) {
    svg.append(s("line", { x1: x(v), x2: x(v), y1: PAD.top, y2: H - 20, class: v === 0 ? "zero" : "grid" }));
    svg.append(s("text", { x: x(v), y: H - 6, "text-anchor": "middle", class: "axis" }, format(v)));
  }
  rows.forEach((row, i) => {
    const cy = PAD.top + i * rowH + rowH / 2;
    const verdict = Number.isFinite(row.low) && row.low > 0 ? "win"
      : Number.isFinite(row.high) && row.high < 0 ? "loss" : "flat";
    const x0 = clamp(row.low, left);
    const x1 = clamp(row.high, W - right);
    const openLow = !Number.isFinite(row.low) || x(row.low) < left;
    const openHigh = !Number.isFinite(row.high) || x(row.high) > W - right;
    svg.append(s("text", { x: left - 8, y: cy + 4, "text-anchor": "end", class: "label" }, row.label));
    svg.append(s("line", { x1: x0, x2: x1, y1: cy, y2: cy, class: `interval ${verdict}` },
      s("title", {}, `${row.label}: ${format(row.estimate)} (95% CI ${format(row.low)} to ${format(row.high)})`)));
    if (openLow) svg.append(s("path", { d: `M${x0 + 6},${cy - 5}L${x0},${cy}L${x0 + 6},${cy + 5}`, class: `interval ${verdict}` }));
    if (openHigh) svg.append(s("path", { d: `M${x1 - 6},${cy - 5}L${x1},${cy}L${x1 - 6},${cy + 5}`, class: `interval ${verdict}` }));
    if (Number.isFinite(row.estimate)) {
      svg.append(s("circle", { cx: clamp(row.estimate, left), cy, r: 5, class: `estimate ${verdict}` }));
    }
    svg.append(s("text", { x: W - right + 8, y: cy + 4, class: `value ${verdict}` },
      `${format(row.estimate)}${row.note ? `  ${row.note}` : ""}`));
  });
  return h("figure", { class: "figure" }, title ? h("figcaption", {}, title) : null, svg);
}
