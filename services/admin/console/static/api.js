// The admin API from the console: one fetch wrapper, the signed-in credential, and the one place that
// asks "who am I and what may I do" (whoami). Views only ever ask `access.can(permission)`.
"use strict";

const TOKEN = "bastion-token"; // the dashboard keeps its token under the same name: one sign-in for both
export const API = "/admin/v1";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.error) || "http_error";
    this.detail = (body && body.detail) || [];
  }
}

export function token() { return sessionStorage.getItem(TOKEN); }
export function signIn(value) { sessionStorage.setItem(TOKEN, value.trim()); }
export function signOut() { sessionStorage.removeItem(TOKEN); }

export async function api(method, path, body) {
  // a pasted API token, else the session cookie of a sign-in (same origin; changes carry the CSRF header)
  const headers = { "X-Bastion-CSRF": "1" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 204) return null;
  let parsed = null;
  try { parsed = await response.json(); } catch (_) { parsed = null; }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);

// One read-only query on the audit store with named parameters ({name:Type} placeholders).
export async function query(sql, parameters) {
  const answer = await post("/analytics/query", { sql, parameters: parameters || {}, max_rows: 5000, timeout: 10 });
  return answer.rows.map((row) => Object.fromEntries(answer.columns.map((c, i) => [c, row[i]])));
}

const binding = (b) => (typeof b === "string" ? b
  : b.role + (b.team_id ? `@team:${b.team_id}` : b.customer_id ? `@customer:${b.customer_id}` : ""));

class Access {
  constructor(me) {
    this.principal = me.principal;
    this.roles = (me.roles || []).map(binding);
    this.permissions = new Set(me.permissions || []);
    this.scoped = me.scoped || {}; // permission -> ["team:payments", ...]: held for those keys only
    this.via = me.via;
  }
  can(permission) { return this.permissions.has(permission) || (this.scoped[permission] || []).length > 0; }
  get label() { return `${this.principal} (${this.roles.join(", ") || "no role"})`; }
}

// Who is signed in and what they may do: `GET /admin/v1/me`, with a pasted token or the session of a
// sign-in. Null when neither is accepted (the console then asks to sign in).
export async function whoami() {
  try {
    return new Access(await get("/me"));
  } catch (err) {
    if (err.status === 401) return null;
    throw err;
  }
}

// Ends a sign-in's session (a pasted token is only forgotten by the tab).
export async function endSession(access) {
  if (access && access.via === "session") await post("/logout").catch(() => null);
}

// Keys issued or rotated in this tab: their secrets, for the playground; in memory only, gone on reload.
export const secrets = new Map();
