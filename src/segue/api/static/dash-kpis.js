// KPIs: tiles per metric with each variant's value and its lift over the holdout, lift with
// 95% intervals, the sample-ratio check, daily time series per variant, every row, and the
// report as CSV — all from GET /v1/reports/kpis.

import { ApiError, download, get, getBlob, hasRoute } from "./dash-api.js";
import { intervalChart, lineChart } from "./dash-charts.js";
import { card, fill, fmt, h, notice, num, table, tile } from "./dash-dom.js";

const REPORT = "/v1/reports/kpis";
const REFRESH_MS = 30_000;

export const METRICS = [
  { key: "impressions", label: "Impressions", format: fmt.int, integer: true },
  { key: "ctr", label: "CTR", format: (v) => fmt.pct(v, 2) },
  { key: "conversion_rate", label: "Conversion rate", format: (v) => fmt.pct(v, 2) },
  { key: "revenue_per_visitor", label: "Revenue per visitor", format: fmt.money },
  { key: "bounce_rate", label: "Bounce rate", format: fmt.pct },
  { key: "time_on_page_s", label: "Time on page", format: fmt.seconds },
];
const LABELS = Object.fromEntries(
  [...METRICS, { key: "average_order_value", label: "Average order value" }].map((m) => [m.key, m.label]),
);
const isHoldout = (variant) => variant === "holdout";
/** A row's variant as people read it: rows outside any experiment have none. */
const arm = (variant) => variant ?? "all traffic";

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function byVariant(rows) {
  return [...rows].sort((a, b) => isHoldout(a.variant) - isHoldout(b.variant)
    || String(a.variant).localeCompare(String(b.variant)));
}

function interval(lift) {
  return `[${fmt.signedPct(lift.low)}, ${fmt.signedPct(lift.high)}]`;
}

export function mount(root) {
  const today = new Date();
  const state = {
    from: isoDay(new Date(today.getTime() - 13 * 86_400_000)),
    to: isoDay(today),
    placement: "",
    experiment: null, // null until chosen: the page picks one
  };
  const body = h("div", { class: "kpi-body" });
  const placementSelect = h("select", { name: "placement", "aria-label": "placement" });
  const experimentSelect = h("select", { name: "experiment", "aria-label": "experiment" });
  const fromInput = h("input", { type: "date", name: "from", value: state.from, "aria-label": "from" });
  const toInput = h("input", { type: "date", name: "to", value: state.to, "aria-label": "to" });
  const csv = h("button", { type: "button", class: "link", id: "kpi-csv" }, "Download CSV");
  let timer = null;
  let last = null;

  const controls = h("form", { class: "controls", id: "kpi-filters" },
    h("label", {}, "Placement ", placementSelect),
    h("label", {}, "Experiment ", experimentSelect),
    h("label", {}, "From ", fromInput),
    h("label", {}, "To ", toInput),
    h("button", { type: "submit" }, "Refresh"),
    csv);
  fill(root, h("h1", {}, "KPIs"), controls, body);

  controls.addEventListener("submit", (event) => {
    event.preventDefault();
    state.from = fromInput.value;
    state.to = toInput.value;
    load();
  });
  placementSelect.addEventListener("change", () => {
    state.placement = placementSelect.value;
    state.experiment = null;
    render();
  });
  experimentSelect.addEventListener("change", () => {
    state.experiment = experimentSelect.value;
    render();
  });
  csv.addEventListener("click", async () => {
    try {
      const query = {
        from: state.from, to: state.to, placement: state.placement,
        experiment: state.experiment || "", granularity: "day", format: "csv",
      };
      const blob = await getBlob(REPORT, { query });
      download(blob, `segue-kpis-${state.from}-${state.to}.csv`);
    } catch (error) {
      body.prepend(notice("error", "The CSV could not be downloaded", error.message));
    }
  });

  async function load() {
    clearTimeout(timer);
    if (!last) fill(body, notice("loading", "Loading the report…"));
    try {
      if (!(await hasRoute("GET", REPORT))) {
        last = null;
        fill(body, empty("This server has no KPI report endpoint yet (GET /v1/reports/kpis)."));
        csv.disabled = true;
        options(placementSelect, [], "", "");
        options(experimentSelect, [], "", "");
        return;
      }
      const range = { from: state.from, to: state.to };
      const [total, daily] = await Promise.all([
        get(REPORT, { query: { ...range, granularity: "total" } }),
        get(REPORT, { query: { ...range, granularity: "day" } }),
      ]);
      last = { total, daily };
      csv.disabled = false;
      render();
    } catch (error) {
      last = null;
      if (error instanceof ApiError && error.status === 404) fill(body, empty(error.message));
      else fill(body, notice("error", "The report could not be loaded", error.message));
    } finally {
      timer = setTimeout(load, REFRESH_MS);
    }
  }

  function options(select, values, chosen, label) {
    fill(select, values.map((v) => h("option", { value: v, selected: v === chosen }, v || label)));
    select.disabled = values.length < 2;
  }

  function render() {
    const { total, daily } = last;
    const rows = total.rows || [];
    if (!rows.length) {
      options(placementSelect, [], "", "");
      options(experimentSelect, [], "", "");
      fill(body, empty(`No exposures between ${total.from || state.from} and ${total.to || state.to}.`));
      return;
    }
    const placements = [...new Set(rows.map((r) => r.placement))].sort();
    if (!placements.includes(state.placement)) state.placement = busiest(placements, rows, total.lift || []);
    options(placementSelect, placements, state.placement, "");
    const experiments = [...new Set(rows.filter((r) => r.placement === state.placement)
      .map((r) => r.experiment || ""))].sort();
    if (state.experiment === null || !experiments.includes(state.experiment)) {
      // open on an experiment (one with lift first); traffic outside any comes last
      const withLift = new Set((total.lift || []).filter((l) => l.placement === state.placement).map((l) => l.experiment));
      state.experiment = [...experiments].sort((a, b) => withLift.has(b) - withLift.has(a) || !a - !b)[0];
    }
    options(experimentSelect, experiments, state.experiment, "(none)");

    const mine = (r) => r.placement === state.placement && (r.experiment || "") === state.experiment;
    const here = byVariant(rows.filter(mine));
    const lift = (total.lift || []).filter(mine);
    const srm = (total.srm || []).filter(mine);
    fill(body,
      privacyNote(total.privacy),
      srm.map(srmNote),
      h("div", { class: "tiles", id: "kpi-tiles" }, METRICS.map((m) => metricTile(m, here, lift))),
      card("Lift over the holdout (95% confidence intervals)", liftView(lift, state.experiment)),
      card("Daily, per variant", h("div", { class: "grid2" },
        METRICS.slice(0, 4).map((m) => lineChart({
          title: m.label,
          yFormat: m.format,
          integer: Boolean(m.integer),
          series: series((daily.rows || []).filter(mine), m.key),
        })))),
      card(`Every placement and variant, ${total.from || state.from} to ${total.to || state.to}`,
        rowsTable(rows)));
  }

  load();
  return () => clearTimeout(timer);
}

/** The placement to open with: one with lift to show, then the most impressions. */
function busiest(placements, rows, lift) {
  const withLift = new Set(lift.map((l) => l.placement));
  const impressions = (p) => rows.filter((r) => r.placement === p).reduce((n, r) => n + (r.impressions || 0), 0);
  return [...placements].sort((a, b) => withLift.has(b) - withLift.has(a) || impressions(b) - impressions(a))[0];
}

function empty(detail) {
  return notice("empty", "No report yet", detail,
    " KPIs appear here once decisions have been shown and their feedback has arrived.");
}

function privacyNote(privacy) {
  if (!privacy) return null;
  const facts = Object.entries(privacy).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  return notice("info", "Released with differential privacy (the numbers carry calibrated noise)",
    facts.join(" · "));
}

function srmNote(check) {
  return check.ok
    ? h("p", { class: "srm ok" }, `Sample ratio check passed for ${check.experiment} (p = ${fmt.p(check.p_value)}).`)
    : notice("error", `Sample ratio mismatch in ${check.experiment}`,
      `Traffic does not split as configured (p = ${fmt.p(check.p_value)}): do not trust its lift until the cause is found.`);
}

function metricTile(metric, rows, lift) {
  if (!rows.length) return tile(metric.label, "–");
  const primary = rows.find((r) => !isHoldout(r.variant)) || rows[0];
  const lines = rows.filter((r) => r !== primary).map((r) =>
    h("span", { class: isHoldout(r.variant) ? "holdout" : "" }, `${arm(r.variant)}: ${metric.format(r[metric.key])}`));
  const found = lift.find((l) => l.metric === metric.key && l.variant === primary.variant);
  if (found) {
    const verdict = found.low > 0 ? "win" : found.high < 0 ? "loss" : "flat";
    lines.push(h("span", { class: `lift ${verdict}` }, `lift ${fmt.signedPct(found.estimate)} ${interval(found)}`));
  }
  return tile(metric.label, metric.format(primary[metric.key]), h("span", {}, arm(primary.variant)), ...lines);
}

function liftView(lift, experiment) {
  if (!experiment) {
    return notice("empty", "No experiment on this placement",
      "Lift is measured against an experiment's holdout: configure one under experiments in segue.yaml.");
  }
  if (!lift.length) {
    return notice("empty", "No lift yet", "Lift needs traffic in the holdout and in a variant.");
  }
  const ordered = [...lift].sort((a, b) => String(a.metric).localeCompare(String(b.metric))
    || String(a.variant).localeCompare(String(b.variant)));
  return h("div", {},
    intervalChart({
      rows: ordered.map((l) => ({
        label: `${l.variant} · ${LABELS[l.metric] || l.metric}`,
        estimate: l.estimate ?? NaN,
        low: l.low ?? NaN,
        high: l.high ?? NaN,
        note: `p ${fmt.p(l.p_value)}`,
      })),
      format: (v) => fmt.signedPct(v, 0),
    }),
    table(["variant", "metric", "lift", "95% interval", "p", "sequential p", "CUPED", "variance cut"],
      ordered.map((l) => [
        l.variant, LABELS[l.metric] || l.metric, num(fmt.signedPct(l.estimate)), num(interval(l)),
        num(fmt.p(l.p_value)), num(fmt.p(l.sequential_p_value)), l.cuped ? "yes" : "no",
        num(l.variance_reduction === null || l.variance_reduction === undefined ? "–" : fmt.pct(l.variance_reduction)),
      ]), { class: "lift-table" }));
}

function series(rows, key) {
  const variants = new Map();
  for (const row of byVariant(rows)) {
    if (!row.day) continue;
    if (!variants.has(arm(row.variant))) variants.set(arm(row.variant), []);
    variants.get(arm(row.variant)).push([Date.parse(`${row.day.slice(0, 10)}T00:00:00Z`), row[key]]);
  }
  return [...variants].map(([name, points]) => ({ name, points }));
}

function rowsTable(rows) {
  const ordered = [...rows].sort((a, b) => a.placement.localeCompare(b.placement)
    || String(a.experiment).localeCompare(String(b.experiment))
    || isHoldout(a.variant) - isHoldout(b.variant));
  return table(
    ["placement", "experiment", "variant", "visitors", "impressions", "clicks", "add to carts",
      "conversions", "revenue", "CTR", "conversion", "revenue / visitor", "order value", "bounce",
      "time on page"],
    ordered.map((r) => [
      r.placement, r.experiment || "–", arm(r.variant), num(fmt.int(r.visitors)), num(fmt.int(r.impressions)),
      num(fmt.int(r.clicks)), num(fmt.int(r.add_to_carts)), num(fmt.int(r.conversions)),
      num(fmt.money(r.revenue)), num(fmt.pct(r.ctr, 2)), num(fmt.pct(r.conversion_rate, 2)),
      num(fmt.money(r.revenue_per_visitor)), num(fmt.money(r.average_order_value)),
      num(fmt.pct(r.bounce_rate)), num(fmt.seconds(r.time_on_page_s)),
    ]),
    { class: "rows-table", id: "kpi-rows" });
}
