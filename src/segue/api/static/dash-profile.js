// Profile lookup: one person by any identifier — identities, golden traits with lineage,
// features, consent and its ledger, the event timeline, and recent decisions with their
// explanations. Every read here is a profile read in the audit log.

import { ApiError, get } from "./dash-api.js";
import { brief, card, fill, fmt, h, notice, num, s, table } from "./dash-dom.js";

const EVENTS_PAGE = 50;

const enc = (ref) => encodeURIComponent(ref);

export function mount(root, ref) {
  const input = h("input", {
    type: "search", name: "ref", id: "profile-ref", value: ref || "", required: true,
    placeholder: "user_id:42, email:ada@example.com, anonymous_id:…", "aria-label": "identifier",
    autocomplete: "off", spellcheck: "false",
  });
  const form = h("form", { class: "controls", id: "profile-form" }, input, h("button", { type: "submit" }, "Look up"));
  const out = h("div", { id: "profile-out" });
  fill(root, h("h1", {}, "Profile lookup"), form, out);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const wanted = input.value.trim();
    if (wanted) location.hash = `#/profile/${enc(wanted)}`;
  });
  if (!ref) {
    fill(out, notice("empty", "Type an identifier",
      "type:value, as segue stores it: e-mails lower-cased, phones in E.164 (+14155552671)."));
    return () => {};
  }
  let live = true;
  lookup(ref, out, () => live);
  return () => {
    live = false;
  };
}

async function lookup(ref, out, live) {
  fill(out, notice("loading", `Looking up ${ref}…`));
  let profile;
  try {
    profile = await get(`/v1/profiles/${enc(ref)}`);
  } catch (error) {
    if (!live()) return;
    if (error instanceof ApiError && error.status === 404) fill(out, notice("empty", "No profile", error.message));
    else if (error instanceof ApiError && error.status === 400) fill(out, notice("error", "Not an identifier", error.message));
    else fill(out, notice("error", "The profile could not be read", error.message));
    return;
  }
  const [events, consent, decisions] = await Promise.allSettled([
    get(`/v1/profiles/${enc(ref)}/events`, { query: { limit: EVENTS_PAGE } }),
    get(`/v1/consent/${enc(ref)}`),
    get("/v1/decisions", { query: { profile: ref, limit: 10 } }),
  ]);
  if (!live()) return;
  const failed = (result, what) => notice("error", `${what} could not be read`, result.reason && result.reason.message);
  fill(out,
    summary(profile),
    card("Identities", h("ul", { class: "chips", id: "identities" },
      profile.identities.map((i) => h("li", {}, h("code", {}, `${i.type}:${i.value}`))))),
    card("Traits (golden record) and lineage", traits(profile)),
    h("div", { class: "grid2" },
      card("Consent", consent.status === "fulfilled" ? consentView(consent.value) : failed(consent, "Consent")),
      card("Features", features(profile.features || {}))),
    card("Recent decisions", decisions.status === "fulfilled" ? decisionsView(decisions.value.decisions) : failed(decisions, "Decisions")),
    card("Event timeline (oldest first)", events.status === "fulfilled" ? timeline(ref, events.value) : failed(events, "Events")),
    profile.merges && profile.merges.length ? card("Merges", merges(profile.merges)) : null);
}

function summary(p) {
  return h("section", { class: "card profile-head" },
    h("h2", {}, h("code", { id: "profile-id" }, p.profile_id)),
    h("dl", { class: "facts" },
      fact("events", fmt.int(p.event_count)),
      fact("first seen", fmt.time(p.first_seen)),
      fact("last seen", fmt.time(p.last_seen)),
      fact("created", fmt.time(p.created_at)),
      fact("merged from", String((p.merged_from || []).length)),
      fact("open possible matches", String((p.possible_matches || []).length)),
      fact("segments", (p.segments || []).join(", ") || "–")));
}

function fact(term, value) {
  return [h("dt", {}, term), h("dd", {}, value)];
}

function traits(p) {
  const names = Object.keys(p.traits || {}).sort();
  if (!names.length) return notice("empty", "No traits yet", "Traits come from identify events.");
  return table(["trait", "value", "source", "message", "event time", "rule", "legal basis", "other values"],
    names.map((name) => {
      const line = (p.lineage || {})[name] || {};
      const others = (p.alternates || {})[name] || [];
      return [
        h("code", {}, name), brief(p.traits[name], 120), line.source || "–",
        line.message_id ? h("code", {}, line.message_id) : "–", fmt.time(line.timestamp), line.rule || "–",
        line.legal_basis || "–",
        others.length ? others.map((o) => `${brief(o.value, 40)} (${o.source}, ×${o.count})`).join("; ") : "–",
      ];
    }), { id: "traits", class: "traits-table" });
}

function consentView(c) {
  const purposes = Object.entries(c.purposes || {});
  const history = c.history || [];
  return h("div", { id: "consent" },
    h("p", {}, `Region ${c.region || "not stated"} (${(c.regime || "").replace("_", "-")})`,
      c.gpc ? " · Global Privacy Control on" : "",
      c.objects_to_automated_decisions ? " · objects to automated decisions" : ""),
    table(["purpose", "allowed now", "why", "recorded", "source"],
      purposes.map(([name, v]) => [
        name, h("span", { class: `badge ${v.allowed ? "yes" : "no"}` }, v.allowed ? "allowed" : "refused"),
        v.reason, v.recorded === null ? "–" : v.recorded ? "granted" : "refused", v.source || "–",
      ])),
    history.length
      ? h("details", {}, h("summary", {}, `Ledger: ${history.length} signal${history.length === 1 ? "" : "s"}`),
        table(["#", "when", "subject", "source", "said"], history.map((r) => [
          num(String(r.seq)), fmt.time(new Date(r.at * 1000).toISOString()), h("code", {}, r.subject), r.source,
          brief({ ...r.purposes, ...(r.region ? { region: r.region } : {}), ...(r.gpc !== null ? { gpc: r.gpc } : {}) }, 100),
        ])))
      : h("p", { class: "muted" }, "Nothing in the consent ledger: the region's regime decides."));
}

function features(f) {
  const names = Object.keys(f).sort();
  if (!names.length) return notice("empty", "No features yet", "The processor derives them from events.");
  return h("div", { id: "features" }, names.map((name) =>
    h("details", {}, h("summary", {}, name, h("span", { class: "muted" }, ` ${brief(f[name], 60)}`)),
      h("pre", {}, JSON.stringify(f[name], null, 2)))));
}

function eventRows(events) {
  return events.map((e) => [
    fmt.time(e.timestamp || e.receivedAt), e.type, e.event || e.name || "–",
    h("code", {}, e.messageId || "–"), brief(e.properties || e.traits || {}, 100),
  ]);
}

function timeline(ref, page) {
  if (!page.events.length) return notice("empty", "No events", "");
  const body = table(["time", "type", "event", "message", "details"], eventRows(page.events), { id: "timeline" });
  const wrap = h("div", {}, body);
  let cursor = page.next_cursor;
  if (cursor) {
    const more = h("button", { type: "button" }, "Load more");
    more.addEventListener("click", async () => {
      more.disabled = true;
      const next = await get(`/v1/profiles/${enc(ref)}/events`, { query: { limit: EVENTS_PAGE, cursor } });
      const tbody = body.querySelector("tbody");
      for (const row of eventRows(next.events)) tbody.append(h("tr", {}, row.map((c) => h("td", {}, c))));
      cursor = next.next_cursor;
      if (cursor) more.disabled = false;
      else more.remove();
    });
    wrap.append(more);
  }
  return wrap;
}

function decisionsView(decisions) {
  if (!decisions.length) return notice("empty", "No decisions yet", "Decisions appear once an app asks POST /v1/decide for this person.");
  return h("div", { id: "decisions" }, decisions.map((d) => {
    const slot = h("div", { class: "explanation" });
    const box = h("details", { class: "decision", "data-decision": d.decision_id },
      h("summary", {},
        h("span", { class: "when" }, fmt.time(d.created_at)), " ",
        h("strong", {}, d.placement), " · ", d.strategy, " · ",
        h("span", { class: `badge ${d.personalized ? "yes" : "no"}` }, d.personalized ? "personalised" : "not personalised"),
        d.experiment ? ` · ${d.experiment}/${d.variant}` : "",
        h("span", { class: "muted" }, ` · ${d.reason} · ${d.items.length} items`)),
      slot);
    box.addEventListener("toggle", () => {
      if (box.open && !slot.childElementCount) explain(d.decision_id, slot);
    });
    return box;
  }));
}

async function explain(id, slot) {
  fill(slot, notice("loading", "Explaining…"));
  try {
    const x = await get(`/v1/decisions/${enc(id)}`);
    const top = Math.max(1e-9, ...x.items.flatMap((i) => Object.values(i.contributions).map(Math.abs)));
    fill(slot,
      h("p", {}, `Model ${x.model_version || "–"}; data used: ${(x.data_categories || []).join(", ") || "none"}; features: ${(x.features_used || []).join(", ") || "none"}.`),
      table(["#", "item", "score", "propensity", "why (each feature's share of the score)"],
        x.items.map((i) => [
          num(String(i.position)), h("code", {}, i.item_id), num(fmt.num(i.score)), num(fmt.pct(i.propensity)),
          contributions(i.contributions, top),
        ]), { class: "explain-table" }));
  } catch (error) {
    fill(slot, notice("error", "No explanation", error.message));
  }
}

function contributions(parts, top) {
  const entries = Object.entries(parts).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 5);
  if (!entries.length) return "no personal features";
  return h("ul", { class: "contributions" }, entries.map(([name, value]) =>
    h("li", {},
      s("svg", { viewBox: "0 0 100 8", class: "meter", "aria-hidden": "true" },
        s("rect", { x: 0, y: 0, width: ((Math.abs(value) / top) * 100).toFixed(1), height: 8, class: value < 0 ? "meter-neg" : "meter-fill" })),
      h("span", {}, `${name} ${value > 0 ? "+" : ""}${fmt.num(value)}`))));
}

function merges(list) {
  return table(["when", "merged profile", "reason", "via", "score"], list.map((m) => [
    fmt.time(m.at), h("code", {}, m.profile_id), m.reason, (m.via || []).join(", "), m.score === null ? "–" : fmt.num(m.score),
  ]));
}
