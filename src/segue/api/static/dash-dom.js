// DOM building and number formatting. Every value from the API goes into the page as text
// (textContent / attributes), never as HTML: traits and events are whatever senders sent.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.setAttribute("class", value);
    else if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h("td", {class: "num"}, "42"). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, same calling convention as h(). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace everything inside `node`. */
export function fill(node, ...children) {
  node.replaceChildren();
  return build(node, {}, children);
}

const intFormat = new Intl.NumberFormat("en");
const decFormat = new Intl.NumberFormat("en", { maximumFractionDigits: 2 });
const moneyFormat = new Intl.NumberFormat("en", {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});

function missing(v) {
  return v === null || v === undefined || Number.isNaN(v);
}

export const fmt = {
  int: (v) => (missing(v) ? "–" : intFormat.format(Math.round(v))),
  num: (v) => (missing(v) ? "–" : decFormat.format(v)),
  pct: (v, digits = 1) => (missing(v) ? "–" : `${(v * 100).toFixed(digits)}%`),
  signedPct: (v, digits = 1) =>
    missing(v) ? "–" : `${v > 0 ? "+" : ""}${(v * 100).toFixed(digits)}%`,
  money: (v) => (missing(v) ? "–" : moneyFormat.format(v)),
  seconds: (v) => (missing(v) ? "–" : v < 60 ? `${v.toFixed(1)} s` : `${(v / 60).toFixed(1)} min`),
  ms: (v) => (missing(v) ? "–" : v < 1 ? `${(v * 1000).toFixed(0)} µs` : `${decFormat.format(v)} ms`),
  p: (v) => (missing(v) ? "–" : v < 0.001 ? "<0.001" : v.toFixed(3)),
  time: (iso) => {
    if (!iso) return "–";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").slice(0, 19);
  },
  duration: (s) => {
    if (missing(s)) return "–";
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  },
};

/** A value of any JSON type, shortened for a table cell. */
export function brief(value, max = 80) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text === undefined ? "" : text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A titled card. */
export function card(title, ...body) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...body);
}

/** A table from headers and rows (cells are nodes or text; {num: true} right-aligns). */
export function table(headers, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", {}, name)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          {},
          row.map((cell) =>
            cell && typeof cell === "object" && "num" in cell && !(cell instanceof Node)
              ? h("td", { class: "num" }, cell.text)
              : h("td", {}, cell),
          ),
        ),
      ),
    ),
  );
}

/** A right-aligned table cell value. */
export const num = (text) => ({ num: true, text });

/** A message that stands where content would be (loading, empty, error). */
export function notice(kind, title, ...detail) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("strong", {}, title), detail.length ? h("p", {}, ...detail) : null);
}

/** A KPI tile: a label, a big value and optional lines below it. */
export function tile(label, value, ...lines) {
  return h("div", { class: "tile", "data-kpi": label },
    h("div", { class: "tile-label" }, label),
    h("div", { class: "tile-value" }, value),
    ...lines.map((line) => h("div", { class: "tile-line" }, line)));
}
