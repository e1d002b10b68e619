"""The operator console: `GET /` on the bulk HTTP function serves one HTML page.

Plain HTML with a little JavaScript, no build step. It calls the bulk API itself (`GET
/sync/<kind>` every second for each kind's latest job; `POST /sync/<kind>`, `/stop`, and a
partial sync by ids). Behind API Gateway the page itself holds no data and needs no credential,
while every call it makes needs the API's: the operator pastes a Google ID token (`gcloud auth
print-identity-token …`) into the page, which keeps it in the tab's sessionStorage and sends it as
`Authorization: Bearer` — never in a URL. In demo and preview mode (`make run`) the local server
also answers `/_demo/preview` (what the Klaviyo preview sink received) and `/_demo/change` (the
sandbox's "make a change"); elsewhere those 404 and the page leaves their panels out.
"""

from __future__ import annotations

from shared.bulk.base import KINDS

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>commercetools → Klaviyo · console</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
 header{background:#1d2330;color:#fff;padding:12px 20px;display:flex;gap:16px;align-items:center}
 header h1{font-size:17px;margin:0;font-weight:600} #mode{padding:2px 8px;border-radius:10px;
 background:#3b4a6b;font-size:12px} main{padding:16px 20px;max-width:1200px}
 .kinds{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px}
 .card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:12px}
 .card h2{font-size:15px;margin:0 0 6px;text-transform:capitalize;display:flex;
 justify-content:space-between} .status{font-size:12px;font-weight:500;color:#555;
 text-transform:none}
 .track{background:#e8ebf0;border-radius:4px;height:14px;overflow:hidden;margin:6px 0}
 .bar{background:#3c7be0;height:100%;width:0;transition:width .3s}
 .bar.done{background:#2e9d5b} .bar.failed{background:#c8423b}
 .nums{font-size:12px;color:#444;min-height:32px} .errors{font-size:12px;color:#a33}
 button{font:inherit;padding:3px 10px;margin:4px 4px 0 0;border:1px solid #b8c0cc;
 border-radius:5px;background:#fff;cursor:pointer} button:hover{background:#eef2f8}
 input{font:inherit;width:100%;box-sizing:border-box;margin-top:6px;padding:3px 6px}
 section{margin-top:20px} .tabs button.on{background:#1d2330;color:#fff}
 table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
 td,th{border-bottom:1px solid #e3e6eb;padding:4px 8px;text-align:left;vertical-align:top}
 tr.row{cursor:pointer} tr.row:hover{background:#f0f4fa}
 #table{max-height:420px;overflow:auto;border:1px solid #dde1e8;margin-top:6px}
 #detail{margin-top:8px} #detail h3{font-size:14px;margin:4px 0}
 tr.sel{background:#dfe9fb} pre{background:#10151f;color:#d6e2ff;padding:8px;border-radius:6px;overflow:auto;
 max-height:320px;font-size:12px;margin:4px 0} .muted{color:#777;font-size:12px}
</style></head><body>
<header><h1>commercetools → Klaviyo</h1><span id="mode">connector console</span>
<span id="msg" class="muted" style="color:#cfd6e4"></span>
<input id="token" type="password" placeholder="ID token (behind API Gateway)" autocomplete="off"
 style="margin-left:auto;width:16em"></header>
<main>
<div class="kinds">__CARDS__</div>
<section id="preview" hidden>
 <h2 style="font-size:16px">Klaviyo preview <span class="muted">— what the connector sent;
 nothing reached a real Klaviyo account</span>
 <button id="change" hidden>Make a change in the sandbox</button></h2>
 <div class="tabs"><button data-tab="profiles" class="on">Profiles</button><button
 data-tab="events">Events by metric</button><button data-tab="items">Catalog items</button><button
 data-tab="variants">Variants</button><button data-tab="categories">Categories</button>
 <span id="counts" class="muted"></span></div>
 <div id="table"></div>
 <div id="detail"></div>
</section>
</main>
<script>
const KINDS = __KINDS__;
let token = sessionStorage.getItem("idToken") || "";
const tokenBox = document.querySelector("#token");
tokenBox.value = token;
tokenBox.addEventListener("change", () => {
  token = tokenBox.value.trim(); sessionStorage.setItem("idToken", token); });
function authHeaders(h){ if (token) h["Authorization"] = "Bearer " + token; return h; }
const $ = (s) => document.querySelector(s);
const fmt = (n) => n == null ? "–" : Number(n).toLocaleString("en");
function secs(s){ if (s == null) return "–"; s = Math.round(s);
  return s < 90 ? s + " s" : Math.floor(s/60) + " min " + (s%60) + " s"; }
function say(t){ $("#msg").textContent = t; }
async function api(method, path, body){
  const r = await fetch(path, {method,
                               headers: authHeaders(body ? {"Content-Type": "application/json"} : {}),
                                  body: body ? JSON.stringify(body) : undefined});
  let data = {}; try { data = await r.json(); } catch (e) {}
  return {status: r.status, data};
}
function render(kind, job){
  const card = $("#card-" + kind), bar = $("#bar-" + kind);
  if (!job){ card.querySelector(".status").textContent = "no job yet"; return; }
  const p = job.progress || {};
  card.querySelector(".status").textContent = job.status + (job.phase === "deleting" ? " (deleting)" :
    job.phase === "verifying" && job.status === "running" ? " (waiting for Klaviyo)" : "");
  const pct = p.percent == null ? 0 : p.percent;
  bar.style.width = pct + "%";
  bar.className = "bar" + (job.status === "completed" ? " done" : job.status === "failed" ? " failed" : "");
  $("#pct-" + kind).textContent = p.percent == null ? "" : pct.toFixed(pct % 1 ? 1 : 0) + " %";
  const c = job.counts || {};
  $("#nums-" + kind).innerHTML = "read " + fmt(p.read) + " / " + fmt(p.total) +
    " · " + (p.ratePerSecond ? fmt(p.ratePerSecond) + "/s" : "–/s") + " · ETA " +
    (job.status === "completed" ? "done" : secs(p.etaSeconds)) + "<br>sent " + fmt(c.sent) +
    " · skipped " + fmt(c.skipped) + " · failed " + fmt(c.failed) +
    (job.deleteAll ? " · deleted " + fmt(c.deleted) : "") +
    (job.klaviyoFailed || job.klaviyoPending ? "<br>refused by Klaviyo " + fmt(job.klaviyoFailed) +
     " · Klaviyo jobs unchecked " + fmt(job.klaviyoPending) : "");
  const errs = (job.errors || []).slice(0, 3).map(e => e.ctId + ": " + (e.code || e.status));
  $("#err-" + kind).textContent = (job.reason ? job.reason + ". " : "") +
    (errs.length ? "first errors (" + job.errorCount + "): " + errs.join("; ") : "");
}
async function poll(){
  for (const kind of KINDS){
    const r = await api("GET", "/sync/" + kind);
    render(kind, r.status === 200 ? r.data : null);
  }
}
async function start(kind, body){
  const r = await api("POST", "/sync/" + kind, body);
  say(r.status === 202 ? kind + " sync started" : kind + ": " + r.status + " " + (r.data.message || r.data.error || ""));
  poll();
}
document.querySelectorAll("[data-start]").forEach(b => b.onclick = () => start(b.dataset.start));
document.querySelectorAll("[data-stop]").forEach(b => b.onclick = async () => {
  const r = await api("POST", "/sync/" + b.dataset.stop + "/stop");
  say(b.dataset.stop + (r.status === 200 ? ": stopping" : ": nothing running")); poll(); });
document.querySelectorAll("[data-partial]").forEach(b => b.onclick = () => {
  const kind = b.dataset.partial, ids = $("#ids-" + kind).value.split(/[\\s,]+/).filter(Boolean);
  if (!ids.length){ say("enter ids for a partial " + kind + " sync"); return; }
  start(kind, {ids}); });

// ---- Klaviyo preview (demo and preview mode) ----
let tab = "profiles", preview = null, selected = null;
document.querySelectorAll("[data-tab]").forEach(b => b.onclick = () => {
  document.querySelectorAll("[data-tab]").forEach(x => x.classList.toggle("on", x === b));
  tab = b.dataset.tab; draw(); });
const esc = (s) => String(s == null ? "" : s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
function bodies(rec){
  return (rec.requests || []).map(r => '<div class="muted">' + esc(r.method + " " + r.path) +
    " → " + esc(r.status) + '</div><pre class="request-body">' + esc(JSON.stringify(r.body, null, 2)) + "</pre>").join("") ||
    '<div class="muted">no request recorded</div>';
}
let shown = {};
function rows(list, cols){
  return "<table><tr>" + cols.map(c => "<th>" + c[0] + "</th>").join("") + "</tr>" + list.map(rec => {
    const id = tab + ":" + rec.id;
    shown[id] = [rec, c0(cols, rec)];
    return '<tr class="row ' + tab + '-row' + (id === selected ? " sel" : "") + '" data-id="' + esc(id) + '">' +
      cols.map(c => "<td>" + esc(c[1](rec)) + "</td>").join("") + "</tr>";
  }).join("") + "</table>";
}
const c0 = (cols, rec) => cols[0][1](rec);
function draw(){
  if (!preview) return;
  shown = {};
  const a = (r) => r.attributes || {};
  let html = "";
  if (tab === "profiles") html = rows(preview.profiles, [["email", r => a(r).email], ["external_id", r => a(r).external_id],
    ["name", r => [a(r).first_name, a(r).last_name].filter(Boolean).join(" ")], ["city", r => (a(r).location || {}).city]]);
  if (tab === "events") html = Object.entries(preview.events).map(([metric, list]) => "<h3>" + esc(metric) +
    ' <span class="muted">' + list.length + "</span></h3>" + rows(list, [["unique_id", r => r.unique_id],
    ["time", r => r.time], ["value", r => r.value == null ? "" : r.value + " " + (r.value_currency || "")],
    ["profile", r => r.profile]])).join("") || '<p class="muted">no events yet</p>';
  if (tab === "items" || tab === "variants" || tab === "categories") html = rows(preview[tab], [["id", r => r.id],
    ["title / name", r => a(r).title || a(r).name], ["price", r => a(r).price == null ? "" : a(r).price],
    ["stock", r => a(r).inventory_quantity == null ? "" : a(r).inventory_quantity]]);
  const scroll = $("#table").scrollTop;
  $("#table").innerHTML = html;
  $("#table").scrollTop = scroll;
  const pick = shown[selected];
  $("#detail").innerHTML = pick ? "<h3>" + esc(pick[1]) + ' <span class="muted">the request(s) that wrote it</span></h3>' + bodies(pick[0]) : "";
  $("#counts").textContent = " " + preview.profiles.length + " profiles · " + preview.eventCount + " events · " +
    preview.items.length + " items · " + preview.variants.length + " variants · " + preview.requestCount + " requests";
  document.querySelectorAll("tr.row").forEach(tr => tr.onclick = () => {
    selected = tr.dataset.id === selected ? null : tr.dataset.id; draw(); });
}
async function loadPreview(){
  const r = await fetch("/_demo/preview" + (preview ? "?since=" + preview.requestCount : ""));
  if (r.status !== 200) return false;
  const data = await r.json();
  if (data.unchanged) return true;
  preview = data;
  $("#preview").hidden = false;
  $("#mode").textContent = preview.mode + " mode";
  $("#change").hidden = preview.mode !== "demo";
  draw();
  return true;
}
$("#change").onclick = async () => {
  const r = await fetch("/_demo/change", {method: "POST"});
  const d = await r.json().catch(() => ({}));
  say(d.description ? "sandbox: " + d.description + " → realtime answered " + d.realtimeStatus : "change failed");
  loadPreview();
};
poll(); setInterval(poll, 1000);
loadPreview().then(ok => { if (ok) setInterval(loadPreview, 2000); });
</script></body></html>
"""

_CARD = """<div class="card" id="card-{kind}"><h2>{kind} <span class="status">…</span></h2>
<div class="track"><div class="bar" id="bar-{kind}"></div></div>
<div><b id="pct-{kind}"></b></div><div class="nums" id="nums-{kind}"></div>
<div class="errors" id="err-{kind}"></div>
<button id="start-{kind}" data-start="{kind}">Start sync</button><button id="stop-{kind}"
 data-stop="{kind}">Stop</button>{partial}</div>"""

_PARTIAL = """<input id="ids-{kind}" placeholder="ids for a partial sync (space or comma separated)">
<button id="partial-{kind}" data-partial="{kind}">Sync these ids</button>"""


def render() -> str:
    """The console page (static: every number on it comes from the API)."""
    import json

    cards = "".join(
        _CARD.format(kind=k, partial=_PARTIAL.format(kind=k) if k in ("customers", "orders")
                     else "")
        for k in KINDS)
    return _PAGE.replace("__CARDS__", cards).replace("__KINDS__", json.dumps(list(KINDS)))
