// The auditor page: search, entry detail with a badge this page computes itself (verify.js),
// checkpoint and witness status, consistency from the checkpoint it verified last time
// (kept in this browser's storage: a fork shows in red), two SVG charts, and the access log
// for operators. Every request is relative to the page, so the app may sit under a prefix.

import * as v from "./verify.js";
import { apply, lang, setLang, t } from "./i18n.js";

const $ = (selector) => document.querySelector(selector);
const TOKEN_KEY = "creditx.audit.token";
const state = { info: null, pinned: null, cursor: null, params: null, shown: 0 };

class ApiError extends Error {
  constructor(status, reason, message) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, value]) => value !== "" && value != null));
  const url = `api/${path}${query.size ? `?${query}` : ""}`;
  const response = await fetch(url, {
    headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` },
  });
  if (!response.ok) {
    let reason = "HTTP_" + response.status;
    let message = response.statusText;
    try {
      const body = await response.json();
      reason = body.error.reason;
      message = body.error.message;
    } catch {
      // not a JSON refusal: keep the status line
    }
    throw new ApiError(response.status, reason, message);
  }
  return response;
}

const json = async (path, params) => (await api(path, params)).json();

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function show(selector, visible) {
  $(selector).hidden = !visible;
}

// --- signing in -------------------------------------------------------------------------------

async function signIn() {
  try {
    state.info = await json("info");
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    show("#login", true);
    show("#app", false);
    $("#login-error").textContent = error.message;
    show("#login-error", error.status !== undefined);
    return;
  }
  show("#login", false);
  show("#app", true);
  show("#sign-out", true);
  const info = state.info;
  $("#node-name").textContent = `${info.name} ${info.node_id}`;
  $("#you").textContent = t("roleLine", info.you.name, info.you.role, info.you.zones.join(", "));
  show("#access", info.you.role === "operator");
  pin(info);
  await checkLog();
  await runSearch();
  if (info.you.role === "operator") await loadAccessLog();
}

// --- the pinned key and the log's checkpoints ---------------------------------------------------

function pinKey() {
  return `creditx.audit.${state.info.log_origin}.pin`;
}

function seenKey() {
  return `creditx.audit.${state.info.log_origin}.seen`;
}

function pin(info) {
  let pinned = localStorage.getItem(pinKey());
  let note = "";
  if (!pinned) {
    pinned = info.log_verifier_key;
    localStorage.setItem(pinKey(), pinned);
    note = t("pinnedFirstUse");
  } else if (pinned !== info.log_verifier_key) {
    note = t("pinMismatch");
  }
  state.pinned = pinned;
  $("#pinned-key").textContent = pinned;
  $("#pin-note").textContent = note;
  $("#pin-note").className = pinned !== info.log_verifier_key ? "bad" : "";
}

function witnessKeys() {
  return state.info.witnesses.map((w) => w.verifier_key);
}

async function checkLog() {
  $("#checkpoint-status").textContent = t("checking");
  const { latest, checkpoints } = await json("checkpoints", { limit: 1 });
  let verified;
  try {
    verified = await v.verifyCheckpoint(latest, state.pinned, witnessKeys());
  } catch (error) {
    $("#checkpoint-status").textContent = t("checkpointBad", error.message);
    $("#checkpoint-status").className = "bad";
    return;
  }
  const signedAt = checkpoints.length ? new Date(checkpoints[0].signed_at) : new Date();
  const age = t("ago", Math.max(0, (Date.now() - signedAt.getTime()) / 1000));
  $("#checkpoint-status").textContent = t("checkpointOk", verified.checkpoint.size, age);
  $("#checkpoint-status").className = "good";
  const list = $("#witness-status");
  list.replaceChildren();
  if (!verified.witnesses.length) list.textContent = t("noWitnesses");
  for (const w of verified.witnesses) {
    const when = w.timestamp ? new Date(w.timestamp * 1000).toISOString().replace(".000Z", "Z") : "";
    list.append(el("div", { class: w.cosigned ? "good" : "warn" }, t("witnessLine", w.name, w.cosigned, when)));
  }
  await checkConsistency(verified.checkpoint);
}

// The checkpoint this browser verified before must be a prefix of the one it sees now.
async function checkConsistency(now) {
  const status = $("#consistency-status");
  const seen = JSON.parse(localStorage.getItem(seenKey()) || "null");
  const remember = () =>
    localStorage.setItem(seenKey(), JSON.stringify({ size: now.size, root: v.b64encode(now.root) }));
  if (!seen) {
    remember();
    status.textContent = t("firstVisit", now.size);
    status.className = "";
    return;
  }
  try {
    const oldRoot = v.b64decode(seen.root);
    if (seen.size > now.size) throw new v.VerifyError(`size went down from ${seen.size}`);
    if (seen.size === now.size) {
      await v.verifyConsistency(seen.size, now.size, oldRoot, now.root, []);
      status.textContent = t("unchanged", now.size);
    } else {
      const proof = await json("consistency", { from: seen.size, to: now.size });
      await v.verifyConsistency(seen.size, now.size, oldRoot, now.root, proof.hashes.map(v.b64decode));
      status.textContent = t("consistent", seen.size, now.size);
    }
    status.className = "good";
    show("#fork", false);
    remember();
  } catch (error) {
    // The remembered checkpoint stays: the fork stays visible until someone looks into it.
    const message = t("fork", seen.size, now.size, error.message);
    status.textContent = message;
    status.className = "bad";
    $("#fork").textContent = message;
    show("#fork", true);
  }
}

// --- search, results, export ----------------------------------------------------------------

function formParams() {
  const form = new FormData($("#search-form"));
  const params = {};
  for (const [key, value] of form.entries()) if (String(value).trim()) params[key] = String(value).trim();
  return params;
}

async function runSearch() {
  state.params = formParams();
  state.cursor = null;
  state.shown = 0;
  $("#results tbody").replaceChildren();
  await Promise.all([loadPage(), loadCharts()]);
}

async function loadPage() {
  show("#search-error", false);
  let page;
  try {
    page = await json("entries", { ...state.params, cursor: state.cursor ?? "" });
  } catch (error) {
    $("#search-error").textContent = error.message;
    show("#search-error", true);
    return;
  }
  const body = $("#results tbody");
  for (const entry of page.entries) {
    const row = el(
      "tr",
      { class: `decision-${entry.decision.toLowerCase()}`, "data-index": String(entry.index), tabindex: "0" },
      ...[
        entry.index,
        entry.time.replace("T", " ").replace("Z", ""),
        entry.direction === "ANSWERED" ? t("answered") : t("asked"),
        entry.peer,
        entry.zone,
        entry.purpose,
        entry.subject,
        entry.decision,
        entry.reason_code,
      ].map((text) => el("td", {}, String(text))),
    );
    row.addEventListener("click", () => openEntry(entry.index));
    row.addEventListener("keydown", (event) => event.key === "Enter" && openEntry(entry.index));
    body.append(row);
  }
  state.shown += page.entries.length;
  state.cursor = page.next_cursor;
  $("#result-count").textContent = state.shown ? t("shown", state.shown) : t("noEntries");
  show("#more", Boolean(page.next_cursor));
}

async function exportEntries(format, encoding) {
  const response = await api("export", { ...formParams(), format, encoding });
  const blob = await response.blob();
  const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1] || `export.${format}`;
  const link = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// --- one entry, proven here -----------------------------------------------------------------

async function openEntry(index) {
  show("#detail", true);
  $("#detail-index").textContent = String(index);
  const badge = $("#badge");
  badge.textContent = t("checking");
  badge.className = "badge";
  $("#badge-steps").replaceChildren();
  $("#detail-fields").replaceChildren();
  let detail;
  try {
    detail = await json(`entries/${index}`);
  } catch (error) {
    badge.textContent = error.message;
    badge.className = "badge bad";
    return;
  }
  const fields = $("#detail-fields");
  for (const [key, value] of Object.entries(detail.entry)) {
    fields.append(el("dt", {}, key), el("dd", {}, String(value)));
  }
  const steps = $("#badge-steps");
  try {
    const result = await v.verifyEntry(detail, state.pinned, witnessKeys());
    const cosigned = result.witnesses.filter((w) => w.cosigned).length;
    steps.append(
      el("li", {}, result.fromBytes ? t("stepBytes") : t("stepLeafOnly")),
      el("li", {}, t("stepProof", result.checkpoint.size)),
      el("li", {}, t("stepSignature")),
      el("li", {}, t("stepWitness", cosigned, result.witnesses.length)),
    );
    badge.textContent = `✔ ${t("verified")}`;
    badge.className = "badge good";
    badge.dataset.verified = "true";
  } catch (error) {
    badge.textContent = `✘ ${t("notVerified")}: ${error.message}`;
    badge.className = "badge bad";
    badge.dataset.verified = "false";
  }
}

// --- charts, drawn as SVG here ----------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function volumeChart(volume) {
  const days = [...new Set(volume.map((r) => r.day))].sort();
  const peers = [...new Set(volume.map((r) => r.peer))].sort();
  const totals = new Map(days.map((d) => [d, 0]));
  for (const r of volume) totals.set(r.day, totals.get(r.day) + r.count);
  const most = Math.max(1, ...totals.values());
  const width = 640;
  const height = 240;
  const left = 48;
  const bottom = 40;
  const legend = 18 * Math.min(peers.length, 10);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height + legend}`, role: "img", class: "chart", "data-chart": "volume" });
  const plotW = width - left - 10;
  const plotH = height - bottom - 10;
  const barW = plotW / Math.max(days.length, 1);
  root.append(svg("line", { x1: left, y1: 10, x2: left, y2: 10 + plotH, stroke: "#555" }));
  root.append(svg("line", { x1: left, y1: 10 + plotH, x2: width - 10, y2: 10 + plotH, stroke: "#555" }));
  root.append(svg("text", { x: left - 6, y: 16, "text-anchor": "end", class: "axis" }, String(most)));
  root.append(svg("text", { x: left - 6, y: 10 + plotH, "text-anchor": "end", class: "axis" }, "0"));
  days.forEach((day, i) => {
    let y = 10 + plotH;
    peers.forEach((peer, p) => {
      const row = volume.find((r) => r.day === day && r.peer === peer);
      if (!row) return;
      const h = (row.count / most) * plotH;
      y -= h;
      const bar = svg("rect", { x: left + i * barW + 1, y, width: Math.max(barW - 2, 1), height: h, fill: PALETTE[p % PALETTE.length], class: "bar" });
      bar.append(svg("title", {}, `${day} ${peer}: ${row.count}`));
      root.append(bar);
    });
    if (days.length <= 16 || i % Math.ceil(days.length / 16) === 0) {
      root.append(svg("text", { x: left + i * barW + barW / 2, y: height - bottom + 24, "text-anchor": "middle", class: "axis" }, day.slice(5)));
    }
  });
  peers.slice(0, 10).forEach((peer, p) => {
    const y = height + 18 * p;
    root.append(svg("rect", { x: left, y: y + 2, width: 12, height: 12, fill: PALETTE[p % PALETTE.length] }));
    root.append(svg("text", { x: left + 18, y: y + 12, class: "legend" }, peer));
  });
  return root;
}

function refusalChart(refusals) {
  const rows = refusals.slice(0, 12);
  const most = Math.max(1, ...rows.map((r) => r.count));
  const width = 640;
  const rowH = 24;
  const left = 220;
  const root = svg("svg", { viewBox: `0 0 ${width} ${rowH * rows.length + 10}`, role: "img", class: "chart", "data-chart": "refusals" });
  rows.forEach((row, i) => {
    const y = 5 + i * rowH;
    const w = ((width - left - 60) * row.count) / most;
    root.append(svg("text", { x: left - 8, y: y + 16, "text-anchor": "end", class: "legend" }, row.reason || "—"));
    const bar = svg("rect", { x: left, y: y + 3, width: Math.max(w, 1), height: rowH - 6, fill: "#d62728", class: "bar" });
    bar.append(svg("title", {}, `${row.reason}: ${row.count}`));
    root.append(bar);
    root.append(svg("text", { x: left + w + 6, y: y + 16, class: "legend" }, String(row.count)));
  });
  return root;
}

async function loadCharts() {
  const params = { ...state.params };
  let stats;
  try {
    stats = await json("stats", params);
  } catch {
    return; // the search shows the refusal
  }
  $("#volume-chart").replaceChildren(stats.volume.length ? volumeChart(stats.volume) : el("p", {}, t("noData")));
  $("#refusal-chart").replaceChildren(stats.refusals.length ? refusalChart(stats.refusals) : el("p", {}, t("noData")));
}

// --- the access log (operators) -----------------------------------------------------------------

async function loadAccessLog() {
  const { records } = await json("access-log", { limit: 50 });
  $("#access-table tbody").replaceChildren(
    ...records.map((r) =>
      el(
        "tr",
        {},
        ...[r.at, r.who, r.role, r.action, JSON.stringify(r.filter), r.rows, r.status].map((x) => el("td", {}, String(x))),
      ),
    ),
  );
}

// --- wiring ---------------------------------------------------------------------------------

function start() {
  apply();
  $("#lang").addEventListener("click", () => {
    setLang(lang() === "zh" ? "en" : "zh");
    if (state.info) signIn();
  });
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token").value = "";
    signIn();
  });
  $("#sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  $("#pin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("#pin-input").value.trim();
    try {
      await v.parseVerifierKey(text);
    } catch (error) {
      $("#pin-note").textContent = error.message;
      $("#pin-note").className = "bad";
      return;
    }
    localStorage.setItem(pinKey(), text);
    signIn();
  });
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runSearch();
  });
  $("#more").addEventListener("click", loadPage);
  for (const button of document.querySelectorAll("button.export")) {
    button.addEventListener("click", () => exportEntries(button.dataset.format, button.dataset.encoding));
  }
  if (sessionStorage.getItem(TOKEN_KEY)) signIn();
}

start();
