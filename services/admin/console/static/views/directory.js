// People: customers, teams and users (who keys and OAuth logins belong to), with their groups, budgets
// and rate limits, created or edited in place; a user's password for the built-in sign-in.
"use strict";
import { useState } from "preact/hooks";
import { api, get, post } from "../api.js";
import { Action, Empty, ErrorBox, html, useLoad } from "../ui.js";

// collection, title, the parent field and the collection it names
const KINDS = [
  ["customers", "Customers", null, null],
  ["teams", "Teams", "customer_id", "customers"],
  ["users", "Users", "team_id", "teams"],
];

const limit = (e) => (e.budget ? `${e.budget.limit_usd} USD / ${e.budget.period}` : e.rate_limit ? `${e.rate_limit.requests} / ${e.rate_limit.per}` : "");

// the limit each kind carries: a budget in USD per the period picked, or a rate limit (its window kept)
const PERIODS = ["day", "week", "month"];
const LIMITS = {
  customers: ["budget", "budget (USD)", (e) => e.budget && e.budget.limit_usd, (v, old, period) => ({ limit_usd: Number(v), period })],
  teams: ["budget", "budget (USD)", (e) => e.budget && e.budget.limit_usd, (v, old, period) => ({ limit_usd: Number(v), period })],
  users: ["rate_limit", "requests", (e) => e.rate_limit && e.rate_limit.requests, (v, old) => ({ requests: Number(v), per: old ? old.per : "minute" })],
};

// Create an entity, or edit one in place (`editing`: PATCH its name, parent, groups and limit; the id stays).
function EntityForm({ kind, parent, parents, groups, editing, onDone }) {
  const [field, label, current, build] = LIMITS[kind];
  const [values, setValues] = useState(editing
    ? { id: editing.id, name: editing.name, parent: (parent && editing[parent]) || "", groups: editing.groups, limit: String(current(editing) ?? ""),
      period: (editing.budget && editing.budget.period) || "month" }
    : { id: "", name: "", parent: "", groups: [], limit: "", period: "month" });
  const [error, setError] = useState(null);
  const set = (name) => (e) => setValues({ ...values, [name]: e.target.value });
  const save = async () => {
    const body = { name: values.name, groups: values.groups };
    if (parent) body[parent] = values.parent || null;
    body[field] = values.limit.trim() ? build(values.limit, editing && editing[field], values.period) : null;
    if (editing) await api("PATCH", `/${kind}/${encodeURIComponent(editing.id)}`, body);
    else await post(`/${kind}`, { id: values.id, ...body });
    onDone();
  };
  return html`<div class="notice" id=${`${kind}-${editing ? "edit" : "create"}`}>
    <label>Id<input id=${`${kind}-id`} value=${values.id} readonly=${!!editing} onInput=${set("id")} /></label>
    <label>Name<input id=${`${kind}-name`} value=${values.name} onInput=${set("name")} /></label>
    ${parent && html`<label>${parent.replace("_id", "")}<select value=${values.parent} onChange=${set("parent")}>
      <option value="">none</option>${parents.map((p) => html`<option value=${p.id}>${p.id}</option>`)}</select></label>`}
    <label>${label}<input id=${`${kind}-limit`} type="number" min="0" size="8" value=${values.limit} onInput=${set("limit")} /></label>
    ${field === "budget" && html`<label>per<select id=${`${kind}-period`} value=${values.period} onChange=${set("period")}>
      ${PERIODS.map((p) => html`<option value=${p}>${p}</option>`)}</select></label>`}
    ${groups.map((g) => html`<label class="inline"><input type="checkbox" checked=${values.groups.includes(g.id)}
      onChange=${(e) => setValues({ ...values, groups: e.target.checked ? [...values.groups, g.id] : values.groups.filter((x) => x !== g.id) })} />${g.id}</label>`)}
    <${Action} id=${`${kind}-save`} class="primary" onRun=${save} setError=${setError} disabled=${!values.id || !values.name}>${editing ? "Save" : "Create"}</${Action}>
    <${ErrorBox} error=${error} /></div>`;
}

export function Directory({ access }) {
  const { data, error, reload } = useLoad(async () => {
    const [customers, teams, users, groups] = await Promise.all([
      get("/customers"), get("/teams"), get("/users"), access.can("groups:read") ? get("/groups") : [],
    ]);
    return { customers, teams, users, groups };
  }, []);
  const [creating, setCreating] = useState(null);
  const [editing, setEditing] = useState(null); // [kind, entity]
  const [failure, setFailure] = useState(null);
  const writable = access.can("directory:write");
  const remove = async (kind, entity) => {
    if (!confirm(`Delete ${entity.id}?`)) return;
    await api("DELETE", `/${kind}/${encodeURIComponent(entity.id)}`);
    reload();
  };
  const password = async (user) => {
    const value = prompt(`A new password for ${user.id} (8 characters or more): they sign in with it.`);
    if (value) await api("PUT", `/users/${encodeURIComponent(user.id)}/password`, { password: value });
  };
  return html`<${ErrorBox} error=${error || failure} />
    ${data && KINDS.map(([kind, title, parent, parentKind]) => html`<section class="panel" id=${`directory-${kind}`}>
      <div class="toolbar"><h2 style="margin:0">${title}</h2>
        ${writable && html`<button type="button" id=${`${kind}-new`} onClick=${() => { setEditing(null); setCreating(creating === kind ? null : kind); }}>New</button>`}</div>
      ${creating === kind && html`<${EntityForm} kind=${kind} parent=${parent} parents=${parentKind ? data[parentKind] : []}
        groups=${data.groups} onDone=${() => { setCreating(null); reload(); }} />`}
      ${editing && editing[0] === kind && html`<${EntityForm} key=${editing[1].id} kind=${kind} parent=${parent}
        parents=${parentKind ? data[parentKind] : []} groups=${data.groups} editing=${editing[1]} onDone=${() => { setEditing(null); reload(); }} />`}
      ${!data[kind].length ? html`<${Empty}>No ${title.toLowerCase()} yet.</${Empty}>`
        : html`<table><thead><tr><th>id</th><th>name</th>${parent ? html`<th>${parent.replace("_id", "")}</th>` : null}<th>groups</th><th>limit</th><th></th></tr></thead>
          <tbody>${data[kind].map((e) => html`<tr data-entity=${e.id}><td><strong>${e.id}</strong></td><td>${e.name}</td>
            ${parent ? html`<td>${e[parent] || ""}</td>` : null}<td>${e.groups.map((g) => html`<span class="tag">${g}</span>`)}</td><td>${limit(e)}</td>
            <td>${kind === "users" && access.can("users:password") && html`<${Action} onRun=${() => password(e)} setError=${setFailure}>Set password</${Action}>`}
              ${writable && html`<button type="button" data-edit onClick=${() => { setCreating(null); setEditing([kind, e]); }}>Edit</button>
                <${Action} class="danger" onRun=${() => remove(kind, e)} setError=${setFailure}>Delete</${Action}>`}</td></tr>`)}</tbody></table>`}
    </section>`)}`;
}
