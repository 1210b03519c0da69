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
  const headers = { Authorization: `Bearer ${token() || ""}` };
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

// The permissions of the admin API (docs/admin-api.md); the built-in owner holds them all.
export const ALL = [
  "keys:read", "keys:write", "groups:read", "groups:write", "directory:read", "directory:write", "users:password",
  "servers:read", "servers:write", "providers:read", "providers:write", "tools:approve", "analytics:read",
  "audit:payloads", "audit:verify", "audit:export", "principals:read", "principals:write", "roles:read", "roles:write",
];

class Access {
  constructor(me) {
    this.principal = me.principal;
    this.roles = me.roles || [];
    this.permissions = new Set(me.permissions || []);
    this.scoped = me.scoped || {};
  }
  can(permission) { return this.permissions.has(permission) || (this.scoped[permission] || []).length > 0; }
  get label() { return `${this.principal} (${this.roles.join(", ") || "no role"})`; }
}

// Who the credential is: `GET /admin/v1/me`. A server without that route (an admin API before named
// principals) knows two credentials: the admin token (everything) and the analyst token (analytics).
// Answers null when the credential is refused (the console then asks to sign in).
export async function whoami() {
  if (!token()) return null;
  try {
    return new Access(await get("/me"));
  } catch (err) {
    if (err.status === 401) return null;
    if (err.status !== 404) throw err;
  }
  try {
    await get("/keys");
    return new Access({ principal: "admin token", roles: ["owner"], permissions: ALL });
  } catch (err) {
    if (err.status !== 401 && err.status !== 403) throw err;
  }
  try {
    await get("/analytics/panels/choices");
    return new Access({ principal: "analyst token", roles: ["analyst"], permissions: ["analytics:read"] });
  } catch (err) {
    if (err.status === 401 || err.status === 403) return null;
    throw err;
  }
}

// Keys issued or rotated in this tab: their secrets, for the playground; in memory only, gone on reload.
export const secrets = new Map();
