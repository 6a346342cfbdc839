// Weft dashboard: keeps the last five minutes of snapshots from /ui/events (server-sent
// events) and derives rates from counter deltas. No framework, no build step, no network
// other than this server.
"use strict";

const KEEP_MS = 5 * 60 * 1000;
const history = []; // snapshots, oldest first
const state = { updates: 0 };
window.weft = state; // read by the browser test

function $(id) { return document.getElementById(id); }

function fmt(n, digits) {
  if (n === null || n === undefined || !isFinite(n)) return "–";
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return n.toFixed(digits === undefined ? (a >= 100 || n === Math.round(n) ? 0 : 1) : digits);
}

function secs(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  if (s < 0.001) return (s * 1e6).toFixed(0) + "µs";
  if (s < 1) return (s * 1e3).toFixed(1) + "ms";
  return s.toFixed(s < 10 ? 2 : 0) + "s";
}

function bytes(b) { return fmt(b) + "B"; }

// The snapshot about `ms` before the newest one (or the oldest we have).
function before(ms) {
  const last = history[history.length - 1];
  for (let i = history.length - 2; i >= 0; i--) {
    if (last.time_ms - history[i].time_ms >= ms) return history[i];
  }
  return history.length > 1 ? history[0] : null;
}

function rate(now, prev, get) {
  if (!prev) return null;
  const dt = (now.time_ms - prev.time_ms) / 1000;
  if (dt <= 0) return null;
  return Math.max(0, (get(now) - get(prev)) / dt);
}

function topicValue(s, topic, key) {
  const t = s.topics.find((x) => x.topic === topic);
  return t ? t[key] : 0;
}

// Records in for a topic: the broker's counter when it has one, else the log end offset the
// lag monitor saw.
function topicRecords(s, topic) {
  const t = s.topics.find((x) => x.topic === topic);
  if (!t) return 0;
  return t.records_in_total > 0 ? t.records_in_total : t.log_end;
}

function totalRecords(s) {
  return s.topics.reduce((sum, t) => sum + (t.records_in_total > 0 ? t.records_in_total : t.log_end), 0);
}

// Quantile of the observations between two cumulative bucket lists (PromQL-style).
function quantile(q, now, prev) {
  const b = now.e2e_buckets.map(([le, c], i) => [le, c - (prev && prev.e2e_buckets[i] ? prev.e2e_buckets[i][1] : 0)]);
  if (!b.length) return null;
  const total = b[b.length - 1][1];
  if (total <= 0) return null;
  const rank = q * total;
  let pl = 0, pc = 0;
  for (const [le, c] of b) {
    if (c >= rank) {
      if (le >= 1e300) return pl;
      return pl + (le - pl) * (c > pc ? (rank - pc) / (c - pc) : 1);
    }
    pl = le; pc = c;
  }
  return pl;
}

// A polyline through `values` (nulls skipped) scaled into a w×h box.
function points(values, w, h, max) {
  const n = values.length;
  const m = max || Math.max(1e-9, ...values.filter((v) => v !== null));
  return values.map((v, i) => v === null ? null :
    (n > 1 ? (i * w) / (n - 1) : 0).toFixed(1) + "," + (h - 2 - (v / m) * (h - 4)).toFixed(1))
    .filter((p) => p !== null).join(" ");
}

function spark(values) {
  return '<svg class="spark" viewBox="0 0 120 24" preserveAspectRatio="none"><polyline points="' +
    points(values, 120, 24) + '"/></svg>';
}

function chart(id, series) {
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values.filter((v) => v !== null)));
  $(id).innerHTML = series.map((s) =>
    '<polyline style="stroke:' + s.color + '" points="' + points(s.values, 300, 90, max) + '"/>').join("") +
    '<text x="2" y="10" fill="#7b8794" font-size="9">' + fmt(max, 2) + "</text>";
}

// Per-snapshot series over the history: f(now, prev) for consecutive pairs.
function series(f) {
  const out = [];
  for (let i = 1; i < history.length; i++) out.push(f(history[i], history[i - 1]));
  return out;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function render() {
  const now = history[history.length - 1];
  const prev = before(10000);
  $("updated").textContent = "updated " + new Date(now.time_ms).toLocaleTimeString();
  $("t-records").textContent = fmt(rate(now, prev, totalRecords));
  $("t-requests").textContent = fmt(rate(now, prev, (s) => s.requests_total));
  $("t-errors").textContent = fmt(rate(now, prev, (s) => s.errors_total));
  $("t-connections").textContent = fmt(now.connections);
  const p50 = quantile(0.5, now, before(60000)), p99 = quantile(0.99, now, before(60000));
  // The SDK's e2e histogram when a consumer records it in this process; else the lag
  // monitor's age of the oldest unconsumed record per partition (labelled as such).
  if (p50 !== null) {
    $("t-e2e").textContent = secs(p50) + " / " + secs(p99);
    $("k-e2e").textContent = "e2e latency p50 / p99";
  } else if (now.lag_age_p50 !== null && now.lag_age_p50 !== undefined) {
    $("t-e2e").textContent = secs(now.lag_age_p50) + " / " + secs(now.lag_age_p99);
    $("k-e2e").textContent = "lag age p50 / p99 (no SDK e2e here)";
  } else {
    $("t-e2e").textContent = "–";
  }
  const lagging = now.groups.filter((g) => g.status !== "OK").length;
  $("t-lagging").textContent = String(lagging);
  $("t-lagging").className = "v" + (lagging ? " lagging" : "");
  const cpu = rate(now, prev, (s) => s.cpu_seconds);
  $("t-cpu").textContent = cpu === null ? "–" : (cpu * 100).toFixed(0) + "%";
  $("t-rss").textContent = bytes(now.resident_bytes);

  const groupRows = now.groups.map((g) => {
    const lags = history.map((s) => { const x = s.groups.find((y) => y.group === g.group); return x ? x.lag_records : null; });
    return '<tr data-group="' + esc(g.group) + '" data-status="' + esc(g.status) + '" data-lag="' + g.lag_records + '">' +
      "<td>" + esc(g.group) + '</td><td><span class="badge ' + esc(g.status) + '">' + esc(g.status) + "</span></td>" +
      "<td>" + fmt(g.lag_records) + "</td><td>" + secs(g.lag_seconds) + "</td><td>" + g.members + "</td><td>" + spark(lags) + "</td></tr>";
  });
  $("groups").tBodies[0].innerHTML = groupRows.join("");
  $("groups-empty").style.display = groupRows.length ? "none" : "";

  const topicRows = now.topics.map((t) => {
    const r = rate(now, prev, (s) => topicRecords(s, t.topic));
    const b = rate(now, prev, (s) => topicValue(s, t.topic, "bytes_in_total"));
    const rs = series((a, z) => rate(a, z, (s) => topicRecords(s, t.topic)));
    return '<tr data-topic="' + esc(t.topic) + '" data-rate="' + (r === null ? "" : r) + '"><td>' + esc(t.topic) +
      "</td><td>" + fmt(r) + "</td><td>" + (t.bytes_in_total > 0 ? bytes(b) : "–") + "</td><td>" + spark(rs) + "</td></tr>";
  });
  $("topics").tBodies[0].innerHTML = topicRows.join("");
  $("topics-empty").style.display = topicRows.length ? "none" : "";

  chart("chart-requests", [
    { color: "#58a6ff", values: series((a, z) => rate(a, z, (s) => s.requests_total)) },
    { color: "#f85149", values: series((a, z) => rate(a, z, (s) => s.errors_total)) },
  ]);
  const sdk = p50 !== null;
  chart("chart-e2e", [
    { color: "#3fb950", values: series((a, z) => sdk ? quantile(0.5, a, z) : a.lag_age_p50) },
    { color: "#d29922", values: series((a, z) => sdk ? quantile(0.99, a, z) : a.lag_age_p99) },
  ]);
}

function connect() {
  const es = new EventSource("/ui/events");
  es.addEventListener("open", () => { $("conn").textContent = "live"; $("conn").className = "live"; });
  es.addEventListener("error", () => { $("conn").textContent = "reconnecting…"; $("conn").className = ""; });
  es.addEventListener("snapshot", (e) => {
    const snap = JSON.parse(e.data);
    history.push(snap);
    while (history.length > 2 && snap.time_ms - history[0].time_ms > KEEP_MS) history.shift();
    state.updates++;
    state.last = snap;
    render();
  });
}

connect();
