/**
 * The web page at `/`: pick an app, type an input, watch the result arrive
 * over the SSE route (EventSource on `GET /fal/run/{app}/stream`). One
 * self-contained HTML document, no build step.
 */

/** The page's HTML. */
export const PAGE_HTML = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>multirank gateway</title>
<style>
  :root { font-family: system-ui, sans-serif; color-scheme: light dark; }
  body { max-width: 880px; margin: 2rem auto; padding: 0 1rem; }
  h1 { font-size: 1.4rem; margin-bottom: .2rem; }
  .muted { opacity: .7; font-size: .9rem; }
  label { display: block; margin: .8rem 0 .3rem; font-weight: 600; }
  select, textarea, input { width: 100%; box-sizing: border-box; font: inherit; padding: .4rem; }
  textarea { font-family: ui-monospace, monospace; min-height: 6rem; }
  button { margin-top: .8rem; padding: .5rem 1.4rem; font: inherit; cursor: pointer; }
  #text { white-space: pre-wrap; font-size: 1.1rem; line-height: 1.5; min-height: 1.5rem; }
  #canvas { display: block; margin-top: .8rem; max-width: 100%; background: #111; }
  #final { font-family: ui-monospace, monospace; font-size: .8rem; white-space: pre-wrap; max-height: 16rem; overflow: auto; }
  #status.error { color: #d33; }
</style>
</head>
<body>
<h1>multirank gateway</h1>
<div class="muted">Runs the app on its ranks and streams the result over Server-Sent Events. Same routes as fal's <code>/stream</code>.</div>
<label for="app">App</label>
<select id="app"></select>
<label for="input">Input (JSON)</label>
<textarea id="input" spellcheck="false"></textarea>
<label for="key">API key <span class="muted">(only if the gateway has keys; id:secret)</span></label>
<input id="key" type="password" autocomplete="off">
<button id="run">Run</button>
<p id="status" class="muted">pick an app and press Run</p>
<div id="text"></div>
<canvas id="canvas" width="0" height="0" data-frames="0"></canvas>
<pre id="final"></pre>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let apps = [];
let source;

function setStatus(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "muted";
}

async function loadApps() {
  // With requireKeyForOps, /apps answers 401 until a key is entered (the list reloads when it is).
  const key = $("key").value;
  const response = await fetch("/apps", key ? { headers: { authorization: "Key " + key } } : {});
  if (response.status === 401) {
    setStatus("this gateway needs an API key to list its apps: enter it above", true);
    return;
  }
  apps = (await response.json()).apps;
  $("app").replaceChildren();
  for (const app of apps) {
    const option = document.createElement("option");
    option.value = app.name;
    option.textContent = app.title === app.name ? app.name : app.title + " (" + app.name + ")";
    $("app").appendChild(option);
  }
  const wanted = new URLSearchParams(location.search).get("app");
  if (wanted && apps.some((a) => a.name === wanted)) $("app").value = wanted;
  showExample();
  setStatus("pick an app and press Run");
}

function showExample() {
  const app = apps.find((a) => a.name === $("app").value);
  $("input").value = JSON.stringify(app ? app.exampleInput : {}, null, 2);
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

function draw(image) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      const canvas = $("canvas");
      if (canvas.width !== img.naturalWidth) canvas.width = img.naturalWidth;
      if (canvas.height !== img.naturalHeight) canvas.height = img.naturalHeight;
      canvas.getContext("2d").drawImage(img, 0, 0);
      canvas.dataset.frames = String(Number(canvas.dataset.frames) + 1);
      resolve();
    };
    img.onerror = () => resolve();
    img.src = image.url;
  });
}

function run() {
  if (source) source.close();
  let input;
  try {
    input = JSON.parse($("input").value || "{}");
  } catch (error) {
    setStatus("the input is not valid JSON: " + error.message, true);
    return;
  }
  $("text").textContent = "";
  $("final").textContent = "";
  $("canvas").dataset.frames = "0";
  const params = new URLSearchParams({ input: JSON.stringify(input) });
  if ($("key").value) params.set("fal_key", $("key").value);
  const started = performance.now();
  let events = 0;
  let drawing = Promise.resolve();
  let last;
  setStatus("running…");
  source = new EventSource("/fal/run/" + $("app").value + "/stream?" + params);
  source.onmessage = (event) => {
    events++;
    const data = JSON.parse(event.data);
    last = data;
    if (typeof data.token === "string") $("text").textContent += ($("text").textContent ? " " : "") + data.token;
    const image = findImage(data);
    if (image) drawing = drawing.then(() => draw(image));
    setStatus("running… " + events + " event" + (events === 1 ? "" : "s"));
  };
  source.addEventListener("done", () => {
    source.close();
    drawing.then(() => {
      const ms = Math.round(performance.now() - started);
      setStatus("done in " + ms + " ms, " + events + " events");
      $("final").textContent = JSON.stringify(last, (k, v) => (typeof v === "string" && v.length > 200 ? v.slice(0, 60) + "…(" + v.length + " chars)" : v), 2);
      document.body.dataset.done = "true";
    });
  });
  source.addEventListener("error", (event) => {
    source.close();
    let message = "the request failed";
    try {
      if (event.data) message = JSON.parse(event.data).detail;
    } catch {}
    setStatus(message, true);
    document.body.dataset.done = "error";
  });
}

const listApps = () => loadApps().catch((error) => setStatus("could not list apps: " + error.message, true));
$("app").addEventListener("change", showExample);
$("key").addEventListener("change", () => {
  if (apps.length === 0) listApps();
});
$("run").addEventListener("click", run);
listApps();
</script>
</body>
</html>
`;
