// The regulator's console: three views fed by /api/console/*, refreshed every few seconds.
// Money arrives as decimal text and is only regrouped here, never turned into a float,
// so what the page shows is what `dmm sql` shows, to the fen. Data is inserted as text
// (textContent), never as HTML, and styles are set through the DOM, never as style
// attributes: the Content-Security-Policy allows neither inline scripts nor inline styles.
// The console token comes in the URL's fragment (`dmm up` prints /#token=…: a fragment is
// never sent to a server nor in a Referer), is kept in sessionStorage and taken off the URL.
"use strict";

const REFRESH_MS = 5000;
const HOUR_MS = 3600 * 1000;
const state = {
  lang: localStorage.getItem("dmm-console-lang") === "en" ? "en" : "zh",
  view: "market",
  period: localStorage.getItem("dmm-console-period") === "hour" ? "hour" : "day",
  config: null,
  data: {},
  timer: null,
  updated: null,
};

function t(key, vars) {
  const text = (window.I18N[state.lang] || {})[key] ?? window.I18N.zh[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (vars && name in vars ? String(vars[name]) : ""));
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "style") Object.assign(node.style, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setText(id, text) {
  const node = document.getElementById(id);
  if (node) node.textContent = text;
}

// "1234567.8" -> "1,234,567.80": string work only, exact for any Decimal.
function fen(text) {
  if (text === null || text === undefined) return "—";
  const negative = String(text).startsWith("-");
  const [whole, part = ""] = String(text).replace("-", "").split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (negative ? "-" : "") + grouped + "." + (part + "00").slice(0, 2);
}

const yuan = (text) => "¥" + fen(text);
const count = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
const pct = (text) => (text === null || text === undefined ? "—" : text + "%");

function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

// Event times are shown in China Standard Time (UTC+8), whatever the browser's zone.
function cst(ms, withSeconds = true) {
  if (ms === null || ms === undefined) return "—";
  const text = new Date(Number(ms) + 8 * HOUR_MS).toISOString().replace("T", " ");
  return text.slice(0, withSeconds ? 19 : 16);
}

function seconds(n) {
  return n === null || n === undefined ? "—" : t("seconds", { n: count(n) });
}

function named(registry, code) {
  const entry = registry && registry[code];
  return entry ? entry[state.lang] : code;
}

const TOKEN_KEY = "dmm-console-token";

// `#token=…` (as `dmm up` prints the console's address): kept for this tab, taken off the address bar.
function takeTokenFromFragment() {
  const found = location.hash.match(/^#token=([^&]+)/);
  if (!found) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(found[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

function authorization() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function getJSON(path, options) {
  const response = await fetch(path, { ...options, headers: { ...authorization(), ...(options && options.headers) } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function showError(error) {
  const box = document.getElementById("error");
  box.hidden = !error;
  box.textContent = error ? String(error.message || error) : "";
}

// ---- tables and charts -------------------------------------------------------

function table(id, columns, rows, rowAttrs) {
  const node = document.getElementById(id);
  const head = el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.cls }, c.label))));
  const body = el(
    "tbody",
    {},
    rows.map((row) =>
      el("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => el("td", { class: c.cls, "data-col": c.key }, c.render(row))))
    )
  );
  node.replaceChildren(head, body);
}

// Axis ticks only (rounded, for reading the chart): 万 / 亿 in Chinese, k / M in English.
function axisLabel(value) {
  const units = state.lang === "zh" ? [[1e8, "亿"], [1e4, "万"]] : [[1e6, "M"], [1e3, "k"]];
  for (const [size, unit] of units) {
    if (value >= size) return `${Number((value / size).toPrecision(3))}${unit}`;
  }
  return value.toFixed(0);
}

function barChart(id, points, step) {
  const node = document.getElementById(id);
  const width = 640;
  const height = 220;
  const pad = { left: 64, right: 8, top: 12, bottom: 28 };
  const values = points.map((p) => Number(p.amount)); // drawing only: labels keep the exact text
  const max = Math.max(1, ...values);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "bars");
  const add = (tag, attrs, text) => {
    const child = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) child.setAttribute(k, v);
    if (text !== undefined) child.textContent = text;
    svg.append(child);
    return child;
  };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  for (let i = 0; i <= 4; i += 1) {
    const y = pad.top + plotH - (plotH * i) / 4;
    add("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "grid" });
    add("text", { x: pad.left - 6, y: y + 4, class: "axis", "text-anchor": "end" }, axisLabel((max * i) / 4));
  }
  const slot = plotW / Math.max(points.length, 1);
  const every = Math.ceil(points.length / 12);
  points.forEach((p, i) => {
    const h = (plotH * values[i]) / max;
    const x = pad.left + i * slot + slot * 0.15;
    const bar = add("rect", { x, y: pad.top + plotH - h, width: Math.max(slot * 0.7, 1), height: h, class: "bar" });
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = `${cst(p.t_ms, false)}  ${yuan(p.amount)}  (${t("kpi.trades", { n: count(p.trades) })})`;
    bar.append(title);
    if (i % every === 0) {
      const label = step === "hour" ? cst(p.t_ms, false).slice(11, 13) + ":00" : cst(p.t_ms, false).slice(11, 16);
      add("text", { x: x + slot * 0.35, y: height - 8, class: "axis", "text-anchor": "middle" }, label);
    }
  });
  node.replaceChildren(svg);
}

function splitBar(parts) {
  return el(
    "div",
    { class: "split" },
    el("div", { class: "split-bar" },
      parts.map((p) => el("span", { class: p.cls, style: { width: `${Number(p.share || 0)}%` }, title: `${p.label} ${pct(p.share)}` }))),
    el("ul", { class: "legend" },
      parts.map((p) => el("li", { "data-part": p.key }, el("i", { class: p.cls }), `${p.label} `, el("strong", {}, pct(p.share)), ` · ${yuan(p.amount)}`)))
  );
}

// ---- views -------------------------------------------------------------------

function renderWatermark(us) {
  setText("watermark", us ? cst(Math.floor(us / 1000)) : "—");
}

function renderMarket() {
  const m = state.data.market;
  document.querySelectorAll("[data-period]").forEach((b) => b.classList.toggle("active", b.dataset.period === state.period));
  if (!m) return;
  renderWatermark(m.watermark_us);
  document.body.dataset.period = m.period;
  if (m.watermark_us === null) {
    setText("span-note", t("empty"));
    return;
  }
  setText("span-note", t("span", { start: cst(m.span.start_us / 1000, false), end: cst(m.span.end_us / 1000, false) }));
  setText("kpi-amount-today", yuan(m.today.amount));
  setText("kpi-trades-today", t("kpi.trades", { n: count(m.today.trades) }));
  setText("kpi-amount-hour", yuan(m.hour.amount));
  setText("kpi-trades-hour", t("kpi.trades", { n: count(m.hour.trades) }));
  setText("kpi-on-exchange", pct(m.shares.on_exchange));
  setText("kpi-off-exchange", t("kpi.off_exchange", { share: pct(m.shares.off_exchange) }));
  setText("kpi-high-quality", pct(m.shares.high_quality));
  setText("kpi-high-quality-amount", yuan(m.totals.high_quality));
  setText("kpi-new-products", count(m.new_products.products));
  setText("kpi-listing-events", t("kpi.listing_events", { n: count(m.new_products.listing_events) }));
  setText("kpi-new-participants", count(m.new_participants.participants));
  setText("kpi-new-roles", t("kpi.new_roles", { buyers: count(m.new_participants.buyers), sellers: count(m.new_participants.sellers) }));

  setText("trend-title", t(m.trend.step === "hour" ? "trend.hour" : "trend.minute"));
  barChart("trend", m.trend.points, m.trend.step);
  document.getElementById("venue").replaceChildren(splitBar([
    { key: "on_exchange", cls: "c1", label: t("venue.on_exchange"), share: m.shares.on_exchange, amount: m.totals.on_exchange },
    { key: "off_exchange", cls: "c2", label: t("venue.off_exchange"), share: m.shares.off_exchange, amount: m.totals.off_exchange },
  ]));
  setText("metering-calls", count(m.metering.calls));
  setText("metering-bytes", `${bytes(m.metering.bytes)} (${count(m.metering.bytes)} B)`);
  setText("metering-records", count(m.metering.records));

  const p = m.public;
  const supply = (pricing) => (p.supply[pricing] || { trades: 0, amount: "0.00", calls: 0 });
  const facts = [
    ["public.catalogue", count(p.catalogue_products), "public-catalogue"],
    ["public.free", count(p.catalogue.free || 0), "public-free"],
    ["public.conditional_free", count(p.catalogue.conditional_free || 0), "public-conditional-free"],
    ["public.paid", count(p.catalogue.paid || 0), "public-paid"],
    ["public.free_share", pct(p.free_products_share), "public-free-share"],
    ["public.deliveries", t("kpi.trades", { n: count(p.free_deliveries) }), "public-deliveries"],
    ["public.deliveries_share", pct(p.free_deliveries_share), "public-deliveries-share"],
    ["public.calls", count(p.free_calls), "public-calls"],
    ["public.value", yuan(supply("conditional_free").amount), "public-value"],
  ];
  document.getElementById("public").replaceChildren(
    ...facts.flatMap(([key, value, id]) => [el("dt", {}, t(key)), el("dd", { id }, value)])
  );

  setText("recognition-products", t("recognition.products", { n: count(m.recognition.products) }));
  const ex = state.config.exchanges;
  table("recognition", [
    { key: "listed_on", label: t("recognition.listed_on"), render: (r) => named(ex, r.listed_on) },
    { key: "recognized_by", label: t("recognition.recognized_by"), render: (r) => named(ex, r.recognized_by) },
    { key: "products", label: t("recognition.count"), cls: "num", render: (r) => count(r.products) },
  ], m.recognition.pairs);

  table("exchanges", [
    { key: "name", label: t("col.exchange"), render: (r) => el("span", {}, state.lang === "zh" ? r.name_zh : r.name_en, el("small", { class: "code" }, r.code)) },
    { key: "amount", label: t("col.amount"), cls: "num", render: (r) => fen(r.amount) },
    { key: "share", label: t("col.share"), cls: "num", render: (r) => pct(r.market_share) },
    { key: "trades", label: t("col.trades"), cls: "num", render: (r) => count(r.trades) },
    { key: "on_exchange", label: t("col.on_exchange"), cls: "num", render: (r) => pct(r.on_exchange_share) },
    { key: "high_quality", label: t("col.high_quality"), cls: "num", render: (r) => pct(r.high_quality_share) },
    { key: "new_products", label: t("col.new_products"), cls: "num", render: (r) => count(r.new_products) },
    { key: "calls", label: t("col.calls"), cls: "num", render: (r) => count(r.usage_calls) },
    { key: "bytes", label: t("col.bytes"), cls: "num", render: (r) => bytes(r.usage_bytes) },
  ], m.exchanges, (r) => ({ "data-code": r.code }));

  table("sectors", [
    { key: "name", label: t("col.sector"), render: (r) => (state.lang === "zh" ? r.name_zh : r.name_en) },
    { key: "amount", label: t("col.amount"), cls: "num", render: (r) => fen(r.amount) },
    { key: "share", label: t("col.share"), cls: "num", render: (r) => pct(r.market_share) },
    { key: "trades", label: t("col.trades"), cls: "num", render: (r) => count(r.trades) },
    { key: "high_quality", label: t("col.high_quality"), cls: "num", render: (r) => pct(r.high_quality_share) },
    { key: "products_traded", label: t("col.products_traded"), cls: "num", render: (r) => count(r.products_traded) },
    { key: "new_products", label: t("col.new_products"), cls: "num", render: (r) => count(r.new_products) },
  ], m.sectors, (r) => ({ "data-code": r.code }));
}

function fillSelect(id, values, label) {
  const select = document.getElementById(id);
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, t("filter.all")), ...values.map((v) => el("option", { value: v }, label(v))));
  select.value = values.includes(chosen) ? chosen : "";
}

function renderSurveillanceControls() {
  const c = state.config;
  fillSelect("f-status", c.statuses, (v) => t(`status.${v}`));
  fillSelect("f-kind", c.kinds, (v) => t(`kind.${v}`));
  fillSelect("f-severity", c.severities, (v) => t(`severity.${v}`));
  fillSelect("f-exchange", Object.keys(c.exchanges), (v) => `${named(c.exchanges, v)} (${v})`);
  document.getElementById("operator").classList.toggle("disabled", !c.actions_enabled);
  ["op-actor", "op-note", "op-token"].forEach((id) => (document.getElementById(id).disabled = !c.actions_enabled));
  setText("op-hint", t(c.actions_enabled ? "op.enabled" : "op.disabled"));
}

function evidence(a) {
  const window = a.window_start_ms ? `${cst(a.window_start_ms)} – ${cst(a.window_end_ms)}` : "—";
  return el("dl", { class: "evidence" },
    el("dt", {}, t("alert.key")), el("dd", { class: "mono" }, a.dedup_key),
    el("dt", {}, t("alert.product")), el("dd", { class: "mono" }, a.product_id || "—"),
    el("dt", {}, t("alert.window")), el("dd", {}, window),
    el("dt", {}, t("alert.parties")), el("dd", { class: "mono" }, a.parties.join(", ") || "—"),
    el("dt", {}, t("alert.evidence")), el("dd", { class: "mono" }, a.event_ids.join(", ") || "—"));
}

function renderSurveillance() {
  const s = state.data.alerts;
  if (!state.config) return;
  renderSurveillanceControls();
  if (!s) return;
  renderWatermark(s.watermark_us);
  document.getElementById("alert-counts").replaceChildren(
    ...state.config.statuses.map((status) =>
      el("button", { type: "button", class: `count ${status}`, "data-status": status,
        onclick: () => { document.getElementById("f-status").value = status; refresh(); } },
        el("strong", {}, count(s.counts[status])), el("span", {}, t(`status.${status}`))))
  );
  const enabled = state.config.actions_enabled;
  const ex = state.config.exchanges;
  const rows = s.alerts;
  table("alerts", [
    { key: "detected", label: t("alert.detected"), render: (a) => cst(a.detected_ms) },
    { key: "severity", label: t("alert.severity"), render: (a) => el("span", { class: `sev ${a.severity}` }, t(`severity.${a.severity}`)) },
    { key: "kind", label: t("alert.kind"), render: (a) => t(`kind.${a.kind}`) },
    { key: "exchange", label: t("alert.exchange"), render: (a) => named(ex, a.exchange_id) },
    { key: "message", label: t("alert.message"), cls: "wide", render: (a) => el("details", {},
        el("summary", {}, state.lang === "zh" ? a.message_zh : a.message), evidence(a)) },
    { key: "score", label: t("alert.score"), cls: "num", render: (a) => a.score.toFixed(2) },
    { key: "status", label: t("alert.status"), render: (a) => el("span", {},
        el("span", { class: `status ${a.status}`, "data-status": a.status }, t(`status.${a.status}`)),
        a.actor ? el("small", { class: "who" }, t("alert.by", { actor: a.actor, note: a.note || "" })) : null) },
    { key: "actions", label: t("alert.actions"), render: (a) => el("span", { class: "actions" },
        el("button", { type: "button", "data-action": "ack", disabled: !enabled || a.status !== "open",
          onclick: () => act(a.dedup_key, "ack") }, t("op.ack")),
        el("button", { type: "button", "data-action": "resolve", disabled: !enabled || a.status === "resolved",
          onclick: () => act(a.dedup_key, "resolve") }, t("op.resolve"))) },
  ], rows, (a) => ({ "data-key": a.dedup_key, class: `row-${a.status}` }));
  if (!rows.length) {
    document.querySelector("#alerts tbody").append(el("tr", {}, el("td", { colspan: 8, class: "none" }, t("alert.none"))));
  }
}

async function act(key, action) {
  const actor = document.getElementById("op-actor").value.trim();
  if (!actor) {
    showError(t("op.need_actor"));
    return;
  }
  const token = document.getElementById("op-token").value;
  sessionStorage.setItem(TOKEN_KEY, token);
  localStorage.setItem("dmm-console-actor", actor);
  try {
    await getJSON("/api/alert-action", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({ dedup_key: key, action, actor, note: document.getElementById("op-note").value }),
    });
    showError(null);
    setText("op-hint", t("op.done", { key, action: t(`op.${action}`) }));
    await refresh();
  } catch (error) {
    showError(error);
  }
}

function renderFeeds() {
  const f = state.data.feeds;
  if (!f) return;
  renderWatermark(f.watermark_us);
  const totals = [["feeds.events", f.totals.events, "events"], ["feeds.rejected", f.totals.rejected, "rejected"],
    ["feeds.duplicates", f.totals.duplicates, "duplicates"], ["feeds.late", f.totals.late, "late"]];
  document.getElementById("feed-totals").replaceChildren(
    ...totals.map(([key, n, id]) => el("div", { class: "kpi" }, el("span", {}, t(key)), el("strong", { id: `feed-total-${id}` }, count(n))))
  );
  setText("feeds-note", t("feeds.note", { s: f.silent_after_s }));
  const reasonColumns = f.reasons.map((reason) => ({
    key: `rejected-${reason}`, label: t(`reason.${reason}`), cls: "num", render: (r) => count(r.rejected[reason] || 0),
  }));
  const rows = [...f.exchanges];
  if (Object.keys(f.unattributed_rejected).length) {
    const total = Object.values(f.unattributed_rejected).reduce((a, b) => a + b, 0);
    rows.push({ code: "", name_zh: t("feeds.unattributed"), name_en: t("feeds.unattributed"), status: null, events: null,
      rejected: f.unattributed_rejected, rejected_total: total, duplicates: null, late: null, accepted_share: null });
  }
  table("feeds", [
    { key: "name", label: t("col.exchange"), render: (r) => el("span", {}, state.lang === "zh" ? r.name_zh : r.name_en, r.code ? el("small", { class: "code" }, r.code) : null) },
    { key: "status", label: t("feeds.status"), render: (r) => (r.status ? el("span", { class: `feed ${r.status}` }, t(`feed.${r.status}`)) : "") },
    { key: "last_event", label: t("feeds.last_event"), render: (r) => (r.code ? cst(r.last_event_us && r.last_event_us / 1000) : "") },
    { key: "lag", label: t("feeds.lag"), cls: "num", render: (r) => (r.code ? seconds(r.lag_s) : "") },
    { key: "clock_ahead", label: t("feeds.clock_ahead"), cls: "num", render: (r) => (r.code ? el("span",
        { class: r.clock_ahead_s !== null && r.clock_ahead_s > f.max_clock_skew_s ? "stale" : "" }, seconds(r.clock_ahead_s)) : "") },
    { key: "heartbeat_age", label: t("feeds.heartbeat_age"), cls: "num", render: (r) => (r.code ? el("span",
        { class: r.heartbeat_age_s !== null && r.heartbeat_age_s > f.silent_after_s ? "stale" : "" }, seconds(r.heartbeat_age_s)) : "") },
    { key: "events", label: t("feeds.events"), cls: "num", render: (r) => (r.events === null ? "" : count(r.events)) },
    { key: "rejected", label: t("feeds.rejected"), cls: "num", render: (r) => count(r.rejected_total) },
    ...reasonColumns,
    { key: "duplicates", label: t("feeds.duplicates"), cls: "num", render: (r) => (r.duplicates === null ? "" : count(r.duplicates)) },
    { key: "late", label: t("feeds.late"), cls: "num", render: (r) => (r.late === null ? "" : count(r.late)) },
    { key: "quality", label: t("feeds.quality"), cls: "num", render: (r) => pct(r.accepted_share) },
    { key: "arrival", label: t("feeds.arrival"), render: (r) => (r.code ? cst(r.last_arrival_ms) : "") },
  ], rows, (r) => ({ "data-code": r.code || "unattributed" }));
}

// ---- shell -------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = `${t("title")} · ${t("subtitle")}`;
  document.querySelectorAll("[data-i18n]").forEach((node) => (node.textContent = t(node.dataset.i18n)));
  renderUpdated();
  render();
}

function renderUpdated() {
  if (state.updated) setText("updated", t("updated", { t: state.updated.toLocaleTimeString(state.lang === "zh" ? "zh-CN" : "en-GB") }));
}

function render() {
  document.querySelectorAll("[data-view]").forEach((a) => a.classList.toggle("active", a.dataset.view === state.view));
  document.querySelectorAll(".view").forEach((v) => (v.hidden = v.id !== `view-${state.view}`));
  if (!state.config) return;
  if (state.view === "market") renderMarket();
  else if (state.view === "surveillance") renderSurveillance();
  else renderFeeds();
}

async function refresh() {
  clearTimeout(state.timer);
  try {
    state.config = state.config || (await getJSON("/api/console/config"));
    if (state.view === "market") {
      state.data.market = await getJSON(`/api/console/market?period=${state.period}`);
    } else if (state.view === "surveillance") {
      renderSurveillanceControls();
      const query = new URLSearchParams();
      for (const [name, id] of [["status", "f-status"], ["kind", "f-kind"], ["severity", "f-severity"], ["exchange", "f-exchange"]]) {
        const value = document.getElementById(id).value;
        if (value) query.set(name, value);
      }
      state.data.alerts = await getJSON(`/api/console/alerts?${query}`);
    } else {
      state.data.feeds = await getJSON("/api/console/feeds");
    }
    showError(null);
    render();
    state.updated = new Date();
    renderUpdated();
    document.body.dataset.loaded = state.view;
  } catch (error) {
    showError(error);
  }
  state.timer = setTimeout(refresh, REFRESH_MS);
}

function route() {
  const view = location.hash.replace("#", "");
  state.view = ["market", "surveillance", "feeds"].includes(view) ? view : "market";
  delete document.body.dataset.loaded;
  render();
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("dmm-console-lang", state.lang);
    applyLanguage();
  });
  document.querySelectorAll("[data-period]").forEach((button) =>
    button.addEventListener("click", () => {
      state.period = button.dataset.period;
      localStorage.setItem("dmm-console-period", state.period);
      refresh();
    })
  );
  ["f-status", "f-kind", "f-severity", "f-exchange"].forEach((id) => document.getElementById(id).addEventListener("change", refresh));
  document.getElementById("op-actor").value = localStorage.getItem("dmm-console-actor") || "";
  takeTokenFromFragment();
  document.getElementById("op-token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  window.addEventListener("hashchange", route);
  applyLanguage();
  route();
});
