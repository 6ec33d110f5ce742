// Switchboard dashboard: GET /v1/status once, then live updates from GET /v1/events (SSE).
// The control token is asked for once and kept in sessionStorage (this tab) only.
// Every value from the gateway is inserted with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "switchboard.token";
const model = { gateway: null, accounts: new Map(), issues: [] };
let token = sessionStorage.getItem(TOKEN_KEY) || "";
let events = null;
let retryTimer = null;

const $ = (id) => document.getElementById(id);

function authHeaders() {
  return token ? { Authorization: "Bearer " + token } : {};
}

function setConnection(state, text) {
  const badge = $("connection");
  badge.dataset.state = state;
  badge.textContent = text;
}

function scheduleRetry(delayMs) {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(start, delayMs);
}

async function start() {
  if (events) { events.close(); events = null; }
  setConnection("connecting", "connecting");
  let response;
  try {
    response = await fetch("/v1/status", { headers: authHeaders(), cache: "no-store" });
  } catch (err) {
    setConnection("offline", "gateway unreachable, retrying");
    scheduleRetry(3000);
    return;
  }
  if (response.status === 401) {
    askForToken(Boolean(token));
    return;
  }
  if (!response.ok) {
    setConnection("offline", "error " + response.status + ", retrying");
    scheduleRetry(3000);
    return;
  }
  $("token-form").hidden = true;
  $("dashboard").hidden = false;
  $("forget-token").hidden = !token;
  applySnapshot(await response.json());
  openEvents();
}

function openEvents() {
  const url = "/v1/events" + (token ? "?token=" + encodeURIComponent(token) : "");
  events = new EventSource(url);
  events.onopen = () => setConnection("live", "live");
  events.onerror = () => {
    if (events && events.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. 401 after a token rotation): start over with a status fetch.
      setConnection("offline", "disconnected, retrying");
      scheduleRetry(3000);
    } else {
      setConnection("connecting", "reconnecting");
    }
  };
  events.addEventListener("status", (e) => applyStatusEvent(JSON.parse(e.data)));
  events.addEventListener("issues", (e) => { model.issues = JSON.parse(e.data).issues; renderIssues(); });
  events.addEventListener("reload", (e) => {
    const result = JSON.parse(e.data).data || {};
    if (model.gateway) {
      model.gateway.reload = Object.assign({}, model.gateway.reload, {
        last_at: result.at, last_ok: result.ok, last_error: (result.errors || []).join("; ") || null,
        last_trigger: result.trigger, last_actions: result.actions,
      });
      renderGateway();
    }
  });
}

function accountKey(provider, account) {
  return provider + "/" + account;
}

function applySnapshot(report) {
  model.gateway = report.gateway;
  model.accounts = new Map(report.accounts.map((a) => [accountKey(a.provider, a.account), a]));
  model.issues = report.issues;
  renderAll();
}

function applyStatusEvent(data) {
  if (data.type === "snapshot") {
    applySnapshot(data);
    return;
  }
  if (data.type === "account") {
    const key = accountKey(data.provider, data.account);
    const current = model.accounts.get(key) || { provider: data.provider, account: data.account };
    model.accounts.set(key, Object.assign(current, data.fields));
  } else if (data.type === "removed") {
    model.accounts.delete(accountKey(data.provider, data.account));
  } else if (data.type === "gateway" && model.gateway) {
    Object.assign(model.gateway, data.fields);
    renderGateway();
    return;
  }
  renderAccounts();
}

function span(seconds) {
  if (seconds < 60) return seconds + "s";
  if (seconds < 3600) return Math.floor(seconds / 60) + "m";
  if (seconds < 86400) return Math.floor(seconds / 3600) + "h";
  return Math.floor(seconds / 86400) + "d";
}

function age(iso) {
  if (!iso) return "–";
  return span(Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))) + " ago";
}

function until(iso) {
  return span(Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000)));
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function renderAccounts() {
  const body = document.querySelector("#accounts tbody");
  const rows = [...model.accounts.values()].sort((a, b) =>
    a.provider === b.provider ? a.account.localeCompare(b.account) : 0);
  body.replaceChildren(...rows.map((a) => {
    const tr = document.createElement("tr");
    let error = a.last_error || "";
    if (a.state === "backoff" && a.next_retry_at) error += (error ? " " : "") + "(retry in " + until(a.next_retry_at) + ")";
    if (a.probe && a.probe.ok === false) error += (error ? "; " : "") + "probe failed: " + a.probe.error;
    tr.append(
      cell(a.provider), cell(a.account + (a.name ? " (" + a.name + ")" : "")),
      cell(a.state, "state state-" + a.state), cell(a.connected ? "yes" : "no"),
      cell(age(a.last_inbound_at)), cell(age(a.last_outbound_at)), cell(error, "error-text"));
    return tr;
  }));
  $("no-accounts").hidden = rows.length > 0;
}

function renderIssues() {
  const list = $("issues");
  list.replaceChildren(...model.issues.map((issue) => {
    const li = document.createElement("li");
    const who = issue.account ? issue.provider + "/" + issue.account : issue.provider;
    li.textContent = who + " (" + issue.kind + "): " + issue.message;
    if (issue.fix) {
      const fix = document.createElement("span");
      fix.className = "fix";
      fix.textContent = "fix: " + issue.fix;
      li.append(fix);
    }
    return li;
  }));
  $("no-issues").hidden = model.issues.length > 0;
}

function renderGateway() {
  const g = model.gateway;
  if (!g) return;
  $("gateway").textContent = "v" + g.version + " · pid " + g.pid + " · up since " + g.started_at +
    (g.config_path ? " · " + g.config_path : "");
  const r = g.reload || {};
  $("reload-at").textContent = r.last_at ? r.last_at + " (" + age(r.last_at) + ")" : "never";
  $("reload-ok").textContent = r.last_ok === null || r.last_ok === undefined ? "–" : (r.last_ok ? "ok" : "failed");
  $("reload-ok").className = r.last_ok === false ? "error" : "";
  $("reload-trigger").textContent = r.last_trigger || "–";
  $("reload-actions").textContent = (r.last_actions || []).join("; ") || "–";
  $("reload-error").textContent = r.last_error || "–";
}

function renderAll() {
  renderGateway();
  renderAccounts();
  renderIssues();
}

function askForToken(rejected) {
  if (events) { events.close(); events = null; }
  setConnection("offline", "token needed");
  $("dashboard").hidden = true;
  $("token-form").hidden = false;
  $("token-error").hidden = !rejected;
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token-input").value.trim();
  $("token-input").value = "";
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
});

$("forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  token = "";
  askForToken(false);
});

setInterval(() => { if (model.gateway) { renderAccounts(); renderGateway(); } }, 5000);
start();
