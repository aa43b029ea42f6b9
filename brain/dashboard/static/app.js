// The operator's dashboard: plain DOM and inline SVG, no library. Every text from the server goes in as text,
// never as markup.
"use strict";

const API = "/dashboard/api";
const COLORS = ["#6b7480", "#2f6fdf", "#1f8f4e", "#b7791f", "#8e44ad", "#c23b32", "#16a2b8", "#d35400"];
const SVG_NS = "http://www.w3.org/2000/svg";
const state = { csrf: null, view: "learning", learning: null, run: null, timer: null, rates: [], lastServing: null };

const $ = (sel) => document.querySelector(sel);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs = {}, text = null) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== null) el.textContent = text;
  return el;
}

const fmt = (x, digits = 2) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(digits));
const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %");
const when = (iso) => (iso ? iso.replace("T", " ").replace(/(\+00:00|Z)$/, "") : "–");
const badge = (text) => h("span", { class: "status " + String(text).replace(/ v\d+$/, "").replace(/ /g, "-") }, text);

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.csrf && options.method === "POST") headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(API + path, { credentials: "same-origin", ...options, headers });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function toast(text) {
  const el = $("#toast");
  el.textContent = text;
  el.classList.add("shown");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove("shown"), 5000);
}

function confirmAction(text) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

async function act(question, path, body) {
  if (!(await confirmAction(question))) return;
  try {
    const done = await api("/actions/" + path, { method: "POST", body: JSON.stringify(body) });
    toast(done.detail);
  } catch (error) {
    if (error.status === 401) return showLogin();
    toast("Refused: " + error.message);
  }
  await loadLearning();
}

// login and views

function showLogin() {
  state.csrf = null;
  stopPolling();
  $("#tabs").hidden = true;
  document.querySelectorAll(".view").forEach((v) => (v.hidden = true));
  $("#login").hidden = false;
  $("#key").focus();
}

async function start() {
  try {
    state.csrf = (await api("/session")).csrf;
  } catch (error) {
    state.csrf = null;
  }
  if (!state.csrf) return showLogin();
  $("#login").hidden = true;
  $("#tabs").hidden = false;
  show(state.view);
}

function show(view) {
  state.view = view;
  document.querySelectorAll("#tabs button[data-view]").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
  document.querySelectorAll(".view").forEach((v) => (v.hidden = v.id !== "view-" + view));
  stopPolling();
  if (view === "learning") loadLearning();
  if (view === "members") loadMembers();
  if (view === "serving") {
    loadServing();
    state.timer = setInterval(loadServing, 2000);
  }
}

function stopPolling() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

async function guarded(load) {
  try {
    await load();
  } catch (error) {
    if (error.status === 401) return showLogin();
    toast("Could not load: " + error.message);
  }
}

// learning

const loadLearning = () => guarded(async () => {
  const data = await api("/learning");
  state.learning = data;
  renderLive(data);
  renderCanary(data.canary);
  renderSchedule(data.paused);
  renderLikes(data.likes);
  renderRuns(data.runs);
  renderAudit(data.audit);
  document.body.dataset.loaded = "learning";
});

function renderLive(data) {
  const body = $("#live tbody");
  body.replaceChildren();
  if (!data.live.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "The base model serves every target.")));
  for (const r of data.live) {
    body.append(h("tr", { "data-target": r.target }, h("td", {}, r.target), h("td", { class: "version" }, "v" + r.version),
      h("td", {}, when(r.promoted_at)), h("td", {}, fmt(r.test_ppl)), h("td", {}, r.name)));
  }
  const targets = Object.keys(data.versions || {});
  const select = $("#rollback-target");
  const chosen = select.value;
  select.replaceChildren(...targets.map((t) => h("option", { value: t }, t)));
  if (targets.includes(chosen)) select.value = chosen;
  fillVersions();
}

function fillVersions() {
  const target = $("#rollback-target").value;
  const versions = (state.learning && state.learning.versions[target]) || [];
  const live = state.learning && state.learning.live.find((r) => r.target === target);
  const options = [...versions].reverse().map((v) => h("option", { value: String(v) }, "v" + v + (live && live.version === v ? " (live)" : "")));
  options.push(h("option", { value: "base" }, "base model"));
  $("#rollback-version").replaceChildren(...options);
  const earlier = versions.filter((v) => !live || v < live.version);
  if (earlier.length) $("#rollback-version").value = String(earlier[earlier.length - 1]);
  $("#rollback").disabled = !target;
}

function renderCanary(c) {
  const box = $("#canary");
  box.replaceChildren();
  if (!c) {
    box.append(h("p", { class: "empty" }, "No canary is running."));
    return;
  }
  const f = c.figures || {};
  box.append(
    h("p", {}, h("strong", {}, c.name), " serves ", pct(c.share), " of opted-in members since ", when(c.started_at)),
    h("table", {},
      h("tr", {}, h("th", {}, ""), h("th", {}, "likes"), h("th", {}, "ratings"), h("th", {}, "like-rate")),
      h("tr", {}, h("td", {}, c.name), h("td", {}, f.likes), h("td", { id: "canary-ratings" }, `${c.ratings} of ${c.min_ratings}`), h("td", {}, pct(c.like_rate))),
      h("tr", {}, h("td", {}, (f.live || "live") + " (same period)"), h("td", {}, f.live_likes), h("td", {}, (f.live_likes || 0) + (f.live_dislikes || 0)), h("td", {}, pct(c.live_like_rate)))),
    h("p", {}, "Verdict now: ", badge(c.verdict), " ", h("span", { class: "muted" }, f.p_value !== null && f.p_value !== undefined ? `p = ${fmt(f.p_value, 3)} (level ${c.level})` : "no test yet")),
    h("p", { class: "muted" }, c.reason),
    h("div", { class: "row" },
      h("button", { class: "quiet", onclick: () => act(`Apply the test's verdict (${c.verdict}) to ${c.name} now?`, "canary", { decision: "check" }) }, "Apply the verdict now"),
      h("button", { onclick: () => act(`Promote ${c.name} for every member now?`, "canary", { decision: "promote" }) }, "Promote now"),
      h("button", { class: "danger", onclick: () => act(`End the canary ${c.name} now? Live stays as it is.`, "canary", { decision: "rollback" }) }, "Roll back now")));
}

function renderSchedule(paused) {
  $("#schedule-state").replaceChildren(paused
    ? h("span", {}, badge("paused"), ` since ${when(paused.at)}`, paused.reason ? ` (${paused.reason})` : "")
    : h("span", {}, badge("running"), " nightly runs go ahead"));
  const button = $("#schedule-toggle");
  button.textContent = paused ? "Resume the schedule…" : "Pause the schedule…";
  button.className = paused ? "" : "danger";
  button.onclick = () => act(paused ? "Resume the nightly schedule?" : "Pause the nightly schedule? Scheduled runs are skipped until you resume it.",
    "schedule", { paused: !paused });
}

function renderLikes(series) {
  const box = $("#likes-chart");
  box.replaceChildren();
  const names = [...new Set(series.flatMap((n) => n.versions.map((v) => v.version)))];
  if (!names.length) {
    box.append(h("p", { class: "empty" }, "No ratings yet."));
    $("#likes-legend").replaceChildren();
    return;
  }
  const W = 900, H = 240, L = 40, R = 10, T = 10, B = 30;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "like-rate per version and night" });
  const y = (r) => T + (1 - r) * (H - T - B);
  const slot = (W - L - R) / series.length;
  for (const r of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(s("line", { x1: L, x2: W - R, y1: y(r), y2: y(r), class: "axis" }), s("text", { x: 4, y: y(r) + 4 }, r.toFixed(2)));
  }
  series.forEach((night, i) => {
    svg.append(s("text", { x: L + slot * (i + 0.5), y: H - 10, "text-anchor": "middle" }, night.label));
    night.versions.forEach((v) => {
      const k = names.indexOf(v.version);
      const x = L + slot * i + slot * (k + 1) / (names.length + 1);
      const color = COLORS[k % COLORS.length];
      const point = s("g", { class: "like-point", "data-version": v.version, "data-night": night.label });
      point.append(s("line", { x1: x, x2: x, y1: y(v.high), y2: y(v.low), stroke: color, "stroke-width": 1.5 }),
        s("circle", { cx: x, cy: y(v.rate), r: 4, fill: color }),
        s("title", {}, `${v.version}, ${night.label}: ${v.likes} likes of ${v.likes + v.dislikes} (${pct(v.rate)}, ${pct(v.low)}–${pct(v.high)})`));
      svg.append(point);
    });
  });
  box.append(svg);
  $("#likes-legend").replaceChildren(...names.map((n, k) => {
    const el = h("span", {}, n);
    el.style.setProperty("--c", COLORS[k % COLORS.length]);
    return el;
  }));
}

function renderRuns(runs) {
  const body = $("#runs tbody");
  body.replaceChildren();
  if (!runs.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No nightly run has left a summary yet.")));
  for (const run of runs) {
    const row = h("tr", { "data-run": run.run, onclick: () => selectRun(run.run) },
      h("td", {}, run.run), h("td", {}, badge(run.status)), h("td", {}, `${run.log_entries} of ${run.users} members`),
      h("td", {}, `${run.ratings}`),
      h("td", {}, run.targets.map((t) => h("span", {}, `${t.target} `, badge(t.status + (t.version ? " v" + t.version : "")), " "))),
      h("td", {}, run.canary_check ? badge(run.canary_check.action) : run.canary_started ? badge(run.canary_started.action) : "–"));
    body.append(row);
  }
  const chosen = runs.find((r) => r.run === state.run) || runs[0];
  if (chosen) selectRun(chosen.run);
  else $("#run-detail").replaceChildren(h("p", { class: "empty" }, "–"));
}

function selectRun(name) {
  state.run = name;
  const run = state.learning.runs.find((r) => r.run === name);
  document.querySelectorAll("#runs tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.run === name));
  $("#run-name").textContent = name + " · " + when(run.started_at);
  const detail = $("#run-detail");
  detail.replaceChildren();
  if (run.error) detail.append(h("p", { class: "error" }, run.error));
  for (const note of [run.canary_check, run.canary_started].filter(Boolean)) {
    detail.append(h("p", {}, "canary v" + note.version + " ", badge(note.action), " ", h("span", { class: "muted" }, note.reason)));
  }
  const table = h("table", { class: "targets" },
    h("tr", {}, ["target", "status", "turns", "steps", "test ppl base / live / candidate", "guard: prose ppl", "questions kept", "AUC"].map((t) => h("th", {}, t))));
  for (const t of run.targets) {
    table.append(h("tr", { "data-target": t.target },
      h("td", {}, t.target), h("td", {}, badge(t.status + (t.version ? " v" + t.version : ""))), h("td", {}, t.turns),
      h("td", {}, t.steps === null ? "–" : `${t.steps} (best ${t.best_step})`),
      h("td", { class: "ppl" }, `${fmt(t.base_ppl)} / ${fmt(t.live_ppl)} / ${fmt(t.candidate_ppl)}`),
      h("td", {}, `${fmt(t.base_general_ppl)} → ${fmt(t.candidate_general_ppl)}`),
      h("td", {}, t.questions_right === null ? "–" : `${t.questions_kept}/${t.questions_right}`),
      h("td", {}, t.reward_auc === null ? "–" : `${fmt(t.live_reward_auc ?? 0.5)} → ${fmt(t.reward_auc)}`)));
    if (t.reasons.length) table.append(h("tr", {}, h("td", { colspan: 8 }, h("ul", { class: "reasons" }, t.reasons.map((r) => h("li", {}, r))))));
  }
  detail.append(table);
  renderLoss(run.targets.filter((t) => t.train_loss.length || t.val_loss.length));
}

function renderLoss(targets) {
  const box = $("#loss-chart");
  box.replaceChildren();
  if (!targets.length) {
    box.append(h("p", { class: "empty" }, "No target was trained in this run."));
    return;
  }
  for (const t of targets) {
    const points = [...t.train_loss, ...t.val_loss];
    const steps = points.map((p) => p[0]), losses = points.map((p) => p[1]);
    const [x0, x1] = [Math.min(...steps), Math.max(...steps) || 1];
    const [y0, y1] = [Math.min(...losses), Math.max(...losses)];
    const W = 900, H = 200, L = 45, R = 10, T = 18, B = 24;
    const x = (v) => L + ((v - x0) / (x1 - x0 || 1)) * (W - L - R);
    const y = (v) => T + (1 - (v - y0) / (y1 - y0 || 1)) * (H - T - B);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${t.target} loss` });
    svg.append(s("text", { x: L, y: 12 }, `${t.target}: loss (nats per token) by step · train ─ validation ●`));
    for (const v of [y0, (y0 + y1) / 2, y1]) svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "axis" }), s("text", { x: 2, y: y(v) + 4 }, fmt(v)));
    svg.append(s("text", { x: L, y: H - 6 }, String(x0)), s("text", { x: W - R, y: H - 6, "text-anchor": "end" }, String(x1)));
    if (t.train_loss.length) svg.append(s("polyline", { points: t.train_loss.map((p) => `${x(p[0])},${y(p[1])}`).join(" "), fill: "none", stroke: COLORS[1], "stroke-width": 1.2, class: "train-loss" }));
    if (t.val_loss.length) {
      svg.append(s("polyline", { points: t.val_loss.map((p) => `${x(p[0])},${y(p[1])}`).join(" "), fill: "none", stroke: COLORS[3], "stroke-width": 1.5 }));
      for (const p of t.val_loss) svg.append(s("circle", { cx: x(p[0]), cy: y(p[1]), r: 3, fill: COLORS[3], class: "val-loss" }));
    }
    box.append(svg);
  }
}

function renderAudit(audit) {
  const list = $("#audit");
  list.replaceChildren();
  if (!audit.length) list.append(h("li", { class: "empty" }, "No operator action yet."));
  for (const a of audit) list.append(h("li", {}, when(a.at), " ", badge(a.ok ? a.action : "refused"), " ", a.detail));
}

// members

const loadMembers = () => guarded(async () => {
  const m = await api("/members");
  const tiles = [["members", m.members], ["opted in", m.opted_in], ["opted out", m.opted_out],
    ["forgotten this week", m.forgotten_this_week], ["ratings this week", m.ratings_this_week]];
  $("#member-counts").replaceChildren(...tiles.map(([label, value]) => tile(label, value)));
  document.body.dataset.loaded = "members";
});

function tile(label, value) {
  return h("div", { class: "tile", "data-label": label }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));
}

// serving

const loadServing = () => guarded(async () => {
  const m = await api("/serving");
  const ms = (x) => (x === null || x === undefined ? "–" : (1000 * x).toFixed(0) + " ms");
  $("#serving-at").textContent = `(${m.model}, up ${Math.round(m.uptime_s / 60)} min, at ${when(m.at)})`;
  $("#serving-tiles").replaceChildren(
    tile("requests", m.requests), tile("replies ok", m.replies.ok ?? 0), tile("admitted", m.admitted), tile("refused (busy)", m.refused),
    tile("in use now", m.in_use), tile("queue", m.queue), tile("generating", m.active),
    tile("time to first token p50", ms(m.ttft.p50)), tile("p90", ms(m.ttft.p90)), tile("p99", ms(m.ttft.p99)),
    tile("prefix-cache hits", m.prefix_cache.lookups ? `${m.prefix_cache.hits} (${pct(m.prefix_cache.hit_rate)})` : "–"),
    tile("background backlog", m.background), tile("tokens generated", m.tokens), tile("Redis errors", m.redis_errors));
  const now = Date.now() / 1000;
  if (state.lastServing) {
    const dt = now - state.lastServing.t;
    state.rates.push(Math.max(0, (m.requests - state.lastServing.requests) / dt));
    state.rates = state.rates.slice(-90);
  }
  state.lastServing = { t: now, requests: m.requests };
  renderRate();
  document.body.dataset.loaded = "serving";
});

function renderRate() {
  const W = 900, H = 140, L = 40, T = 10, B = 10;
  const top = Math.max(1, ...state.rates);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "requests per second" });
  svg.append(s("line", { x1: L, x2: W, y1: H - B, y2: H - B, class: "axis" }), s("text", { x: 2, y: T + 4 }, fmt(top, 1)), s("text", { x: 2, y: H - B }, "0"));
  if (state.rates.length > 1) {
    const x = (i) => L + (i / 89) * (W - L);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    svg.append(s("polyline", { points: state.rates.map((v, i) => `${x(i)},${y(v)}`).join(" "), fill: "none", stroke: COLORS[1], "stroke-width": 1.5 }));
  }
  $("#rate-chart").replaceChildren(svg);
}

// wiring

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("#login-error").textContent = "";
    try {
      state.csrf = (await api("/login", { method: "POST", body: JSON.stringify({ key: $("#key").value }) })).csrf;
      $("#key").value = "";
      await start();
    } catch (error) {
      $("#login-error").textContent = error.message;
    }
  });
  document.querySelectorAll("#tabs button[data-view]").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
  $("#logout").addEventListener("click", async () => {
    await api("/logout", { method: "POST" });
    showLogin();
  });
  $("#rollback-target").addEventListener("change", fillVersions);
  $("#rollback").addEventListener("click", () => {
    const target = $("#rollback-target").value, version = $("#rollback-version").value;
    const to = version === "base" ? "the base model" : "v" + version;
    act(`Roll ${target} back to ${to}? Every brain serves it within seconds.`, "rollback",
      { target, version: version === "base" ? "base" : Number(version) });
  });
  start();
});
