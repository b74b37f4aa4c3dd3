// authd operator console: plain JS over authd's HTTP/JSON API (same origin).
// The operator key lives in sessionStorage and goes out only as an
// Authorization header; an acting API key lives in this page's memory only.
// Every value from the server is written with textContent, never as HTML.
"use strict";

const KEY = "authd.operatorKey";
const PROBE = "00000000-0000-4000-8000-000000000000";
const $ = (id) => document.getElementById(id);
const envName = (e) => (e || "").replace("ENVIRONMENT_", "").toLowerCase();

let tenant = null; // the open tenant
let acting = null; // { secret, keyId, environment }
let keysPage = ""; // next page token of the API key listing
let tenantsPage = ""; // next page token of the tenant listing
let clientsPage = ""; // next page token of the client listing
let auditAfter = ""; // last event id shown
let clientId = null;

async function api(method, path, body, bearer) {
  const headers = { Authorization: "Bearer " + (bearer || sessionStorage.getItem(KEY) || "") };
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  let json = {};
  try { json = await resp.json(); } catch (_) { /* not JSON: keep {} */ }
  return { ok: resp.ok, status: resp.status, json, retryAfter: resp.headers.get("Retry-After") };
}

function problem(r) {
  const e = r.json.error || {};
  let text = (e.status || "HTTP " + r.status) + ": " + (e.message || "request failed");
  if (r.retryAfter) text += " (retry after " + r.retryAfter + " s)";
  return text;
}

function notice(text, bad) {
  const n = $("notice");
  n.textContent = text;
  n.classList.toggle("bad", !!bad);
  n.hidden = false;
}

/// Runs a call; on failure says why and returns null.
async function call(method, path, body, bearer) {
  const r = await api(method, path, body, bearer);
  if (!r.ok) {
    if (r.status === 401 && !bearer) notice("Your operator key was refused (" + problem(r) + "). Sign in again.", true);
    else notice(problem(r), true);
    return null;
  }
  return r.json;
}

function cell(tr, value, mono) {
  const td = document.createElement("td");
  if (mono) {
    const c = document.createElement("code");
    c.textContent = value == null ? "" : String(value);
    td.appendChild(c);
  } else {
    td.textContent = value == null ? "" : String(value);
  }
  tr.appendChild(td);
  return td;
}

function button(td, label, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  td.appendChild(b);
  return b;
}

function info(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v == null || v === "" ? "—" : String(v);
    dl.append(dt, dd);
  }
}

function show(section) {
  for (const id of ["signin", "tenants", "tenant"]) $(id).hidden = id !== section;
  $("signout").hidden = section === "signin";
}

// The id of what the shown-once box holds a secret of (an API key id, or a
// test client key's client id): revoking it clears the box.
let shownId = "";

function shownOnce(what, secret, id) {
  $("shown-once-what").textContent = what;
  $("secret-value").textContent = secret;
  $("shown-once").hidden = false;
  shownId = id;
}

function forgetShown(ids) {
  if (!shownId || !ids.includes(shownId)) return;
  $("shown-once").hidden = true;
  $("secret-value").textContent = "";
  shownId = "";
}

// ---- sign in ----

async function signIn(key) {
  // A valid key reads "no such tenant"; a refused one is 401.
  const r = await api("GET", "/v1/tenants/" + PROBE, undefined, key);
  if (r.status === 404) {
    sessionStorage.setItem(KEY, key);
    $("signin-error").hidden = true;
    $("notice").hidden = true;
    showTenants();
    return;
  }
  const why = r.status === 401
    ? "This operator key was refused: it is not a valid operator key of this server, or its id is not in the allowlist."
    : "Sign-in failed: " + problem(r);
  $("signin-error").textContent = why;
  $("signin-error").hidden = false;
}

function signOut() {
  sessionStorage.removeItem(KEY);
  acting = null;
  tenant = null;
  $("notice").hidden = true;
  $("signin-key").value = "";
  show("signin");
}

// ---- tenants ----

async function showTenants() {
  show("tenants");
  await loadTenants(true);
}

async function loadTenants(first) {
  if (first) tenantsPage = "";
  const q = "?pageSize=20" + (tenantsPage ? "&pageToken=" + encodeURIComponent(tenantsPage) : "");
  const r = await call("GET", "/v1/tenants" + q);
  if (!r) return;
  const body = $("tenant-list").tBodies[0];
  body.replaceChildren();
  for (const t of r.tenants || []) {
    const tr = document.createElement("tr");
    cell(tr, t.name);
    cell(tr, t.tenantId, true);
    cell(tr, t.idleTimeout);
    cell(tr, t.maxLifetime);
    cell(tr, t.createTime);
    cell(tr, t.revokedBefore);
    button(cell(tr, ""), "Open", "secondary", () => openTenant(t.tenantId));
    body.appendChild(tr);
  }
  tenantsPage = r.nextPageToken || "";
  $("tenants-next").hidden = !tenantsPage;
}

async function createTenant(ev) {
  ev.preventDefault();
  const body = {
    name: $("tenant-name").value,
    idleTimeout: $("tenant-idle").value + "s",
    maxLifetime: $("tenant-max").value + "s",
  };
  const r = await call("POST", "/v1/tenants", body);
  if (!r) return;
  notice("Tenant " + r.tenant.name + " created.");
  await openTenant(r.tenant.tenantId, true);
}

async function openTenant(id, keepNotice) {
  const r = await call("GET", "/v1/tenants/" + encodeURIComponent(id));
  if (!r) return;
  if (!keepNotice) $("notice").hidden = true;
  tenant = r.tenant;
  if (acting && acting.tenantId !== tenant.tenantId) acting = null;
  show("tenant");
  $("shown-once").hidden = true;
  $("client").hidden = true;
  $("revoke-confirm").value = "";
  $("revoke-before-go").disabled = true;
  renderTenant();
  renderActing();
  await Promise.all([loadKeys(true), loadClients(true), loadAudit(true)]);
}

function renderTenant() {
  $("tenant-title").textContent = "Tenant " + tenant.name;
  const q = tenant.quotas || {};
  info($("tenant-info"), [
    ["Tenant id", tenant.tenantId],
    ["Idle timeout", tenant.idleTimeout],
    ["Max lifetime", tenant.maxLifetime],
    ["Created", tenant.createTime],
    ["Revoked before", tenant.revokedBefore],
    ["Quotas", "API keys " + (q.apiKeys || "default") + ", clients " + (q.clients || "default") +
      ", sessions per client " + (q.sessionsPerClient || "default")],
  ]);
}

// ---- API keys ----

async function loadKeys(first) {
  if (first) {
    keysPage = "";
    $("key-list").tBodies[0].replaceChildren();
  }
  const q = "?pageSize=20" + (keysPage ? "&pageToken=" + encodeURIComponent(keysPage) : "");
  const r = await call("GET", "/v1/tenants/" + tenant.tenantId + "/apiKeys" + q);
  if (!r) return;
  const body = $("key-list").tBodies[0];
  for (const k of r.apiKeys || []) {
    const tr = document.createElement("tr");
    tr.dataset.keyId = k.keyId;
    cell(tr, k.keyId, true);
    cell(tr, envName(k.environment));
    cell(tr, k.name);
    cell(tr, (k.scopes || []).join(", ") || "all");
    cell(tr, k.createTime);
    cell(tr, k.expireTime);
    cell(tr, k.successorKeyId, true);
    const td = cell(tr, "");
    button(td, "Roll", "secondary", () => rollKey(k));
    button(td, "Revoke", "danger", () => revokeKey(k));
    body.appendChild(tr);
  }
  keysPage = r.nextPageToken || "";
  $("keys-more").hidden = !keysPage;
}

async function createKey(ev) {
  ev.preventDefault();
  const scopes = $("key-scopes").value.split(",").map((s) => s.trim()).filter(Boolean);
  const body = { environment: $("key-env").value, name: $("key-name").value, scopes };
  const r = await call("POST", "/v1/tenants/" + tenant.tenantId + "/apiKeys", body);
  if (!r) return;
  shownOnce("New API key " + r.apiKey.keyId, r.secret, r.apiKey.keyId);
  acting = { secret: r.secret, keyId: r.apiKey.keyId, environment: r.apiKey.environment, tenantId: tenant.tenantId };
  renderActing();
  notice("API key created.");
  await Promise.all([loadKeys(true), loadAudit(true)]);
}

async function rollKey(k) {
  const grace = window.prompt("Roll key " + k.keyId + ": how many seconds may the old key keep working? (0 to 2592000)", "3600");
  if (grace === null) return;
  const r = await call("POST", "/v1/tenants/" + tenant.tenantId + "/apiKeys/" + k.keyId + ":roll", { gracePeriod: grace + "s" });
  if (!r) return;
  shownOnce("Rolled: new API key " + r.apiKey.keyId + " (the old one stops at " + r.oldKeyExpireTime + ")", r.secret, r.apiKey.keyId);
  await Promise.all([loadKeys(true), loadAudit(true)]);
}

async function revokeKey(k) {
  if (!window.confirm("Revoke API key " + k.keyId + " (" + k.name + ")? Calls with it fail at once.")) return;
  const r = await call("POST", "/v1/tenants/" + tenant.tenantId + "/apiKeys/" + k.keyId + ":revoke", {});
  if (!r) return;
  notice("Revoked " + (r.revokedKeyIds || []).join(", ") + ".");
  forgetShown(r.revokedKeyIds || []);
  if (acting && acting.keyId === k.keyId) acting = null;
  renderActing();
  await Promise.all([loadKeys(true), loadAudit(true)]);
}

// ---- acting API key, test client keys, clients ----

function renderActing() {
  $("acting-what").textContent = acting
    ? "Acting with API key " + (acting.keyId || "(pasted)") + (acting.environment ? " (" + envName(acting.environment) + ")" : "")
    : "No acting API key: create one above or paste one.";
}

/// The acting key's environment: as created here, or from a pasted key's
/// prefix.
function actingEnv() {
  if (!acting) return null;
  if (acting.environment) return acting.environment;
  if (acting.secret.startsWith("sk_live_")) return "ENVIRONMENT_PRODUCTION";
  if (acting.secret.startsWith("sk_test_")) return "ENVIRONMENT_TEST";
  return null;
}

async function loadClients(first) {
  if (first) clientsPage = "";
  const env = $("client-env").value;
  const q = "?pageSize=20" + (env ? "&environment=" + env : "") +
    (clientsPage ? "&pageToken=" + encodeURIComponent(clientsPage) : "");
  const r = await call("GET", "/v1/tenants/" + tenant.tenantId + "/clients" + q);
  if (!r) return;
  const body = $("client-list").tBodies[0];
  body.replaceChildren();
  for (const c of r.clients || []) {
    const tr = document.createElement("tr");
    tr.dataset.clientId = c.clientId;
    cell(tr, c.clientId, true);
    cell(tr, envName(c.environment));
    cell(tr, Object.entries(c.labels || {}).map(([k, v]) => k + "=" + v).join(", "));
    cell(tr, c.createTime);
    button(cell(tr, ""), "Open", "secondary", () => openListedClient(c));
    body.appendChild(tr);
  }
  clientsPage = r.nextPageToken || "";
  $("clients-next").hidden = !clientsPage;
}

/// Opens a listed client in the client view, which reads it with the
/// acting API key: another environment's key would only say "not found".
async function openListedClient(c) {
  if (!needActing()) return;
  const env = actingEnv();
  if (env && env !== c.environment) {
    notice("Client " + c.clientId + " is a " + envName(c.environment) + " client: the acting API key is a " +
      envName(env) + " key. Create or paste a " + envName(c.environment) + " key of this tenant first.", true);
    return;
  }
  $("client-id").value = c.clientId;
  await openClient(c.clientId);
}

function needActing() {
  if (!acting) notice("Create or paste an API key of this tenant first (Acting API key).", true);
  return !!acting;
}

async function createTestClient(ev) {
  ev.preventDefault();
  if (!needActing()) return;
  const labels = {};
  for (const pair of $("tck-labels").value.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [k, ...v] = pair.split("=");
    labels[k.trim()] = v.join("=").trim();
  }
  const r = await call("POST", "/v1/testClients", { labels }, acting.secret);
  if (!r) return;
  shownOnce("New test client key for client " + r.client.clientId, r.token, r.client.clientId);
  notice("Test client key created.");
  $("client-id").value = r.client.clientId;
  await openClient(r.client.clientId);
  await Promise.all([loadClients(true), loadAudit(true)]);
}

async function openClient(id) {
  if (!needActing()) return;
  const c = await call("GET", "/v1/clients/" + encodeURIComponent(id), undefined, acting.secret);
  if (!c) return;
  const s = await call("GET", "/v1/clients/" + encodeURIComponent(id) + "/sessions?pageSize=100", undefined, acting.secret);
  if (!s) return;
  clientId = c.client.clientId;
  const labels = Object.entries(c.client.labels || {}).map(([k, v]) => k + "=" + v).join(", ");
  info($("client-info"), [
    ["Client id", clientId],
    ["Environment", c.client.environment],
    ["Labels", labels],
    ["Created", c.client.createTime],
  ]);
  const body = $("session-list").tBodies[0];
  body.replaceChildren();
  for (const x of s.sessions || []) {
    const tr = document.createElement("tr");
    tr.dataset.sessionId = x.sessionId;
    cell(tr, x.sessionId, true);
    cell(tr, x.createTime);
    cell(tr, x.lastUseTime);
    cell(tr, x.expireTime || "never");
    cell(tr, x.testKey ? "yes" : "no");
    button(cell(tr, ""), "Revoke", "danger", () => revokeSession(x.sessionId));
    body.appendChild(tr);
  }
  $("client").hidden = false;
}

async function revokeSession(id) {
  if (!window.confirm("Revoke session " + id + "? Its token fails at once.")) return;
  const r = await call("DELETE", "/v1/clients/" + clientId + "/sessions/" + id, undefined, acting.secret);
  if (!r) return;
  notice("Session " + id + " revoked.");
  forgetShown([clientId]);
  await openClient(clientId);
  await loadAudit(true);
}

async function revokeAll() {
  if (!window.confirm("Revoke every session of client " + clientId + "?")) return;
  const r = await call("POST", "/v1/clients/" + clientId + "/sessions:revokeAll", {}, acting.secret);
  if (!r) return;
  notice((r.revokedCount || 0) + " session(s) revoked.");
  forgetShown([clientId]);
  await openClient(clientId);
  await loadAudit(true);
}

async function deleteClient() {
  if (!window.confirm("Delete client " + clientId + " and everything it holds?")) return;
  const r = await call("DELETE", "/v1/clients/" + clientId, undefined, acting.secret);
  if (!r) return;
  notice("Client " + clientId + " deleted.");
  forgetShown([clientId]);
  $("client").hidden = true;
  await Promise.all([loadClients(true), loadAudit(true)]);
}

// ---- audit trail ----

async function loadAudit(first) {
  if (first) auditAfter = "";
  // Newest first (what an incident needs); "Older" pages back from the last row.
  const q = "?pageSize=20&newestFirst=true" + (auditAfter ? "&afterEventId=" + encodeURIComponent(auditAfter) : "");
  const r = await call("GET", "/v1/tenants/" + tenant.tenantId + "/auditEvents" + q);
  if (!r) return;
  const events = r.events || [];
  const body = $("audit-list").tBodies[0];
  body.replaceChildren();
  for (const e of events) {
    const tr = document.createElement("tr");
    cell(tr, e.time);
    cell(tr, e.actor, true);
    cell(tr, e.action);
    cell(tr, (e.subjects || []).join(" "), true);
    cell(tr, e.eventId, true);
    body.appendChild(tr);
  }
  if (events.length) auditAfter = events[events.length - 1].eventId;
  $("audit-next").disabled = events.length < 20;
}

// ---- incident: revoke before ----

async function revokeBefore(ev) {
  ev.preventDefault();
  if ($("revoke-confirm").value !== tenant.name) return;
  const r = await call("POST", "/v1/tenants/" + tenant.tenantId + ":revokeCredentials", {});
  if (!r) return;
  tenant = r.tenant;
  acting = null;
  renderTenant();
  renderActing();
  $("revoke-confirm").value = "";
  $("revoke-before-go").disabled = true;
  notice("Every credential of " + tenant.name + " issued before " + tenant.revokedBefore + " is refused from now on.");
  await loadAudit(true);
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("signin-key").value.trim()); });
  $("signout").addEventListener("click", signOut);
  $("tenant-create").addEventListener("submit", createTenant);
  $("tenant-open").addEventListener("submit", (ev) => { ev.preventDefault(); openTenant($("tenant-open-id").value.trim()); });
  $("back").addEventListener("click", showTenants);
  $("tenants-first").addEventListener("click", () => loadTenants(true));
  $("tenants-next").addEventListener("click", () => loadTenants(false));
  $("key-create").addEventListener("submit", createKey);
  $("keys-more").addEventListener("click", () => loadKeys(false));
  $("acting").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const secret = $("acting-key").value.trim();
    $("acting-key").value = "";
    acting = secret ? { secret, keyId: null, environment: null, tenantId: tenant.tenantId } : null;
    renderActing();
  });
  $("tck-create").addEventListener("submit", createTestClient);
  $("client-filter").addEventListener("submit", (ev) => { ev.preventDefault(); loadClients(true); });
  $("clients-first").addEventListener("click", () => loadClients(true));
  $("clients-next").addEventListener("click", () => loadClients(false));
  $("client-open").addEventListener("submit", (ev) => { ev.preventDefault(); openClient($("client-id").value.trim()); });
  $("revoke-all").addEventListener("click", revokeAll);
  $("delete-client").addEventListener("click", deleteClient);
  $("audit-first").addEventListener("click", () => loadAudit(true));
  $("audit-next").addEventListener("click", () => loadAudit(false));
  $("copy-secret").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("secret-value").textContent);
      notice("Copied to the clipboard.");
    } catch (_) {
      notice("The browser refused the clipboard: select the text and copy it by hand.", true);
    }
  });
  $("dismiss-secret").addEventListener("click", () => {
    $("shown-once").hidden = true;
    $("secret-value").textContent = "";
  });
  $("revoke-confirm").addEventListener("input", () => {
    $("revoke-before-go").disabled = !tenant || $("revoke-confirm").value !== tenant.name;
  });
  $("revoke-before").addEventListener("submit", revokeBefore);
  if (sessionStorage.getItem(KEY)) showTenants(); else show("signin");
});
