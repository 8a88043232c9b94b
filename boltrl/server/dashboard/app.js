// The boltrl dashboard: plain JavaScript, no build step. Every number comes from the /v1 API; with a
// server token, the token typed once is kept in sessionStorage and sent as a bearer header.
// Text from the store is only ever set with textContent (never innerHTML): agent output is untrusted.
"use strict";

const TOKEN_KEY = "boltrl.token";
const POLL_MS = { rollouts: 2000, rollout: 2000, training: 5000, workers: 3000 };
const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const PREFERRED = ["rollout/reward_mean", "val/reward_mean", "train/loss", "train/pg_loss", "train/approx_kl"];
const MAX_CHARTS = 12;
let timer = null;
let generation = 0; // bumps on every navigation, so a stale poll does not draw over a new view

class AuthError extends Error {}

// ------------------------------------------------------------------ helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function badge(status) {
  return h("span", { class: `badge s-${status}`, "data-status": status }, status);
}

function fmtTime(t) {
  return t ? new Date(t * 1000).toLocaleString() : "–";
}

function fmtDuration(start, end) {
  if (!start) return "–";
  const s = (end || Date.now() / 1000) - start;
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  return s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
}

function fmtNumber(v) {
  if (typeof v !== "number") return String(v);
  return Math.abs(v) >= 1000 || Number.isInteger(v) ? String(v) : v.toPrecision(4).replace(/\.?0+$/, "");
}

function ago(t) {
  return `${Math.max(0, Math.round(Date.now() / 1000 - t))} s ago`;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path) {
  const headers = { accept: "application/json" };
  if (token()) headers.authorization = `Bearer ${token()}`;
  const r = await fetch(path, { headers, cache: "no-store" });
  if (r.status === 401) {
    showLogin(token() ? "That token was refused: try again." : "");
    throw new AuthError("unauthorized");
  }
  if (!r.ok) {
    let message = r.statusText;
    try {
      message = (await r.json()).error.message;
    } catch (e) { /* not our error shape */ }
    throw new Error(`${r.status}: ${message}`);
  }
  return r.json();
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// ------------------------------------------------------------------ auth

function showLogin(message) {
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("token-input").focus();
}

document.getElementById("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token-input").value.trim());
  document.getElementById("token-input").value = "";
  document.getElementById("login").hidden = true;
  route();
});

document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

// ------------------------------------------------------------------ routing and polling

function parseHash() {
  const [path, q] = (location.hash.replace(/^#/, "") || "/rollouts").split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(q || "") };
}

function route() {
  clearTimeout(timer);
  const gen = ++generation;
  const { parts, params } = parseHash();
  const name = parts[0] || "rollouts";
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.view === name || (name === "rollout" && a.dataset.view === "rollouts"));
  }
  document.getElementById("logout").hidden = !token();
  const view = document.getElementById("view");
  view.replaceChildren();
  const views = {
    rollouts: () => rolloutsView(view, params, gen),
    rollout: () => rolloutView(view, parts[1], gen),
    training: () => trainingView(view, params, gen),
    workers: () => workersView(view, gen),
  };
  (views[name] || views.rollouts)();
}

// Run `refresh` now and then every `ms` while this view is shown (skipped while the tab is hidden).
function poll(gen, ms, refresh) {
  const tick = async () => {
    if (gen !== generation) return;
    let again = true;
    if (document.visibilityState !== "hidden") {
      try {
        again = (await refresh()) !== false;
        await refreshCounts();
        document.getElementById("error").textContent = "";
      } catch (e) {
        if (e instanceof AuthError) return; // the login form is up; it restarts the view
        document.getElementById("error").textContent = `Could not reach the server: ${e.message}`;
      }
    }
    if (again && gen === generation) timer = setTimeout(tick, ms);
  };
  tick();
}

async function refreshCounts() {
  const stats = await api("/v1/stats");
  const el = document.getElementById("counts");
  el.replaceChildren(...STATUSES.map((s) => h("span", { "data-count": s }, `${s} `, h("b", {}, stats.rollouts[s] ?? 0))));
}

// ------------------------------------------------------------------ rollouts

function rolloutsView(view, params, gen) {
  let limit = 50;
  const filters = { status: params.get("status") || "", mode: params.get("mode") || "", group_id: params.get("group_id") || "" };
  const setFilter = (key, value) => {
    filters[key] = value;
    location.hash = `#/rollouts${query(filters)}`;
  };
  const status = h("select", { id: "filter-status", onchange: (e) => setFilter("status", e.target.value) },
    h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s)));
  const mode = h("select", { id: "filter-mode", onchange: (e) => setFilter("mode", e.target.value) },
    h("option", { value: "" }, "any"), ["train", "val", "test"].map((m) => h("option", { value: m, selected: m === filters.mode }, m)));
  const group = h("input", { id: "filter-group", placeholder: "group id", value: filters.group_id,
    onchange: (e) => setFilter("group_id", e.target.value.trim()) });
  const body = h("tbody");
  const more = h("button", { class: "more", hidden: true, onclick: () => { limit = Math.min(limit * 2, 1000); refresh(); } }, "Show more");
  view.append(
    h("h1", {}, "Rollouts", h("span", { class: "muted", id: "live" }, "live")),
    h("div", { class: "filters" }, h("label", {}, "status", status), h("label", {}, "mode", mode), h("label", {}, "group", group)),
    h("table", { id: "rollouts-table" },
      h("thead", {}, h("tr", {}, ["id", "status", "mode", "group", "attempts", "created", "duration"].map((c) => h("th", {}, c)))),
      body),
    more,
  );
  const refresh = async () => {
    const page = await api(`/v1/rollouts${query({ ...filters, limit, order: "desc" })}`);
    if (gen !== generation) return false;
    body.replaceChildren(...page.rollouts.map((r) => h("tr", { "data-id": r.id },
      h("td", {}, h("a", { href: `#/rollout/${encodeURIComponent(r.id)}` }, r.id)),
      h("td", {}, badge(r.status)),
      h("td", {}, r.mode),
      h("td", { class: "mono" }, r.group_id || "–"),
      h("td", {}, `${r.attempt_count}/${r.max_attempts}`),
      h("td", {}, fmtTime(r.created_at)),
      h("td", {}, fmtDuration(r.started_at, r.ended_at)))));
    if (!page.rollouts.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No rollouts match.")));
    more.hidden = page.next_cursor === null || limit >= 1000;
  };
  poll(gen, POLL_MS.rollouts, refresh);
}

// ------------------------------------------------------------------ one rollout

function rolloutView(view, id, gen) {
  const refresh = async () => {
    const [rollout, spans] = await Promise.all([
      api(`/v1/rollouts/${encodeURIComponent(id)}`),
      api(`/v1/rollouts/${encodeURIComponent(id)}/spans`),
    ]);
    if (gen !== generation) return false;
    view.replaceChildren(...renderRollout(rollout, spans.spans));
    return !["succeeded", "failed", "cancelled"].includes(rollout.status); // poll until it is over
  };
  poll(gen, POLL_MS.rollout, refresh);
}

function renderRollout(r, spans) {
  const rewards = spans.filter((s) => s.name === "boltrl.reward");
  const calls = spans.filter((s) => s.name === "boltrl.model_call");
  const attemptN = Object.fromEntries(r.attempts.map((a) => [a.id, a.n]));
  const reward = rewards.length ? rewards[rewards.length - 1].attributes["boltrl.reward.value"] : null;
  const meta = [
    ["mode", r.mode], ["group", r.group_id || "–"], ["attempts", `${r.attempt_count} / ${r.max_attempts}`],
    ["resources version", r.resources_version ?? "–"], ["created", fmtTime(r.created_at)],
    ["duration", fmtDuration(r.started_at, r.ended_at)], ["model calls", calls.length], ["spans", spans.length],
  ];
  return [
    h("p", {}, h("a", { href: "#/rollouts" }, "← all rollouts")),
    h("h1", {}, h("span", { class: "mono", id: "rollout-id" }, r.id), h("span", { id: "rollout-status" }, badge(r.status))),
    h("div", { class: "card" },
      h("div", { class: "meta" },
        h("div", {}, h("span", {}, "reward"), h("div", { class: "reward", id: "reward" }, reward === null ? "–" : fmtNumber(reward))),
        meta.map(([k, v]) => h("div", {}, h("span", {}, k), String(v)))),
      rewards.length > 1 ? h("p", { class: "muted" }, "all rewards: ",
        rewards.map((s) => `${fmtNumber(s.attributes["boltrl.reward.value"])}${s.attributes["boltrl.reward.name"] ? ` (${s.attributes["boltrl.reward.name"]})` : ""}`).join(", ")) : null,
      h("h2", {}, "Input"), h("pre", { id: "rollout-input" }, JSON.stringify(r.input, null, 2))),
    h("h2", {}, "Attempts"),
    h("table", { id: "attempts-table" },
      h("thead", {}, h("tr", {}, ["n", "attempt", "worker", "status", "started", "duration", "error"].map((c) => h("th", {}, c)))),
      h("tbody", {}, r.attempts.map((a) => h("tr", { "data-attempt": a.id },
        h("td", {}, a.n), h("td", { class: "mono" }, a.id), h("td", { class: "mono" }, a.worker_id), h("td", {}, badge(a.status)),
        h("td", {}, fmtTime(a.started_at)), h("td", {}, fmtDuration(a.started_at, a.ended_at)),
        h("td", { class: "error" }, a.error || ""))))),
    h("h2", {}, "Spans"),
    waterfall(spans, attemptN),
    h("h2", {}, `Model calls (${calls.length})`),
    h("div", { id: "model-calls" }, calls.map((s, i) => modelCall(s, i + 1, attemptN))),
  ];
}

function spanKind(s) {
  if (s.status === "error") return "error";
  if (s.name === "boltrl.model_call") return "model_call";
  if (s.name === "boltrl.reward") return "reward";
  return "other";
}

function waterfall(spans, attemptN) {
  const box = h("div", { class: "waterfall", id: "waterfall" });
  if (!spans.length) return h("p", { class: "muted" }, "No spans yet.");
  const t0 = Math.min(...spans.map((s) => s.start));
  const t1 = Math.max(...spans.map((s) => s.end ?? s.start));
  const total = Math.max(t1 - t0, 1e-3);
  const detail = h("pre", { class: "card", id: "span-detail", hidden: true });
  for (const s of spans) {
    const bar = h("div", { class: `wf-bar k-${spanKind(s)}` });
    bar.style.left = `${((s.start - t0) / total) * 100}%`;
    bar.style.width = `${Math.max(((s.end ?? s.start) - s.start) / total * 100, 0.4)}%`;
    const row = h("div", { class: "wf-row", "data-seq": s.seq, title: s.name },
      h("div", { class: "wf-label" }, h("span", { class: "muted" }, `#${s.seq} · a${attemptN[s.attempt_id] ?? "–"} `), s.name),
      h("div", { class: "wf-track" }, bar),
      h("div", { class: "wf-dur" }, s.end ? fmtDuration(s.start, s.end) : "–"));
    row.addEventListener("click", () => {
      const target = document.getElementById(`call-${s.seq}`);
      if (target) target.scrollIntoView({ behavior: "smooth" });
      detail.hidden = false;
      detail.textContent = JSON.stringify({ name: s.name, seq: s.seq, span_id: s.span_id, parent_id: s.parent_id,
        status: s.status, attributes: s.attributes, events: s.events }, null, 2);
    });
    box.append(row);
  }
  return h("div", {}, box, detail);
}

function contentText(content) {
  if (content === null || content === undefined) return "";
  if (Array.isArray(content)) return content.map((p) => (typeof p === "object" ? p.text ?? JSON.stringify(p) : String(p))).join("\n");
  return typeof content === "string" ? content : JSON.stringify(content);
}

function message(m, answer) {
  const toolCalls = (m.tool_calls || []).map((c) =>
    h("div", { class: "toolcall mono" }, `→ ${c.function?.name ?? "?"}(${c.function?.arguments ?? ""})`));
  const role = m.role + (m.tool_call_id ? ` · ${m.tool_call_id}` : "") + (answer ? " · response" : "");
  return h("div", { class: `message r-${m.role}${answer ? " answer" : ""}` },
    h("div", { class: "role" }, role),
    contentText(m.content) ? h("pre", {}, contentText(m.content)) : null,
    toolCalls);
}

function modelCall(s, i, attemptN) {
  const a = s.attributes;
  const stats = [
    ["agent", a.agent || "–"], ["model", a.model || "–"], ["weights", a.weights_version ?? "–"],
    ["prompt tokens", (a.prompt_ids || []).length], ["completion tokens", (a.response_ids || []).length],
    ["latency", `${Math.round(a.latency_ms || 0)} ms`], ["finish", a.finish_reason || "–"], ["attempt", attemptN[s.attempt_id] ?? "–"],
  ];
  const request = a.request || {};
  const messages = (request.messages || []).map((m) => message(m, false));
  if (request.prompt !== undefined) messages.push(message({ role: "prompt", content: request.prompt }, false));
  const choices = (a.response?.choices || []).map((c) => message(c.message || { role: "assistant", content: c.text }, true));
  const tools = (request.tools || []).map((t) => t.function?.name).filter(Boolean);
  return h("div", { class: "card call model-call", id: `call-${s.seq}`, "data-seq": s.seq },
    h("div", { class: "call-head" }, h("b", {}, `Call ${i}`),
      stats.map(([k, v]) => h("span", { class: "stat", "data-stat": k }, `${k} `, h("b", {}, v))),
      tools.length ? h("span", { class: "stat" }, "tools ", h("b", {}, tools.join(", "))) : null),
    messages, choices,
    a.error ? h("p", { class: "error" }, `error: ${a.error}`) : null);
}

// ------------------------------------------------------------------ training curves

function trainingView(view, params, gen) {
  const select = h("select", { id: "run-select", onchange: (e) => { location.hash = `#/training${query({ run: e.target.value })}`; } });
  const info = h("span", { class: "muted", id: "run-info" });
  const charts = h("div", { class: "charts", id: "charts" });
  view.append(h("h1", {}, "Training"), h("div", { class: "filters" }, h("label", {}, "run", select), info), charts);
  const refresh = async () => {
    const runs = (await api("/v1/runs")).runs;
    if (gen !== generation) return false;
    if (!runs.length) {
      charts.replaceChildren(h("p", { class: "muted" }, "No run has posted metrics yet (the trainer posts one row per step)."));
      return true;
    }
    const current = params.get("run") || runs[0].id;
    select.replaceChildren(...runs.map((r) => h("option", { value: r.id, selected: r.id === current }, r.id)));
    const rows = (await api(`/v1/runs/${encodeURIComponent(current)}/metrics`)).rows;
    if (gen !== generation) return false;
    const run = runs.find((r) => r.id === current);
    info.textContent = run ? `step ${run.last_step} · ${run.steps} rows · updated ${ago(run.updated_at)}` : "";
    charts.replaceChildren(...metricKeys(rows).map((k) => chart(k, rows)));
  };
  poll(gen, POLL_MS.training, refresh);
}

function metricKeys(rows) {
  const keys = new Set();
  for (const r of rows) for (const [k, v] of Object.entries(r)) if (k !== "step" && typeof v === "number") keys.add(k);
  const rest = [...keys].filter((k) => !PREFERRED.includes(k)).sort();
  return [...PREFERRED.filter((k) => keys.has(k)), ...rest].slice(0, MAX_CHARTS);
}

function chart(key, rows) {
  const pts = rows.filter((r) => typeof r[key] === "number").map((r) => [r.step, r[key]]);
  const W = 400, H = 190, L = 46, R = 10, T = 10, B = 24;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => L + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (y1 === y0 ? 0.5 : 1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": key });
  g.append(
    svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
    svg("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, fmtNumber(y1)),
    svg("text", { x: L - 4, y: H - B, "text-anchor": "end" }, fmtNumber(y0)),
    svg("text", { x: L, y: H - 8 }, `step ${x0}`),
    svg("text", { x: W - R, y: H - 8, "text-anchor": "end" }, `step ${x1}`),
    svg("polyline", { class: "line", points: pts.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" ") }),
  );
  for (const [x, y] of pts) g.append(svg("circle", { class: "dot", cx: sx(x), cy: sy(y), r: 2.5 }, svg("title", {}, `step ${x}: ${fmtNumber(y)}`)));
  const last = pts.length ? pts[pts.length - 1][1] : null;
  return h("div", { class: "card chart", "data-metric": key },
    h("h3", {}, h("span", {}, key), h("span", { class: "muted" }, last === null ? "" : `latest ${fmtNumber(last)}`)), g);
}

// ------------------------------------------------------------------ workers

function workersView(view, gen) {
  const summary = h("div", { class: "summary", id: "workers-summary" });
  const body = h("tbody");
  view.append(h("h1", {}, "Workers"), summary,
    h("table", { id: "workers-table" },
      h("thead", {}, h("tr", {}, ["worker", "state", "running", "succeeded", "failed", "timed out", "lost", "first seen", "last heartbeat"].map((c) => h("th", {}, c)))),
      body));
  const refresh = async () => {
    const now = Date.now() / 1000;
    const [workers, stats, finished] = await Promise.all([
      api("/v1/workers"), api("/v1/stats"), api(`/v1/stats/finished?since=${now - 60}`),
    ]);
    if (gen !== generation) return false;
    const active = (w) => w.running > 0 || now - w.last_heartbeat < 60;
    const done = Object.values(finished.rollouts).reduce((a, b) => a + b, 0);
    const cards = [
      ["queue depth", stats.rollouts.queued], ["running attempts", workers.workers.reduce((a, w) => a + w.running, 0)],
      ["active workers", `${workers.workers.filter(active).length} / ${workers.workers.length}`],
      ["finished, last minute", done],
    ];
    summary.replaceChildren(...cards.map(([k, v]) => h("div", { class: "card", "data-summary": k }, h("b", {}, v), k)));
    body.replaceChildren(...workers.workers.map((w) => h("tr", { "data-worker": w.id },
      h("td", { class: "mono" }, w.id), h("td", {}, badge(active(w) ? (w.running ? "running" : "idle") : "gone")),
      h("td", {}, w.running), h("td", {}, w.succeeded), h("td", {}, w.failed), h("td", {}, w.timed_out), h("td", {}, w.lost),
      h("td", {}, fmtTime(w.first_seen)), h("td", {}, ago(w.last_heartbeat)))));
    if (!workers.workers.length) body.append(h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No worker has claimed a rollout yet.")));
  };
  poll(gen, POLL_MS.workers, refresh);
}

window.addEventListener("hashchange", route);
route();
