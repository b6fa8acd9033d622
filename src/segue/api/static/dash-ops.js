// Operations: the event rate and processing lag (GET /v1/stats every 2 s), the decision
// latency histogram (/metrics), consent rates per region and purpose (GET /v1/reports/consent)
// and the privacy request queue (GET /v1/privacy/requests).

import { get, getText } from "./dash-api.js";
import { barChart, lineChart } from "./dash-charts.js";
import { card, fill, fmt, h, notice, num, s, table, tile } from "./dash-dom.js";
import { bars, difference, histograms, quantile } from "./dash-prom.js";

const STATS_MS = 2_000;
const SLOW_MS = 15_000;
const KEEP = 150; // points of history: five minutes at one poll every 2 s
const LATENCY = "segue_http_request_duration_seconds";
const PURPOSES = ["necessary", "analytics", "personalization", "marketing", "advertising", "automated_decisions"];

export function mount(root) {
  const history = [];
  const scrapes = [];
  let route = "/v1/decide";
  let previous = null;
  const timers = [];
  let stopped = false;

  const tiles = h("div", { class: "tiles", id: "ops-tiles" }, notice("loading", "Reading /v1/stats…"));
  const rates = h("div", { class: "grid2" });
  const routeSelect = h("select", { "aria-label": "route", id: "latency-route" });
  const latency = h("div", { id: "latency" });
  const consent = h("div", { id: "consent-rates" }, notice("loading", "Reading the consent ledger…"));
  const queue = h("div", { id: "privacy-queue" }, notice("loading", "Reading privacy requests…"));
  fill(root,
    h("h1", {}, "Operations"),
    tiles,
    card("Event rate and processing lag (last 5 minutes)", rates),
    card("Request latency", h("label", { class: "controls" }, "Route ", routeSelect), latency),
    card("Consent by region and purpose (people in the consent ledger, allowed now)", consent),
    card("Privacy requests (most recent first)", queue));
  routeSelect.addEventListener("change", () => {
    route = routeSelect.value;
    drawLatency();
  });

  function every(ms, task) {
    const slot = { handle: null };
    const run = async () => {
      if (stopped) return;
      try {
        await task();
      } finally {
        if (!stopped) slot.handle = setTimeout(run, ms);
      }
    };
    timers.push(slot);
    run();
  }

  every(STATS_MS, async () => {
    try {
      const [stats, metrics] = await Promise.all([get("/v1/stats"), getText("/metrics")]);
      const now = performance.now();
      drawStats(stats, now);
      scrapes.push({ at: now, all: histograms(metrics, LATENCY, "route") });
      while (scrapes.length > 31) scrapes.shift(); // a minute back, for "last minute"
      drawLatency();
    } catch (error) {
      fill(tiles, notice("error", "Stats could not be read", error.message));
    }
  });
  every(SLOW_MS, async () => {
    try {
      drawConsent(await get("/v1/reports/consent"));
    } catch (error) {
      fill(consent, notice("error", "Consent rates could not be read", error.message));
    }
  });
  every(SLOW_MS, async () => {
    try {
      drawQueue((await get("/v1/privacy/requests", { query: { limit: 20 } })).requests);
    } catch (error) {
      fill(queue, notice("error", "Privacy requests could not be read", error.message));
    }
  });

  function drawStats(stats, now) {
    let received = NaN;
    let processed = NaN;
    if (previous) {
      const seconds = (now - previous.at) / 1000;
      received = Math.max(0, stats.events_received - previous.stats.events_received) / seconds;
      processed = Math.max(0, stats.events_processed - previous.stats.events_processed) / seconds;
      history.push({ t: Date.now(), received, processed, lag: stats.lag_events, lagMs: stats.lag_ms });
      while (history.length > KEEP) history.shift();
    }
    previous = { at: now, stats };
    fill(tiles,
      tile("Events received", h("span", { id: "events-received" }, fmt.int(stats.events_received)),
        `${fmt.num(received)} / s`),
      tile("Events processed", fmt.int(stats.events_processed), `${fmt.num(processed)} / s`),
      tile("Processing lag", `${fmt.int(stats.lag_events)} events`, fmt.ms(stats.lag_ms)),
      tile("Profiles", fmt.int(stats.profiles), `${fmt.int(stats.identities)} identifiers`),
      tile("Quarantined", fmt.int(stats.quarantined), `${fmt.int(stats.events_rejected)} rejected since start`),
      tile("Up for", fmt.duration(stats.uptime_s), `${fmt.int(stats.events_duplicate)} duplicates since start`));
    fill(rates,
      lineChart({
        title: "Events per second", xKind: "clock", yFormat: fmt.num,
        series: [
          { name: "received", points: history.map((p) => [p.t, p.received]) },
          { name: "processed", points: history.map((p) => [p.t, p.processed]) },
        ],
      }),
      lineChart({
        title: "Lag (events not yet processed)", xKind: "clock", yFormat: fmt.int, integer: true,
        series: [{ name: "lag", points: history.map((p) => [p.t, p.lag]) }],
      }));
  }

  function drawLatency() {
    const latest = scrapes[scrapes.length - 1];
    if (!latest) return;
    const routes = [...latest.all.keys()].filter((r) => r && r !== "unmatched").sort();
    if (!routes.includes(route) && routes.length) route = routes.includes("/v1/decide") ? "/v1/decide" : routes[0];
    fill(routeSelect, routes.map((r) => h("option", { value: r, selected: r === route }, r)));
    const all = latest.all.get(route);
    if (!all || !all.count) {
      fill(latency, notice("empty", `No ${route} requests yet`, "The histogram fills as requests arrive."));
      return;
    }
    const minuteAgo = scrapes[0].all.get(route);
    const recent = difference(all, scrapes.length > 1 ? minuteAgo : null);
    const ms = (q, hist) => quantile(hist, q) * 1000;
    fill(latency, h("div", { class: "grid2" },
      h("div", { class: "tiles small" },
        tile("Requests", fmt.int(all.count), `${fmt.int(recent.count)} in the last minute`),
        tile("Median", fmt.ms(ms(0.5, all)), `last minute ${fmt.ms(ms(0.5, recent))}`),
        tile("p95", fmt.ms(ms(0.95, all)), `last minute ${fmt.ms(ms(0.95, recent))}`),
        tile("p99", fmt.ms(ms(0.99, all)), `last minute ${fmt.ms(ms(0.99, recent))}`),
        tile("Mean", fmt.ms((all.sum / all.count) * 1000), "since start")),
      barChart({
        title: `${route}: requests per latency bucket since the process started`,
        bars: bars(all, (le) => fmt.ms(le * 1000)),
        yFormat: fmt.int,
        integer: true,
      })));
  }

  function drawConsent(report) {
    if (!report.people) {
      fill(consent, notice("empty", "Nobody in the consent ledger yet",
        "Consent arrives with PUT /v1/consent and in events' context.consent."));
      return;
    }
    const meter = (count, people) => {
      const share = people ? count.allowed / people : 0;
      return h("div", { class: "meter-cell", title: `granted ${count.granted} · refused ${count.refused} · not stated ${count.unset} · allowed now ${count.allowed} of ${people}` },
        s("svg", { viewBox: "0 0 100 8", class: "meter", "aria-hidden": "true" },
          s("rect", { x: 0, y: 0, width: 100, height: 8, class: "meter-back" }),
          s("rect", { x: 0, y: 0, width: (share * 100).toFixed(1), height: 8, class: "meter-fill" })),
        h("span", {}, fmt.pct(share, 0)));
    };
    const row = (name, regime, people, purposes) => [
      name, regime, num(fmt.int(people)), ...PURPOSES.map((p) => meter(purposes[p], people)),
    ];
    fill(consent,
      h("p", { class: "muted" },
        `${fmt.int(report.people)} people (${fmt.int(report.subjects)} identifiers, ${fmt.int(report.ledger_entries)} ledger entries), as of ${fmt.time(report.computed_at)}. `,
        "Hover a bar for granted, refused and not-stated counts."),
      table(["region", "regime", "people", ...PURPOSES],
        [
          row("all regions", "", report.people, report.purposes),
          ...report.regions.map((r) => row(r.region || "(not stated)", r.regime.replace("_", "-"), r.people, r.purposes)),
        ], { class: "consent-table" }));
  }

  function drawQueue(requests) {
    if (!requests.length) {
      fill(queue, notice("empty", "No privacy requests yet", "Access and erasure requests arrive at POST /v1/privacy/requests."));
      return;
    }
    const open = requests.filter((r) => r.status === "pending" || r.status === "running").length;
    const failed = requests.filter((r) => r.status === "failed").length;
    const receipt = (r) => {
      const parts = [];
      for (const key of ["profiles", "identifiers", "events"]) {
        if (typeof r.receipt[key] === "number") parts.push(`${key} ${fmt.int(r.receipt[key])}`);
      }
      if (typeof r.receipt.duration_ms === "number") parts.push(fmt.ms(r.receipt.duration_ms));
      return parts.join(" · ") || "–";
    };
    fill(queue,
      h("p", { class: "muted" }, `${open} waiting or running, ${failed} failed, of the ${requests.length} most recent.`),
      table(["request", "type", "status", "created", "updated", "receipt"],
        requests.map((r) => [
          h("code", {}, r.request_id), r.type, h("span", { class: `badge ${r.status}` }, r.status),
          fmt.time(r.created_at), fmt.time(r.updated_at), r.error ? `error: ${r.error}` : receipt(r),
        ]), { class: "queue-table" }));
  }

  return () => {
    stopped = true;
    timers.forEach((slot) => clearTimeout(slot.handle));
  };
}
