// The regulator's console: three views fed by /api/console/*, refreshed every few seconds.
// Money arrives as decimal text and is worked on here as whole fen (BigInt), never as a float:
// the page shows it in 万 / 亿 (or k / M / bn in English), rounded half up, with the exact
// figure to the fen on hover, in print and in CSV, equal to what `dmm sql` shows. Data is inserted as text
// (textContent), never as HTML, and styles are set through the DOM, never as style
// attributes: the Content-Security-Policy allows neither inline scripts nor inline styles.
// The console token comes in the URL's fragment (`dmm up` prints /#token=…: a fragment is
// never sent to a server nor in a Referer), is kept in sessionStorage and taken off the URL.
"use strict";

const REFRESH_MS = 5000;
const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;
const PERIODS = ["day", "week", "month", "quarter", "half", "year", "custom"];
const storedPeriod = localStorage.getItem("dmm-console-period");
const state = {
  lang: localStorage.getItem("dmm-console-lang") === "en" ? "en" : "zh",
  view: "market",
  period: PERIODS.includes(storedPeriod) ? storedPeriod : "day",
  anchor: null, // the China day the period contains; null: the day of the market's watermark
  custom: { from: null, to: null },
  asOfDay: null, // the China day of the last watermark seen
  config: null,
  data: {},
  tables: {}, // what each table shows, for its CSV: { columns, rows, name }
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

// ---- exact money and counts ------------------------------------------------------

// "1234567.8" -> 123456780n (fen): string work only, exact for any Decimal.
function toFen(text) {
  if (text === null || text === undefined) return null;
  const negative = String(text).startsWith("-");
  const [whole, part = ""] = String(text).replace("-", "").split(".");
  const value = BigInt(whole || "0") * 100n + BigInt((part + "00").slice(0, 2));
  return negative ? -value : value;
}

const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");

// n / d rounded half away from zero, as a BigInt.
function divRound(n, d) {
  const negative = (n < 0n) !== (d < 0n);
  const [a, b] = [n < 0n ? -n : n, d < 0n ? -d : d];
  const q = (2n * a + b) / (2n * b);
  return negative ? -q : q;
}

// hundredths (BigInt) -> "1,234.56" (grouped, or not: `plain`).
function hundredths(value, plain = false) {
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(3, "0");
  const whole = digits.slice(0, -2);
  return (negative ? "-" : "") + (plain ? whole : group(whole)) + "." + digits.slice(-2);
}

// "1234567.8" -> "1,234,567.80"
const fen = (text) => (text === null || text === undefined ? "—" : hundredths(toFen(text)));
const yuan = (text) => (text === null || text === undefined ? "—" : "¥" + fen(text));
const count = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
const pct = (text) => (text === null || text === undefined ? "—" : text + "%");

// Units of readable amounts, largest first, in fen: as Chinese officials write them (亿元, 万元) or in English.
const AMOUNT_UNITS = {
  zh: [[10n ** 10n, "亿元"], [10n ** 6n, "万元"], [100n, "元"]],
  en: [[10n ** 11n, "bn"], [10n ** 8n, "M"], [10n ** 5n, "k"], [100n, ""]],
};

// "253704329.37" -> "2.54亿元" / "CNY 253.70 M": two decimals of the largest unit the amount reaches.
function readable(text) {
  const value = toFen(text);
  if (value === null) return "—";
  const magnitude = value < 0n ? -value : value;
  const [size, unit] = AMOUNT_UNITS[state.lang].find(([size]) => magnitude >= size) || AMOUNT_UNITS[state.lang].at(-1);
  const figure = hundredths(divRound(value * 100n, size));
  if (state.lang === "zh") return figure + unit;
  return unit ? `CNY ${figure} ${unit}` : `CNY ${figure}`;
}

// A readable amount that shows its exact figure on hover.
const amount = (text) => el("span", { class: "amount", title: yuan(text) }, readable(text));

// part / whole as a percentage to two decimals ("12.34%"), "—" for a whole of 0.
function share(part, whole) {
  const [p, w] = [toFen(part), toFen(whole)];
  if (p === null || !w) return "—";
  return hundredths(divRound(p * 10000n, w)) + "%";
}

// The change from `base` to `value` (both amounts as text, or counts), in % to one decimal; "—" from 0.
function change(value, base) {
  const [v, b] = [toFen(String(value)), toFen(String(base))];
  if (!b) return { text: "—", sign: 0 };
  const tenths = divRound((v - b) * 1000n, b);
  const digits = (tenths < 0n ? -tenths : tenths).toString().padStart(2, "0");
  const sign = tenths > 0n ? 1 : tenths < 0n ? -1 : 0;
  return { text: `${sign > 0 ? "+" : sign < 0 ? "−" : ""}${digits.slice(0, -1)}.${digits.slice(-1)}%`, sign };
}

// The change of a share (part / whole) in percentage points to two decimals; "—" when either whole is 0.
function pointChange(part, whole, basePart, baseWhole) {
  const [p, w, bp, bw] = [part, whole, basePart, baseWhole].map(toFen);
  if (!w || !bw) return { text: "—", sign: 0 };
  const delta = divRound((p * bw - bp * w) * 10000n, w * bw);
  const sign = delta > 0n ? 1 : delta < 0n ? -1 : 0;
  const text = (sign > 0 ? "+" : sign < 0 ? "−" : "") + hundredths(delta < 0n ? -delta : delta);
  return { text: t("kpi.points", { n: text }), sign };
}

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

// ---- China days and periods ------------------------------------------------------

// China days are "YYYY-MM-DD" text; arithmetic runs on UTC dates, so the browser's zone never matters.
const chinaDay = (ms) => new Date(Number(ms) + 8 * HOUR_MS).toISOString().slice(0, 10);
const dayMs = (day) => Date.parse(`${day}T00:00:00Z`);
const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);
const addDays = (day, n) => isoDay(dayMs(day) + n * DAY_MS);
const ymd = (y, m, d) => isoDay(Date.UTC(y, m, d)); // month 0-based; day 0 is the month before's last

// The China days (inclusive) of the chosen period containing `day`: weeks run Monday to Sunday,
// half-years January to June and July to December.
function periodDays(period, day) {
  const date = new Date(dayMs(day));
  const [y, m] = [date.getUTCFullYear(), date.getUTCMonth()];
  switch (period) {
    case "week": {
      const monday = addDays(day, -((date.getUTCDay() + 6) % 7));
      return [monday, addDays(monday, 6)];
    }
    case "month": return [ymd(y, m, 1), ymd(y, m + 1, 0)];
    case "quarter": return [ymd(y, m - (m % 3), 1), ymd(y, m - (m % 3) + 3, 0)];
    case "half": return [ymd(y, m < 6 ? 0 : 6, 1), ymd(y, m < 6 ? 6 : 12, 0)];
    case "year": return [ymd(y, 0, 1), ymd(y, 12, 0)];
    default: return [day, day];
  }
}

// The range to ask for, or null for the API's default (the day of the watermark). A period that has not ended
// stops at the watermark's day, so that it is compared with a previous period of as many days, not a full one.
function requestedRange() {
  if (state.period === "custom") {
    const { from, to } = state.custom;
    return from && to ? [from, to] : null;
  }
  if (state.period === "day" && !state.anchor) return null;
  const day = state.anchor || state.asOfDay;
  if (!day) return null;
  const [from, to] = periodDays(state.period, day);
  return [from, state.asOfDay && from <= state.asOfDay && to > state.asOfDay ? state.asOfDay : to];
}

function periodLabel(p) {
  return p.from === p.to ? p.from : t("period.label", { from: p.from, to: p.to, days: count(p.days) });
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

// ---- tables, their CSV, charts -------------------------------------------------

// A table of `rows`; each column renders a cell (text or a node) and, for the CSV, its exact value (`csv`,
// else the cell's text; `csv: false` leaves it out, `csvOnly` is in the CSV only). `name` names the file.
function table(id, columns, rows, rowAttrs, name) {
  const node = document.getElementById(id);
  const shown = columns.filter((c) => !c.csvOnly);
  const head = el("thead", {}, el("tr", {}, shown.map((c) => el("th", { class: c.cls }, c.label))));
  const body = el(
    "tbody",
    {},
    rows.map((row) =>
      el("tr", rowAttrs ? rowAttrs(row) : {}, shown.map((c) => el("td", { class: c.cls, "data-col": c.key }, c.render(row))))
    )
  );
  node.replaceChildren(head, body);
  state.tables[id] = { columns, rows, name: name || id };
}

// A cell for a spreadsheet: quoted when it must be, and text that a spreadsheet would run as a formula
// (=, +, -, @ first) kept as text. Numbers stay numbers.
function csvCell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(text) && !/^-?\d+(\.\d+)?$/.test(text)) text = "'" + text;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function csvValue(column, row) {
  if (column.csv) return column.csv(row);
  const rendered = column.render(row);
  return rendered instanceof Node ? rendered.textContent : rendered;
}

// The table as CSV (UTF-8 with a byte-order mark, so that Excel reads Chinese), downloaded.
function downloadCSV(id) {
  const found = state.tables[id];
  if (!found) return;
  const columns = found.columns.filter((c) => c.csv !== false);
  const lines = [columns.map((c) => csvCell(c.label)).join(",")];
  for (const row of found.rows) lines.push(columns.map((c) => csvCell(csvValue(c, row))).join(","));
  const blob = new Blob(["\ufeff" + lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" });
  const link = el("a", { href: URL.createObjectURL(blob), download: `dmm-${found.name}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// Chart units, largest first, in yuan (drawing only: the bars' titles keep the exact text).
const AXIS_UNITS = {
  zh: [[1e8, "亿元"], [1e4, "万元"], [1, "元"]],
  en: [[1e9, "CNY bn"], [1e6, "CNY M"], [1e3, "CNY k"], [1, "CNY"]],
};

// Round ticks from 0 up to `max` or just past it: a step of 1, 2 or 5 times a power of ten, about four steps.
function roundTicks(max) {
  const raw = max / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].find((f) => f * power >= raw * (1 - 1e-9)) * power;
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const steps = Math.max(1, Math.ceil(max / step - 1e-9));
  return Array.from({ length: steps + 1 }, (_, i) => ({ value: i * step, label: (i * step).toFixed(decimals) }));
}

function pointLabel(p, grain, days) {
  const text = cst(p.t_ms, false); // "YYYY-MM-DD HH:MM"
  if (grain === "month") return text.slice(0, 7);
  if (grain === "day") return text.slice(5, 10);
  return days > 1 ? `${text.slice(5, 10)} ${text.slice(11, 13)}h` : `${text.slice(11, 13)}:00`;
}

function barChart(id, points, grain, days) {
  const node = document.getElementById(id);
  const values = points.map((p) => Number(p.traded_amount)); // drawing only
  const max = Math.max(0, ...values);
  if (!points.length || max <= 0) {
    node.replaceChildren(el("p", { class: "nodata" }, t("nodata")));
    setText("trend-unit", "");
    return;
  }
  const [size, unit] = AXIS_UNITS[state.lang].find(([size]) => max >= size) || AXIS_UNITS[state.lang].at(-1);
  const ticks = roundTicks(max / size);
  const top = ticks.at(-1).value * size;
  setText("trend-unit", t("unit", { unit }));
  const width = 640;
  const height = 220;
  const pad = { left: 56, right: 8, top: 12, bottom: 28 };
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
  for (const tick of ticks) {
    const y = pad.top + plotH - (plotH * tick.value * size) / top;
    add("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "grid" });
    add("text", { x: pad.left - 6, y: y + 4, class: "axis tick", "text-anchor": "end" }, tick.label);
  }
  const slot = plotW / points.length;
  const every = Math.ceil(points.length / 12);
  points.forEach((p, i) => {
    const h = (plotH * values[i]) / top;
    const x = pad.left + i * slot + slot * 0.15;
    const bar = add("rect", { x, y: pad.top + plotH - h, width: Math.max(slot * 0.7, 1), height: h, class: "bar" });
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = `${pointLabel(p, grain, days)}  ${yuan(p.traded_amount)}  (${t("kpi.trades", { n: count(p.trades) })})`;
    bar.append(title);
    if (i % every === 0) add("text", { x: x + slot * 0.35, y: height - 8, class: "axis", "text-anchor": "middle" }, pointLabel(p, grain, days));
  });
  node.replaceChildren(svg);
}

function splitBar(parts) {
  return el(
    "div",
    { class: "split" },
    el("div", { class: "split-bar" },
      parts.map((p) => el("span", { class: p.cls, style: { width: p.share === "—" ? "0%" : p.share }, title: `${p.label} ${p.share}` }))),
    el("ul", { class: "legend" },
      parts.map((p) => el("li", { "data-part": p.key }, el("i", { class: p.cls }), `${p.label} `, el("strong", {}, p.share), " · ", amount(p.amount))))
  );
}

// ---- views -------------------------------------------------------------------

function renderWatermark(us) {
  setText("watermark", us ? cst(Math.floor(us / 1000)) : "—");
}

const minus = (a, b) => hundredths(toFen(a) - toFen(b), true);

// The Market view's key figures: each beside the previous period and the same period a year earlier.
const KPIS = [
  { key: "amount", label: "kpi.amount", primary: true,
    value: (m) => amount(m.traded_amount), exact: (m) => yuan(m.traded_amount),
    sub: (m) => t("kpi.trades", { n: count(m.trades) }),
    base: (b) => amount(b.traded_amount), delta: (m, b) => change(m.traded_amount, b.traded_amount) },
  { key: "trades", label: "kpi.trades_label",
    value: (m) => count(m.trades), base: (b) => count(b.trades), delta: (m, b) => change(m.trades, b.trades) },
  { key: "on-exchange", label: "kpi.on_exchange",
    value: (m) => share(m.on_exchange_amount, m.traded_amount), exact: (m) => yuan(m.on_exchange_amount),
    sub: (m) => el("span", {}, t("kpi.off_exchange", { share: share(minus(m.traded_amount, m.on_exchange_amount), m.traded_amount) })),
    base: (b) => share(b.on_exchange_amount, b.traded_amount),
    delta: (m, b) => pointChange(m.on_exchange_amount, m.traded_amount, b.on_exchange_amount, b.traded_amount) },
  { key: "high-quality", label: "kpi.high_quality",
    value: (m) => share(m.high_quality_amount, m.traded_amount), exact: (m) => yuan(m.high_quality_amount),
    sub: (m) => amount(m.high_quality_amount),
    base: (b) => share(b.high_quality_amount, b.traded_amount),
    delta: (m, b) => pointChange(m.high_quality_amount, m.traded_amount, b.high_quality_amount, b.traded_amount) },
  { key: "new-products", label: "kpi.new_products",
    value: (m) => count(m.new_products), base: (b) => count(b.new_products), delta: (m, b) => change(m.new_products, b.new_products) },
  { key: "new-participants", label: "kpi.new_participants",
    value: (m) => count(m.new_participants), base: (b) => count(b.new_participants),
    delta: (m, b) => change(m.new_participants, b.new_participants) },
];

function comparison(kpi, m, which) {
  const base = m[which];
  const delta = base ? kpi.delta(m, base) : { text: "—", sign: 0 };
  const direction = delta.sign > 0 ? "up" : delta.sign < 0 ? "down" : "flat";
  return [
    el("dt", {}, t(`kpi.${which}`)),
    el("dd", { "data-compare": which },
      el("span", { class: "base" }, base ? kpi.base(base) : "—"), " ",
      el("span", { class: `delta ${direction}` }, delta.text)),
  ];
}

function renderKpis(m) {
  document.getElementById("kpis").replaceChildren(
    ...KPIS.map((kpi) => el("div", { class: kpi.primary ? "kpi primary" : "kpi", id: `kpi-${kpi.key}` },
      el("span", {}, t(kpi.label)),
      el("strong", { class: "figure" }, kpi.value(m)),
      kpi.sub ? el("small", { class: "sub" }, kpi.sub(m)) : null,
      kpi.exact ? el("small", { class: "exact print-only" }, kpi.exact(m)) : null,
      el("dl", { class: "compare" }, comparison(kpi, m, "previous"), comparison(kpi, m, "year_ago"))))
  );
}

// The per-exchange and per-sector tables: the period's figures, and the traded amount's change.
function dimensionTable(id, label, rows, m, name) {
  const before = (which) => new Map(((m[which] && m[which][id === "exchanges" ? "by_exchange" : "by_sector"]) || []).map((r) => [r.code, r]));
  const previous = before("previous");
  const yearAgo = before("year_ago");
  const versus = (map) => (r) => (map.has(r.code) ? change(r.traded_amount, map.get(r.code).traded_amount).text : "—");
  table(id, [
    { key: "name", label, render: (r) => el("span", {}, state.lang === "zh" ? r.name_zh : r.name_en, el("small", { class: "code" }, r.code)),
      csv: (r) => `${state.lang === "zh" ? r.name_zh : r.name_en} (${r.code})` },
    { key: "amount", label: t("col.amount"), cls: "num", render: (r) => amount(r.traded_amount), csv: (r) => r.traded_amount },
    { key: "share", label: t("col.share"), cls: "num", render: (r) => share(r.traded_amount, m.traded_amount) },
    { key: "trades", label: t("col.trades"), cls: "num", render: (r) => count(r.trades), csv: (r) => r.trades },
    { key: "on_exchange", label: t("col.on_exchange"), cls: "num", render: (r) => share(r.on_exchange_amount, r.traded_amount) },
    { key: "high_quality", label: t("col.high_quality"), cls: "num", render: (r) => share(r.high_quality_amount, r.traded_amount) },
    { key: "new_products", label: t("col.new_products"), cls: "num", render: (r) => count(r.new_products), csv: (r) => r.new_products },
    { key: "previous", label: t("col.previous"), cls: "num", render: versus(previous) },
    { key: "year_ago", label: t("col.year_ago"), cls: "num", render: versus(yearAgo) },
  ], rows, (r) => ({ "data-code": r.code }), name);
}

function renderMarket() {
  const m = state.data.market;
  document.querySelectorAll("[data-period]").forEach((b) => b.classList.toggle("active", b.dataset.period === state.period));
  document.getElementById("pick-anchor").hidden = state.period === "custom";
  document.getElementById("pick-range").hidden = state.period !== "custom";
  for (const id of ["period-date", "period-from", "period-to"]) document.getElementById(id).max = state.asOfDay || "";
  if (!m) return;
  renderWatermark(m.as_of_us);
  document.body.dataset.period = state.period;
  const empty = m.as_of_us === null || m.as_of_us === undefined || !m.period;
  document.body.dataset.range = empty ? "" : `${m.period.from}/${m.period.to}`;
  if (!empty && !document.getElementById("period-date").matches(":focus")) document.getElementById("period-date").value = state.anchor || m.period.to;
  if (!empty && state.period === "custom") {
    document.getElementById("period-from").value = state.custom.from || m.period.from;
    document.getElementById("period-to").value = state.custom.to || m.period.to;
  }
  setText("span-note", empty ? t("empty") : t("span", { period: periodLabel(m.period), as_of: cst(Math.floor(m.as_of_us / 1000)) }));
  setText("compare-note", empty ? "" : t("span.compare", { previous: periodLabel(m.previous.period), year_ago: periodLabel(m.year_ago.period) }));
  renderKpis(m);
  const trend = m.trend || { grain: "hour", points: [] };
  setText("trend-title", t(`trend.${trend.grain}`));
  barChart("trend", trend.points, trend.grain, empty ? 1 : m.period.days);
  document.getElementById("venue").replaceChildren(splitBar([
    { key: "on_exchange", cls: "c1", label: t("venue.on_exchange"), share: share(m.on_exchange_amount, m.traded_amount), amount: m.on_exchange_amount },
    { key: "off_exchange", cls: "c2", label: t("venue.off_exchange"),
      share: share(minus(m.traded_amount, m.on_exchange_amount), m.traded_amount), amount: minus(m.traded_amount, m.on_exchange_amount) },
  ]));
  renderMetering(m.metering);
  renderPublic(m.public);
  renderRecognition(m.recognition);
  const range = empty ? "empty" : `${m.period.from}_${m.period.to}`;
  dimensionTable("exchanges", t("col.exchange"), m.by_exchange || [], m, `exchanges-${range}`);
  dimensionTable("sectors", t("col.sector"), m.by_sector || [], m, `sectors-${range}`);
}

// Sections the API may add for the period (metering, public data, mutual recognition): shown when present.
function renderMetering(metering) {
  document.getElementById("metering-card").hidden = !metering;
  if (!metering) return;
  setText("metering-calls", count(metering.calls));
  setText("metering-bytes", `${bytes(metering.bytes)} (${count(metering.bytes)} B)`);
  setText("metering-records", count(metering.records));
}

function renderPublic(p) {
  document.getElementById("public-card").hidden = !p;
  if (!p) return;
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
    ["public.value", amount(supply("conditional_free").amount), "public-value"],
  ];
  document.getElementById("public").replaceChildren(
    ...facts.flatMap(([key, value, id]) => [el("dt", {}, t(key)), el("dd", { id }, value)])
  );
}

function renderRecognition(r) {
  document.getElementById("recognition-card").hidden = !r;
  if (!r) return;
  setText("recognition-products", t("recognition.products", { n: count(r.products) }));
  const ex = state.config.exchanges;
  table("recognition", [
    { key: "listed_on", label: t("recognition.listed_on"), render: (p) => named(ex, p.listed_on) },
    { key: "recognized_by", label: t("recognition.recognized_by"), render: (p) => named(ex, p.recognized_by) },
    { key: "products", label: t("recognition.count"), cls: "num", render: (p) => count(p.products), csv: (p) => p.products },
  ], r.pairs);
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

// An alert's time in the market (event time): the end of the event-time span it covers. Its detection
// is the monitor's wall clock (`detected_at`, processing time), shown apart and labelled so.
const eventTime = (a) => a.event_time_ms ?? null;
const detectedTime = (a) => a.detected_wall_ms ?? null;

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
    { key: "event_time", label: t("alert.event_time"), render: (a) => cst(eventTime(a)) },
    { key: "detected", label: t("alert.detected"), render: (a) => cst(detectedTime(a)) },
    { key: "severity", label: t("alert.severity"), render: (a) => el("span", { class: `sev ${a.severity}` }, t(`severity.${a.severity}`)) },
    { key: "kind", label: t("alert.kind"), render: (a) => t(`kind.${a.kind}`) },
    { key: "exchange", label: t("alert.exchange"), render: (a) => named(ex, a.exchange_id) },
    { key: "message", label: t("alert.message"), cls: "wide", render: (a) => el("details", {},
        el("summary", {}, state.lang === "zh" ? a.message_zh : a.message), evidence(a)),
      csv: (a) => (state.lang === "zh" ? a.message_zh : a.message) },
    { key: "product", label: t("alert.product"), render: () => "", csv: (a) => a.product_id || "", csvOnly: true },
    { key: "parties", label: t("alert.parties"), render: () => "", csv: (a) => a.parties.join(" "), csvOnly: true },
    { key: "evidence", label: t("alert.evidence"), render: () => "", csv: (a) => a.event_ids.join(" "), csvOnly: true },
    { key: "dedup_key", label: t("alert.key"), render: () => "", csv: (a) => a.dedup_key, csvOnly: true },
    { key: "score", label: t("alert.score"), cls: "num", render: (a) => a.score.toFixed(2), csv: (a) => a.score },
    { key: "status", label: t("alert.status"), render: (a) => el("span", {},
        el("span", { class: `status ${a.status}`, "data-status": a.status }, t(`status.${a.status}`)),
        a.actor ? el("small", { class: "who" }, t("alert.by", { actor: a.actor, note: a.note || "" })) : null),
      csv: (a) => [t(`status.${a.status}`), a.actor, a.note].filter(Boolean).join(" · ") },
    { key: "actions", label: t("alert.actions"), render: (a) => el("span", { class: "actions" },
        el("button", { type: "button", "data-action": "ack", disabled: !enabled || a.status !== "open",
          onclick: () => act(a.dedup_key, "ack") }, t("op.ack")),
        el("button", { type: "button", "data-action": "resolve", disabled: !enabled || a.status === "resolved",
          onclick: () => act(a.dedup_key, "resolve") }, t("op.resolve"))), csv: false },
  ], rows, (a) => ({ "data-key": a.dedup_key, class: `row-${a.status}` }), `alerts-${s.watermark_us ? chinaDay(s.watermark_us / 1000) : "empty"}`);
  if (!rows.length) {
    document.querySelector("#alerts tbody").append(el("tr", {}, el("td", { colspan: 9, class: "none" }, t("alert.none"))));
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
  ], rows, (r) => ({ "data-code": r.code || "unattributed" }), `feeds-${f.watermark_us ? chinaDay(f.watermark_us / 1000) : "empty"}`);
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

// The chosen period's figures. A week, month ... needs the day it contains: until one is picked, the
// watermark's, which the API's default answer (that day) tells.
async function fetchMarket() {
  const learn = (answer) => {
    if (answer.as_of_us !== null && answer.as_of_us !== undefined) state.asOfDay = chinaDay(answer.as_of_us / 1000);
    return answer;
  };
  if (!requestedRange() && state.period !== "day" && state.period !== "custom") {
    const latest = learn(await getJSON("/api/console/market"));
    if (!requestedRange()) return latest; // an empty store: no day yet
  }
  const range = requestedRange();
  const query = range ? `?${new URLSearchParams({ from: range[0], to: range[1] })}` : "";
  return learn(await getJSON(`/api/console/market${query}`));
}

async function refresh() {
  clearTimeout(state.timer);
  try {
    state.config = state.config || (await getJSON("/api/console/config"));
    if (state.view === "market") {
      state.data.market = await fetchMarket();
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
      if (state.period === "custom" && !state.custom.from) {
        const shown = state.data.market && state.data.market.period;
        state.custom = shown ? { from: shown.from, to: shown.to } : { from: null, to: null };
      }
      refresh();
    })
  );
  document.getElementById("period-date").addEventListener("change", (event) => {
    state.anchor = event.target.value || null;
    refresh();
  });
  for (const [id, end] of [["period-from", "from"], ["period-to", "to"]]) {
    document.getElementById(id).addEventListener("change", (event) => {
      state.custom[end] = event.target.value || null;
      if (state.custom.from && state.custom.to && state.custom.from > state.custom.to) {
        state.custom = end === "from" ? { from: state.custom.from, to: state.custom.from } : { from: state.custom.to, to: state.custom.to };
      }
      refresh();
    });
  }
  document.getElementById("period-latest").addEventListener("click", () => {
    state.anchor = null;
    state.custom = { from: null, to: null };
    if (state.period === "custom") state.period = "day";
    refresh();
  });
  document.getElementById("print").addEventListener("click", () => window.print());
  document.querySelectorAll("[data-csv]").forEach((button) => button.addEventListener("click", () => downloadCSV(button.dataset.csv)));
  ["f-status", "f-kind", "f-severity", "f-exchange"].forEach((id) => document.getElementById(id).addEventListener("change", refresh));
  document.getElementById("op-actor").value = localStorage.getItem("dmm-console-actor") || "";
  takeTokenFromFragment();
  document.getElementById("op-token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  window.addEventListener("hashchange", route);
  applyLanguage();
  route();
});
