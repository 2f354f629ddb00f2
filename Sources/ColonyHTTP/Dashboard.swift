/// The live dashboard: one self-contained page (no external scripts or fonts, so it works on
/// a cluster without internet) that polls `/api/v1/status` every second and draws what
/// `colony top` shows, with a throughput chart of the last minute.
///
/// With a token, open it as `http://HOST:PORT/#token=TOKEN`: the page keeps the token in the
/// tab's session storage and sends it as a bearer header; it never goes into a URL the server sees.
enum Dashboard {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Colony</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2327; background: #f6f7f7; }
  h1 { font-size: 20px; margin: 0 0 .3em; }
  h2 { font-size: 15px; margin: 1.2em 0 .4em; }
  .muted { color: #667; }
  .cards { display: flex; flex-wrap: wrap; gap: .6em; }
  .card { background: #fff; border: 1px solid #dcdcde; border-radius: 6px; padding: .5em .8em; min-width: 7em; }
  .card b { display: block; font-size: 20px; }
  table { border-collapse: collapse; background: #fff; }
  th, td { border: 1px solid #dcdcde; padding: .25em .6em; text-align: left; }
  th { background: #f0f0f1; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  #chart { background: #fff; border: 1px solid #dcdcde; border-radius: 6px; }
  #error { color: #b32d2e; font-weight: bold; }
  #warnings { color: #8a5a00; white-space: pre-line; }
  .bar { display: inline-block; height: .8em; background: #2271b1; vertical-align: middle; }
</style>
</head>
<body>
<h1>Colony</h1>
<div class="muted" id="meta">connecting…</div>
<div id="error"></div>
<div id="warnings"></div>
<h2>Tasks</h2>
<div class="cards" id="cards"></div>
<h2>Throughput (tasks finished per second, last minute)</h2>
<svg id="chart" width="640" height="160" viewBox="0 0 640 160" role="img" aria-label="throughput chart"></svg>
<h2>Nodes</h2>
<table id="nodes"><thead><tr><th>node</th><th>host</th><th>threads busy</th><th>processes busy</th><th>io busy</th><th>prefetched</th><th>done</th><th>failed</th><th>RSS</th><th>children RSS</th><th>child starts</th><th>last seen</th></tr></thead><tbody></tbody></table>
<h2>Jobs</h2>
<table id="jobs"><thead><tr><th>job</th><th>name</th><th>state</th><th>progress</th><th>failed</th><th>age</th></tr></thead><tbody></tbody></table>
<h2>Recent failures</h2>
<table id="failures"><thead><tr><th>task</th><th>handler</th><th>node</th><th>reason</th><th>error</th><th>when</th></tr></thead><tbody></tbody></table>
<h2>Counters and limits</h2>
<table id="counters"><thead><tr><th>name</th><th>kind</th><th>value</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get("token")) { sessionStorage.setItem("colonyToken", hash.get("token")); history.replaceState(null, "", location.pathname); }
const token = sessionStorage.getItem("colonyToken");
const headers = token ? { "Authorization": "Bearer " + token } : {};
const fmt = (n, d = 0) => (n === undefined || n === null) ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: d });
function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; }
function fill(id, rows, columns) {
  const body = document.querySelector("#" + id + " tbody");
  body.textContent = "";
  for (const item of rows) { const row = body.insertRow(); for (const [get, cls] of columns) cell(row, get(item), cls); }
  if (rows.length === 0) { const row = body.insertRow(); const td = cell(row, "none"); td.colSpan = columns.length; td.className = "muted"; }
}
function busy(used, total) {
  return used + " / " + total;
}
function chart(points) {
  const svg = document.getElementById("chart");
  const w = 640, h = 160, pad = 30;
  const max = Math.max(1, ...points.map(p => p.per_second));
  const x = ago => pad + (w - pad - 10) * (1 - Math.min(60, ago) / 60);
  const y = v => h - 20 - (h - 40) * v / max;
  const line = points.map(p => x(p.seconds_ago).toFixed(1) + "," + y(p.per_second).toFixed(1)).join(" ");
  svg.innerHTML =
    '<line x1="' + pad + '" y1="' + (h - 20) + '" x2="' + (w - 10) + '" y2="' + (h - 20) + '" stroke="#8c8f94"/>' +
    '<text x="2" y="' + (y(max) + 4) + '" font-size="11" fill="#667">' + fmt(max) + '</text>' +
    '<text x="2" y="' + (h - 16) + '" font-size="11" fill="#667">0</text>' +
    '<text x="' + pad + '" y="' + (h - 4) + '" font-size="11" fill="#667">60 s ago</text>' +
    '<text x="' + (w - 40) + '" y="' + (h - 4) + '" font-size="11" fill="#667">now</text>' +
    (points.length > 1 ? '<polyline id="throughput-line" fill="none" stroke="#2271b1" stroke-width="2" points="' + line + '"/>' : "");
}
async function refresh() {
  try {
    const response = await fetch("/api/v1/status", { headers, cache: "no-store" });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(response.status + ": " + (body.error || response.statusText));
    }
    const s = await response.json();
    document.getElementById("error").textContent = "";
    document.getElementById("warnings").textContent = (s.unplaceable_reasons || [])
      .map(u => "warning: " + fmt(u.count) + " queued task(s) cannot run anywhere: " + u.reason).join("\n");
    document.getElementById("meta").textContent = "up " + fmt(s.uptime_s) + " s · " + s.nodes.length + " node(s) · updated " + new Date().toLocaleTimeString();
    const cards = [
      ["throughput now", fmt(s.throughput_now, 1) + "/s"], ["last minute", fmt(s.throughput_minute, 1) + "/s"],
      ["submitted", fmt(s.submitted)], ["queued", fmt(s.queued)], ["waiting", fmt(s.waiting)], ["running", fmt(s.running)],
      ["succeeded", fmt(s.succeeded)], ["failed", fmt(s.failed)], ["cancelled", fmt(s.cancelled)],
      ["queue wait p50/p99", fmt(s.queue_wait_p50_ms, 1) + " / " + fmt(s.queue_wait_p99_ms, 1) + " ms"],
      ["run time p50/p99", fmt(s.run_time_p50_ms, 1) + " / " + fmt(s.run_time_p99_ms, 1) + " ms"],
    ];
    const box = document.getElementById("cards");
    box.textContent = "";
    for (const [label, value] of cards) {
      const card = document.createElement("div"); card.className = "card";
      card.dataset.label = label;
      const b = document.createElement("b"); b.textContent = value; card.append(b, label); box.append(card);
    }
    chart(s.throughput || []);
    fill("nodes", s.nodes, [
      [n => n.name + (n.draining ? " (draining)" : "")], [n => n.host],
      [n => busy(n.busy_threads, n.threads), "num"], [n => busy(n.busy_processes, n.processes), "num"],
      [n => busy(n.busy_io, n.io_slots), "num"], [n => fmt(n.prefetched), "num"],
      [n => fmt(n.completed), "num"], [n => fmt(n.failed), "num"],
      [n => n.rss_bytes === undefined ? "–" : fmt(n.rss_bytes / 1048576) + " MiB", "num"],
      [n => n.children_rss_bytes === undefined ? "–" : fmt(n.children_rss_bytes / 1048576) + " MiB", "num"],
      [n => fmt(n.children_started), "num"], [n => fmt(n.last_seen_s, 1) + " s ago", "num"],
    ]);
    fill("jobs", (s.jobs || []).slice(0, 10), [
      [j => j.id, "num"], [j => j.name || "–"], [j => j.state], [j => fmt(j.finished) + " / " + fmt(j.total), "num"],
      [j => fmt(j.failed), "num"], [j => fmt(j.age_s) + " s", "num"],
    ]);
    fill("failures", (s.recent_failures || []).slice(0, 10), [
      [f => f.id, "num"], [f => f.handler], [f => f.node], [f => f.reason], [f => f.error], [f => fmt(f.seconds_ago) + " s ago", "num"],
    ]);
    const named = Object.entries(s.counters || {}).map(([name, value]) => ({ name, kind: "counter", value: fmt(value) }))
      .concat((s.limits || []).map(l => ({ name: l.name, kind: "limit", value: l.in_use + " / " + l.size + " in use (max " + l.high_water + ")" })));
    fill("counters", named, [[c => c.name], [c => c.kind], [c => c.value, "num"]]);
  } catch (e) {
    document.getElementById("error").textContent = "cannot read /api/v1/status: " + e.message;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""#
}
