/**
 * The web page at `/`: pick an app, type an input, watch the result stream
 * in (a `fetch` of `POST /fal/run/{app}/stream`, read as Server-Sent Events,
 * so the key travels in a header and a failure's body can be read); beside
 * it, what fal's and Runpod's dashboards show: per app its queue, running
 * requests and runners by state (`/healthz`), and the selected app's recent
 * requests with status, times and logs (`/requests`), polled live. One
 * self-contained HTML document, no build step.
 */

// Three ranks as bars: inline, so the browser never asks for /favicon.ico.
const FAVICON = `data:image/svg+xml,${encodeURIComponent(
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#2b59c3"/><rect x="7" y="9" width="4" height="15" rx="1" fill="#fff"/><rect x="14" y="6" width="4" height="18" rx="1" fill="#fff"/><rect x="21" y="12" width="4" height="12" rx="1" fill="#fff"/></svg>`,
)}`;

/** The page's HTML. */
export const PAGE_HTML = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>multirank gateway</title>
<link rel="icon" href="${FAVICON}">
<style>
  :root { font-family: system-ui, sans-serif; color-scheme: light dark; }
  body { max-width: 960px; margin: 2rem auto; padding: 0 1rem; }
  h1 { font-size: 1.4rem; margin-bottom: .2rem; }
  h2 { font-size: 1.1rem; margin: 2rem 0 .4rem; }
  .muted { opacity: .7; font-size: .9rem; }
  label { display: block; margin: .8rem 0 .3rem; font-weight: 600; }
  select, textarea, input { width: 100%; box-sizing: border-box; font: inherit; padding: .4rem; }
  /* Grown to its content by fit(); past 60% of the window it scrolls. */
  textarea { font-family: ui-monospace, monospace; min-height: 4rem; max-height: 60vh; resize: vertical; }
  button { margin-top: .8rem; padding: .5rem 1.4rem; font: inherit; cursor: pointer; }
  #key-box { border: 1px solid #8886; border-radius: 6px; padding: 0 .8rem .8rem; margin-top: 1rem; }
  #error { border-left: 4px solid #d33; padding: .3rem .8rem; margin: .6rem 0; }
  #error-type { font-family: ui-monospace, monospace; font-weight: 700; color: #d33; }
  #error-detail { white-space: pre-wrap; margin: .3rem 0 0; }
  #text { white-space: pre-wrap; font-size: 1.1rem; line-height: 1.5; }
  #canvas { display: block; margin-top: .8rem; max-width: 100%; background: #111; }
  #final { font-family: ui-monospace, monospace; font-size: .8rem; white-space: pre-wrap; max-height: 16rem; overflow: auto; }
  table { border-collapse: collapse; width: 100%; font-size: .9rem; }
  th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #8884; vertical-align: top; }
  td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
  tr.selected { background: #2b59c322; }
  .COMPLETED { color: #2a2; } .FAILED, .TIMED_OUT { color: #d33; } .IN_PROGRESS { color: #c80; }
  details pre { margin: .3rem 0; font-size: .8rem; white-space: pre-wrap; }
  code, .id { font-family: ui-monospace, monospace; }
</style>
</head>
<body>
<h1>multirank gateway</h1>
<div class="muted">Runs an app on its ranks and streams the result over Server-Sent Events (fal's <code>/stream</code> route).</div>

<div id="key-box" hidden>
  <label for="key">API key</label>
  <div class="muted" id="key-why">This gateway checks API keys.</div>
  <input id="key" type="password" autocomplete="off" placeholder="id:secret">
</div>

<h2>Run</h2>
<label for="app">App</label>
<select id="app"></select>
<label for="input">Input (JSON)</label>
<textarea id="input" spellcheck="false"></textarea>
<button id="run">Run</button>
<p id="status" class="muted">pick an app and press Run</p>
<div id="error" role="alert" hidden><span id="error-type"></span> <span id="error-http" class="muted"></span><pre id="error-detail"></pre></div>
<div id="text"></div>
<canvas id="canvas" width="0" height="0" data-frames="0" hidden></canvas>
<pre id="final"></pre>

<h2>Apps</h2>
<div id="apps-note" class="muted"></div>
<table id="apps"><thead><tr><th>app</th><th class="n">queue</th><th class="n">running</th><th class="n">starting</th><th class="n">idle</th><th class="n">busy</th><th class="n">stopping</th></tr></thead><tbody></tbody></table>

<h2>Recent requests <span id="requests-app" class="muted"></span></h2>
<div id="requests-note" class="muted"></div>
<table id="requests"><thead><tr><th>request</th><th>status</th><th class="n">queued</th><th class="n">ran</th><th>error / logs</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let apps = [];
let info = { keys: false, opsNeedKey: false };
let current; // the run in progress: { controller }; a stale run's callbacks find it replaced and stop

/** An element with text children (never HTML: logs and errors are shown as typed). */
function el(tag, props, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}
const auth = () => ($("key").value ? { authorization: "Key " + $("key").value } : {});
const ms = (n) => (n < 1000 ? n + " ms" : (n / 1000).toFixed(1) + " s");

function setStatus(text) {
  $("status").textContent = text;
}

/** A failure's type and detail, from fal's { detail, error_type } or the gateway's { error, code }. */
async function failure(response) {
  const text = await response.text();
  let body = {};
  try { body = JSON.parse(text); } catch {}
  const type = body.error_type || body.code || "http_" + response.status;
  let detail = body.detail || body.error || text || response.statusText;
  if (typeof detail !== "string") detail = JSON.stringify(detail, null, 2);
  if (response.status === 401) detail += info.keys ? " (check the API key above)" : "";
  return { type, detail, status: response.status };
}

function showError(type, detail, status) {
  $("error-type").textContent = type;
  $("error-http").textContent = status ? "HTTP " + status : "";
  $("error-detail").textContent = detail;
  $("error").hidden = false;
  setStatus("failed");
  document.body.dataset.done = "error";
}

/** Empties every output of the last run, so nothing of it shows under the next result. */
function clearOutput() {
  $("error").hidden = true;
  $("text").textContent = "";
  $("final").textContent = "";
  const canvas = $("canvas");
  canvas.width = canvas.height = 0;
  canvas.hidden = true;
  canvas.dataset.frames = "0";
  delete document.body.dataset.done;
}

/** Grows the input box to its content. */
function fit() {
  const box = $("input");
  box.style.height = "auto";
  box.style.height = box.scrollHeight + box.offsetHeight - box.clientHeight + "px";
}

function showExample() {
  const app = apps.find((a) => a.name === $("app").value);
  $("input").value = JSON.stringify((app && app.exampleInput) || {}, null, 2);
  fit();
}

async function loadInfo() {
  const response = await fetch("/page/info");
  if (response.ok) info = await response.json();
  $("key-box").hidden = !info.keys;
  $("key-why").textContent = "This gateway checks API keys: running an app" +
    (info.opsNeedKey ? ", listing apps and their health" : "") +
    " and listing recent requests need one (id:secret for fal). It stays in this tab and is sent as Authorization: Key <key>.";
}

/** The app list; the table behind /apps changes at runtime (functions, deployments, dev reloads). */
async function loadApps() {
  const response = await fetch("/apps", { headers: auth() });
  if (!response.ok) {
    const error = await failure(response);
    setStatus("could not list the apps: " + error.type + ": " + error.detail);
    return;
  }
  const next = (await response.json()).apps;
  const same = next.map((a) => a.name).join("\\n") === apps.map((a) => a.name).join("\\n");
  apps = next;
  if (same) return; // leave an open select alone
  const selected = $("app").value;
  $("app").replaceChildren(...apps.map((app) => el("option", { value: app.name, textContent: app.title === app.name ? app.name : app.title + " (" + app.name + ")" })));
  const wanted = selected || new URLSearchParams(location.search).get("app");
  if (wanted && apps.some((a) => a.name === wanted)) $("app").value = wanted;
  if ($("app").value !== selected) {
    setStatus(selected ? "app " + selected + " is no longer served" : "pick an app and press Run");
    showExample();
    refreshLive();
  }
}

/** Reads an SSE body: calls onEvent(name, data) per event; comments (keep-alives) are skipped. */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\\n\\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\\n")));
    }
  }
}

function findImage(value) {
  if (!value || typeof value !== "object") return undefined;
  if (typeof value.url === "string" && value.url.startsWith("data:image/")) return value;
  for (const item of Object.values(value)) {
    const found = findImage(item);
    if (found) return found;
  }
  return undefined;
}

function draw(image, mine) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      if (current !== mine) return resolve(); // a newer run cleared the canvas: do not paint this one's frame on it
      const canvas = $("canvas");
      if (canvas.width !== img.naturalWidth) canvas.width = img.naturalWidth;
      if (canvas.height !== img.naturalHeight) canvas.height = img.naturalHeight;
      canvas.hidden = false;
      canvas.getContext("2d").drawImage(img, 0, 0);
      canvas.dataset.frames = String(Number(canvas.dataset.frames) + 1);
      resolve();
    };
    img.onerror = () => resolve();
    img.src = image.url;
  });
}

async function run() {
  if (current) current.controller.abort();
  await runSelected();
  refreshLive(); // show this run's outcome in the tables now, not at the next poll
}

/** Runs the selected app on the input and shows what streams back, or the failure. */
async function runSelected() {
  clearOutput();
  let input;
  try {
    input = JSON.parse($("input").value || "{}");
  } catch (error) {
    showError("invalid_json", "the input is not valid JSON: " + error.message);
    return;
  }
  const mine = (current = { controller: new AbortController() });
  const started = performance.now();
  let events = 0;
  let failed = false;
  let drawing = Promise.resolve();
  let last;
  setStatus("running…");
  try {
    const response = await fetch("/fal/run/" + $("app").value + "/stream", {
      method: "POST",
      headers: { "content-type": "application/json", ...auth() },
      body: JSON.stringify(input),
      signal: mine.controller.signal,
    });
    if (!response.ok) {
      const error = await failure(response);
      if (current === mine) showError(error.type, error.detail, error.status);
      return;
    }
    refreshLive();
    await readEvents(response.body, (name, data) => {
      if (current !== mine) return;
      if (name === "error") {
        failed = true;
        showError(data.error_type || "error", data.detail || JSON.stringify(data));
        return;
      }
      events++;
      last = data;
      // "delta": a piece of text to append as is (an LLM's tokens carry their own spaces); "token": a word.
      if (typeof data.delta === "string") $("text").textContent += data.delta;
      else if (typeof data.token === "string") $("text").textContent += ($("text").textContent ? " " : "") + data.token;
      const image = findImage(data);
      if (image) drawing = drawing.then(() => draw(image, mine));
      setStatus("running… " + events + " event" + (events === 1 ? "" : "s"));
    });
  } catch (error) {
    if (current === mine && !mine.controller.signal.aborted) showError("network_error", error.message);
    return;
  }
  await drawing;
  if (current !== mine || failed) return;
  setStatus("done in " + ms(Math.round(performance.now() - started)) + ", " + events + " event" + (events === 1 ? "" : "s"));
  $("final").textContent = JSON.stringify(last, (k, v) => (typeof v === "string" && v.length > 200 ? v.slice(0, 60) + "…(" + v.length + " chars)" : v), 2);
  document.body.dataset.done = "true";
}

/** Per app: queue, running requests, runners by state (from /healthz). */
async function loadHealth() {
  const response = await fetch("/healthz", { headers: auth() });
  if (response.status === 401) {
    $("apps-note").textContent = "enter the API key above to see the apps' health";
    return;
  }
  const health = await response.json(); // a 503 while shutting down still has the body
  $("apps-note").textContent = health.status === "ok" ? "" : "gateway: " + health.status;
  const rows = Object.entries(health.apps).sort(([a], [b]) => a.localeCompare(b)).map(([name, app]) => {
    const r = app.runners;
    const row = el("tr", { className: name === $("app").value ? "selected" : "" }, el("td", { textContent: name }),
      ...[app.queue, app.running, r.starting, r.idle, r.busy, r.stopping].map((n) => el("td", { className: "n", textContent: n })));
    row.dataset.app = name;
    return row;
  });
  $("apps").tBodies[0].replaceChildren(...rows);
}

/** The selected app's recent requests (from /requests), keeping open log lists open. */
async function loadRequests() {
  const app = $("app").value;
  $("requests-app").textContent = app ? "of " + app : "";
  if (!app) return;
  const response = await fetch("/requests?" + new URLSearchParams({ app, limit: "15" }), { headers: auth() });
  if (!response.ok) {
    const error = await failure(response);
    $("requests-note").textContent = response.status === 401 ? "enter the API key above to see recent requests" : error.type + ": " + error.detail;
    $("requests").tBodies[0].replaceChildren();
    return;
  }
  const body = await response.json();
  if (body.app !== $("app").value) return; // the selection changed while this was in flight
  const open = new Set([...$("requests").querySelectorAll("details[open]")].map((d) => d.dataset.id));
  $("requests-note").textContent = body.requests.length ? "" : "no requests yet";
  $("requests").tBodies[0].replaceChildren(...body.requests.map((r) => {
    const logs = r.logs.length ? logList(r, open.has(r.id)) : "";
    const error = r.error ? el("div", {}, el("b", { textContent: r.error.type }), ": " + r.error.message) : "";
    const row = el("tr", {}, el("td", { className: "id", title: r.id + " at " + r.createdAt, textContent: r.id.slice(0, 8) }),
      el("td", { className: r.status, textContent: r.status + (r.attempts > 1 ? " (" + r.attempts + " attempts)" : "") }),
      el("td", { className: "n", textContent: ms(r.queueMs) }), el("td", { className: "n", textContent: ms(r.runMs) }),
      el("td", {}, error, logs));
    row.dataset.id = r.id;
    row.dataset.status = r.status;
    return row;
  }));
}

function refreshLive() {
  loadHealth().catch(() => {});
  loadRequests().catch(() => {});
}

/** A request's log lines, folded; open when the user had opened them before this refresh. */
function logList(request, open) {
  const lines = request.logs.map((l) => l.timestamp.slice(11, 23) + " " + l.level + " " + l.message);
  const list = el("details", { open }, el("summary", { textContent: lines.length + " log line" + (lines.length === 1 ? "" : "s") }), el("pre", { textContent: lines.join("\\n") }));
  list.dataset.id = request.id;
  return list;
}

/** Runs task now and every periodMs after it settles (never two at once). */
function every(periodMs, task) {
  const loop = () => task().catch(() => {}).then(() => setTimeout(loop, periodMs));
  loop();
}

$("app").addEventListener("change", () => {
  clearOutput();
  setStatus("pick an app and press Run");
  showExample();
  refreshLive();
});
$("input").addEventListener("input", fit);
$("key").addEventListener("change", () => {
  loadApps().catch(() => {});
  refreshLive();
});
$("run").addEventListener("click", run);
loadInfo().catch(() => {}).then(() => {
  every(5000, loadApps);
  every(1500, loadHealth);
  every(1500, loadRequests);
});
</script>
</body>
</html>
`;
