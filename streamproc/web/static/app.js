// streamproc web view: cameras, timelines, search and summaries, updated live over server-sent
// events. Plain JavaScript, no build step, no network beyond this server. Text from events is
// always inserted as text (never as HTML), so captions cannot inject markup.
//
// The API key: when the server answers 401 the page asks for the key once (a form in the page),
// keeps it for this browser tab only (sessionStorage) and sends it as `Authorization: Bearer` on
// every request to this server: JSON, the event feed (read with fetch, as EventSource cannot send
// a header), snapshots and clips (fetched, then shown from blob: URLs). Never in a URL, never in a
// cookie, never to another origin.
"use strict";

const KEY_ITEM = "streamproc-key";
const state = { site: null, cameras: new Map(), view: "cameras", camera: null, source: null, key: null,
                keyWanted: null, keyGiven: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function when(seconds) {
  if (!seconds) return "";
  const date = new Date(seconds * 1000);
  const today = new Date();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return date.toDateString() === today.toDateString() ? time : `${date.toLocaleDateString()} ${time}`;
}

function startOf(item) {
  const segment = item.segment || {};
  return segment.start_wall || item.start_wall || item.start || item.ts;
}

function sameOrigin(url) {
  return new URL(url, location.href).origin === location.origin;
}

// fetch() with the key; a 401 shows the key form and tries again once a key is given.
async function api(url, options = {}) {
  for (;;) {
    const headers = Object.assign({}, options.headers || {});
    if (state.key && sameOrigin(url)) headers.Authorization = `Bearer ${state.key}`;
    const response = await fetch(url, Object.assign({}, options, { headers }));
    if (response.status !== 401 || !sameOrigin(url)) return response;
    await askForKey(state.key ? "That key was refused. Enter this server's API key." : null);
  }
}

// One question however many requests were refused at once: they all wait for the same answer.
function askForKey(message) {
  if (!state.keyWanted) {
    state.key = null;
    sessionStorage.removeItem(KEY_ITEM);
    state.keyWanted = new Promise((resolve) => { state.keyGiven = resolve; });
    if (message) document.getElementById("key-note").textContent = message;
    show("key");
    document.getElementById("key-input").focus();
  }
  return state.keyWanted;
}

function submitKey(event) {
  event.preventDefault();
  const input = document.getElementById("key-input");
  const key = input.value.trim();
  if (!key) return;
  input.value = "";
  state.key = key;
  sessionStorage.setItem(KEY_ITEM, key);
  const given = state.keyGiven;
  state.keyWanted = state.keyGiven = null;
  if (state.site) route(); else show("cameras");
  given();
}

async function getJSON(url, options) {
  const response = await api(url, options);
  let body = null;
  try { body = await response.json(); } catch (error) { body = null; }
  if (!response.ok) {
    const message = body && (body.error && (body.error.message || body.error)) || response.statusText;
    throw new Error(typeof message === "string" ? message : JSON.stringify(message));
  }
  return body;
}

// Snapshots and clips: fetched with the key and shown from blob: URLs (kept for the last 64).
const media = new Map();

function mediaURL(url) {
  if (!sameOrigin(url)) return Promise.resolve(url);  // attachments.base_url elsewhere: no key goes there
  if (!media.has(url)) {
    media.set(url, api(url).then((response) => {
      if (!response.ok) throw new Error(`${url}: ${response.status}`);
      return response.blob();
    }).then((blob) => URL.createObjectURL(blob)));
    if (media.size > 64) {
      const [oldest, pending] = media.entries().next().value;
      media.delete(oldest);
      pending.then((objectURL) => URL.revokeObjectURL(objectURL), () => {});
    }
  }
  return media.get(url);
}

function withMedia(node, url) {
  mediaURL(url).then((objectURL) => { node.src = objectURL; }, (error) => {
    media.delete(url);
    console.warn("media:", error.message);
  });
  return node;
}

// -- views ---------------------------------------------------------------------------------

function show(view) {
  state.view = view;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.id === `nav-${view === "camera" ? "cameras" : view}`);
  }
}

function route() {
  if (state.keyWanted) return;  // the key form stays until a key is given
  const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "cameras";
  if (hash.startsWith("camera/")) {
    state.camera = hash.slice("camera/".length);
    show("camera");
    loadTimeline(state.camera);
  } else if (hash === "search") {
    show("search");
  } else if (hash === "summaries") {
    show("summaries");
    loadSummaries();
  } else {
    show("cameras");
    renderCameras();
  }
}

// -- cameras -------------------------------------------------------------------------------

function cameraCard(camera) {
  const image = camera.snapshot
    ? withMedia(el("img", { alt: `latest snapshot of ${camera.name}`, class: "snapshot" }),
                `/api/cameras/${encodeURIComponent(camera.name)}/snapshot.jpg?id=${encodeURIComponent(camera.snapshot_id || "")}`)
    : el("div", { class: "noimg", text: "no snapshot yet" });
  const rules = el("div", { class: "chips" });
  for (const [rule, value] of Object.entries(camera.rules || {})) {
    rules.append(el("span", { class: `badge ${value}`, text: `${rule}: ${value}` }));
  }
  const controls = [];
  if (state.site && state.site.control) {
    const paused = camera.gate === "paused";
    controls.push(el("button", { class: "control", "data-action": paused ? "resume" : "pause",
                                 onclick: () => command(camera.name, paused ? "resume" : "pause"),
                                 text: paused ? "Resume" : "Pause" }));
  }
  return el("article", { class: "card", "data-camera": camera.name },
    el("div", { class: "head" },
      el("a", { href: `#camera/${encodeURIComponent(camera.name)}`, text: camera.name }),
      el("span", { class: `badge ${camera.state}`, title: camera.detail || "", text: camera.state }),
      el("span", { class: `badge ${camera.gate}`, text: camera.gate }),
      ...controls),
    image,
    el("div", { class: "body" },
      el("p", { class: "caption", text: camera.caption || "no caption yet" }),
      el("div", { class: "meta", text:
        `${camera.caption_ts ? when(camera.caption_ts) + " · " : ""}queue ${camera.queued || 0} · dropped ${camera.dropped || 0}` }),
      rules));
}

function renderCameras() {
  const grid = document.getElementById("cameras");
  if (!state.cameras.size) {
    grid.replaceChildren(el("p", { class: "note", text: state.site && state.site.store
      ? "No cameras run on this server; Search and Summaries read its caption store."
      : "No cameras are configured." }));
    return;
  }
  grid.replaceChildren(...[...state.cameras.values()].map(cameraCard));
  // `streamproc bench web` reads this mark: time from navigation to the first caption on screen.
  if (!state.captionShown && [...state.cameras.values()].some((c) => c.caption)) {
    state.captionShown = true;
    performance.mark("first-caption");
  }
}

async function refreshCameras() {
  try {
    const body = await getJSON("/api/cameras");
    state.cameras = new Map(body.cameras.map((c) => [c.name, c]));
    if (state.view === "cameras") renderCameras();
    if (state.view === "camera") renderRules();
  } catch (error) {
    console.warn("cameras:", error.message);
  }
}

async function command(name, action) {
  try {
    await getJSON(`/api/cameras/${encodeURIComponent(name)}/${action}`,
                  { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  } catch (error) {
    alert(`${action} ${name}: ${error.message}`);
  }
  refreshCameras();
}

// -- timeline ------------------------------------------------------------------------------

function attachmentMedia(item) {
  const files = item.attachments || {};
  const box = el("div", { class: "media" });
  if (files.snapshot && files.snapshot.url) {
    box.append(withMedia(el("img", { alt: `snapshot of ${item.rule || "alert"}`, class: "alert-snapshot" }),
                         files.snapshot.url));
  }
  if (files.clip && files.clip.url) {
    box.append(withMedia(el("video", { controls: true, preload: "auto", muted: true, playsinline: true,
                                       class: "alert-clip" }), files.clip.url));
  }
  return box.childElementCount ? box : null;
}

function timelineItem(item) {
  const type = item.type || item.kind || "caption";
  const start = startOf(item);
  if (type === "unchanged") {
    const segment = item.segment || {};
    const span = segment.end_wall && segment.start_wall ? Math.round(segment.end_wall - segment.start_wall) : null;
    return el("li", { class: "unchanged", "data-id": item.id || "" },
      el("span", { class: "meta", text: `${when(start)} · unchanged${span ? ` for ${span} s` : ""}` }));
  }
  if (type === "alert") {
    const transition = item.transition || "";
    return el("li", { class: `alert ${transition}`, "data-id": item.id || "" },
      el("div", { class: "meta", text: `${when(start)} · ${item.source || ""}` }),
      el("strong", { text: item.title || `${item.rule} ${transition}` }),
      el("p", { class: "caption", text: item.summary || item.reason || "" }),
      attachmentMedia(item));
  }
  if (type === "summary") {
    return el("li", { class: "summary", "data-id": item.id || "" },
      el("div", { class: "meta", text: `${when(item.start || start)} – ${when(item.end || item.ts)} · ${item.source || "all cameras"}` }),
      item.text || "");
  }
  return el("li", { class: "caption", "data-id": item.id || "" },
    el("div", { class: "meta", text: `${when(start)} · ${item.source || ""}` }),
    el("p", { class: "caption", text: item.text || "" }));
}

function renderRules() {
  const camera = state.cameras.get(state.camera);
  const chips = document.getElementById("camera-rules");
  chips.replaceChildren();
  if (!camera) return;
  chips.append(el("span", { class: `badge ${camera.state}`, text: camera.state }),
               el("span", { class: `badge ${camera.gate}`, text: camera.gate }));
  for (const [rule, value] of Object.entries(camera.rules || {})) {
    chips.append(el("span", { class: `badge ${value}`, text: `${rule}: ${value}` }));
  }
}

async function loadTimeline(name) {
  document.getElementById("camera-name").textContent = name;
  renderRules();
  const list = document.getElementById("timeline");
  try {
    const body = await getJSON(`/api/cameras/${encodeURIComponent(name)}/timeline?limit=100`);
    list.replaceChildren(...body.items.map(timelineItem));
  } catch (error) {
    list.replaceChildren(el("li", { text: error.message }));
  }
}

// -- search and summaries -----------------------------------------------------------------

// The store sends snippets as escaped HTML with <mark> around matches; only the text and the
// marks are taken over, so nothing else in a caption can become markup.
function highlighted(snippetHtml) {
  const out = el("p", { class: "caption" });
  const doc = new DOMParser().parseFromString(`<p>${snippetHtml}</p>`, "text/html");
  for (const node of doc.body.firstChild.childNodes) {
    out.append(node.nodeName === "MARK" ? el("mark", { text: node.textContent }) : document.createTextNode(node.textContent));
  }
  return out;
}

async function search(event) {
  if (event) event.preventDefault();
  const q = document.getElementById("search-q").value.trim();
  const note = document.getElementById("search-note");
  const list = document.getElementById("search-results");
  if (!state.site || !state.site.store) {
    note.textContent = "No caption store is configured (store: in the config), so there is nothing to search.";
    return;
  }
  if (!q) return;
  const params = new URLSearchParams({ q, limit: "50" });
  const since = document.getElementById("search-since").value;
  const source = document.getElementById("search-source").value;
  if (since) params.set("since", since);
  if (source) params.set("source", source);
  try {
    const body = await getJSON(`/api/search?${params}`);
    const results = body.hits || [];
    note.textContent = `${results.length} result${results.length === 1 ? "" : "s"}`;
    list.replaceChildren(...results.map((row) => {
      const item = el("li", { class: row.type || row.kind || "caption" },
        el("div", { class: "meta", text: `${when(startOf(row))} · ${row.source || ""}` }));
      item.append(row.snippet_html ? highlighted(row.snippet_html) : el("p", { class: "caption", text: row.text || "" }));
      return item;
    }));
  } catch (error) {
    note.textContent = error.message;
    list.replaceChildren();
  }
}

async function loadSummaries() {
  const note = document.getElementById("summaries-note");
  const list = document.getElementById("summaries");
  if (!state.site || !state.site.store) {
    note.textContent = "No caption store is configured, so no summaries are kept.";
    return;
  }
  try {
    const body = await getJSON("/api/summaries?limit=20");
    const items = body.summaries || [];
    note.textContent = items.length ? "" : "No summaries yet.";
    list.replaceChildren(...items.map((s) => timelineItem(Object.assign({ type: "summary" }, s))));
  } catch (error) {
    note.textContent = error.message;
  }
}

// -- live updates ----------------------------------------------------------------------------

function onEvent(item) {
  if (!item || !item.source) return;
  const camera = state.cameras.get(item.source);
  if (camera) {
    if (item.type === "caption") {
      Object.assign(camera, { caption: item.text, caption_ts: item.ts, caption_id: item.id, gate: "describing",
                              snapshot: true, snapshot_id: item.id });
    } else if (item.type === "unchanged") {
      camera.gate = "skipping";
    } else if (item.type === "alert" && item.rule) {
      camera.rules[item.rule] = item.state || (item.transition === "raised" ? "ON" : "OFF");
    } else if (item.type === "status") {
      camera.state = item.state;
      camera.detail = item.detail || "";
    }
    if (state.view === "cameras") renderCameras();
  }
  if (state.view === "camera" && state.camera === item.source && item.type !== "status") {
    renderRules();
    document.getElementById("timeline").prepend(timelineItem(item));
  }
  if (item.type === "summary" && state.view === "summaries") loadSummaries();
}

// The event feed: server-sent events read with fetch (so the key can go in a header), parsed
// here, reconnected 2 s after it ends or fails.
async function connect() {
  const live = document.getElementById("live");
  for (;;) {
    try {
      const response = await api("/api/events", { headers: { Accept: "text/event-stream" } });
      if (!response.ok || !response.body) throw new Error(`the event feed answered ${response.status}`);
      live.textContent = "live";
      live.className = "badge on-live";
      refreshCameras();
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          dispatch(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      console.warn("events:", error.message);
    }
    live.textContent = "reconnecting";
    live.className = "badge reconnecting";
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function dispatch(block) {
  const data = block.split("\n").filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
  if (!data) return;  // a comment (keep-alive) or the retry hint
  try { onEvent(JSON.parse(data)); } catch (error) { console.warn("event:", error.message); }
}

async function start() {
  state.key = sessionStorage.getItem(KEY_ITEM);
  document.getElementById("key-form").addEventListener("submit", submitKey);
  try {
    state.site = await getJSON("/api/site");
  } catch (error) {
    state.site = { store: false, control: false, cameras: [] };
  }
  const select = document.getElementById("search-source");
  for (const name of state.site.cameras) select.append(el("option", { value: name, text: name }));
  document.getElementById("search-form").addEventListener("submit", search);
  window.addEventListener("hashchange", route);
  await refreshCameras();
  route();
  connect();
  setInterval(refreshCameras, 10000); // queue depths and drops change without events
}

start();
