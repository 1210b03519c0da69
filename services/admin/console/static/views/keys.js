// Keys: issue (grants and groups picked from the catalog), rotate, revoke (many at once), budgets and
// this month's spend. A new secret shows once; the tab keeps it in memory for the playground.
"use strict";
import { useState } from "preact/hooks";
import { get, post, query, secrets } from "../api.js";
import { Action, CopyButton, Empty, ErrorBox, html, onEnter, useLoad, when } from "../ui.js";
import { grantOf, useCatalog } from "./catalog.js";

const SPEND = "SELECT key_name, sum(calls) AS calls, round(sum(cost_usd), 6) AS spend_usd FROM bastion.calls_hourly"
  + " WHERE hour >= toStartOfMonth(now()) GROUP BY key_name";

async function load(access) {
  const keys = await get("/keys");
  let spend = {};
  if (access.can("analytics:read")) {
    try { spend = Object.fromEntries((await query(SPEND)).map((r) => [r.key_name, r])); } catch (_) { spend = {}; }
  }
  return { keys: keys.sort((a, b) => a.revoked - b.revoked || b.created_at - a.created_at), spend };
}

export function GrantPicker({ grants, setGrants }) {
  const [q, setQ] = useState("");
  const [free, setFree] = useState("");
  const { data } = useCatalog(q, "", 0);
  const add = (grant) => { if (grant && !grants.includes(grant)) setGrants([...grants, grant]); };
  return html`<div>
    <div>${grants.map((g) => html`<span class="tag">${g}<button type="button" aria-label=${"remove " + g}
      onClick=${() => setGrants(grants.filter((x) => x !== g))}>×</button></span>`)}
      ${!grants.length && html`<span class="muted">no grants: the key calls only its groups' tools</span>`}</div>
    <div class="toolbar">
      <input id="grant-search" type="search" placeholder="find a tool in the catalog" value=${q} onInput=${(e) => setQ(e.target.value)} />
      <input id="grant-pattern" placeholder="or a pattern: server/*" value=${free} onInput=${(e) => setFree(e.target.value)} />
      <button type="button" id="grant-add-pattern" onClick=${() => { add(free.trim()); setFree(""); }}>Add pattern</button></div>
    ${q && data && html`<div class="scroll" style="max-height:180px"><table><tbody>${data.rows.slice(0, 20).map((r) =>
      html`<tr class="clickable" tabindex="0" data-grant=${grantOf(r)} onClick=${() => add(grantOf(r))}
        onKeyDown=${(e) => onEnter(e, () => add(grantOf(r)))}><td><code>${grantOf(r)}</code></td>
        <td class="muted">${r.description.slice(0, 80)}</td></tr>`)}</tbody></table></div>`}
  </div>`;
}

// Where a key may be issued: anywhere, or (a key manager bound to teams or customers) only there.
function scopesOf(access) {
  if (access.permissions.has("keys:write")) return null;
  const scoped = (access.scoped["keys:write"] || []).map((s) => s.split(":"));
  return { teams: scoped.filter(([k]) => k === "team").map(([, id]) => id), customers: scoped.filter(([k]) => k === "customer").map(([, id]) => id) };
}

function Issue({ access, onIssued }) {
  const scopes = scopesOf(access);
  const [owner, setOwner] = useState(scopes ? (scopes.teams.length ? `team:${scopes.teams[0]}` : `customer:${scopes.customers[0]}`) : "");
  const [name, setName] = useState("");
  const [grants, setGrants] = useState([]);
  const [groups, setGroups] = useState([]);
  const [budget, setBudget] = useState("");
  const [period, setPeriod] = useState("month");
  const [error, setError] = useState(null);
  const known = useLoad(async () => {
    const read = (permission, path) => (access.can(permission) ? get(path).catch(() => []) : Promise.resolve([]));
    const [groups, teams, customers] = await Promise.all([
      read("groups:read", "/groups"), read("directory:read", "/teams"), read("directory:read", "/customers"),
    ]);
    return { groups, teams: teams.map((t) => t.id), customers: customers.map((c) => c.id) };
  }, []);
  const issue = async () => {
    const body = { name, grants, groups };
    const [kind, id] = owner.split(":");
    if (kind === "team") body.team_id = id;
    if (kind === "customer") body.customer_id = id;
    if (budget !== "") body.budget = { limit_usd: Number(budget), period };
    const created = await post("/keys", body);
    secrets.set(created.key.id, created.secret);
    onIssued(created);
  };
  return html`<section class="panel" id="key-issue"><h2>Issue a key</h2>
    <label>Name<input id="key-name" value=${name} onInput=${(e) => setName(e.target.value)} /></label>
    <label>For<select id="key-owner" value=${owner} onChange=${(e) => setOwner(e.target.value)}>
      ${!scopes && html`<option value="">no team or customer</option>`}
      ${(scopes ? scopes.teams : (known.data ? known.data.teams : [])).map((t) => html`<option value=${"team:" + t}>team ${t}</option>`)}
      ${(scopes ? scopes.customers : (known.data ? known.data.customers : [])).map((c) => html`<option value=${"customer:" + c}>customer ${c}</option>`)}
    </select></label>
    <label>Budget (USD, empty: none)<input id="key-budget" type="number" min="0" step="0.01" value=${budget} onInput=${(e) => setBudget(e.target.value)} /></label>
    <label>per<select value=${period} onChange=${(e) => setPeriod(e.target.value)}>
      ${["day", "week", "month"].map((p) => html`<option value=${p}>${p}</option>`)}</select></label>
    <h3>Tool groups</h3>
    ${(known.data ? known.data.groups : []).map((g) => html`<label class="inline"><input type="checkbox" data-group=${g.id} checked=${groups.includes(g.id)}
      onChange=${(e) => setGroups(e.target.checked ? [...groups, g.id] : groups.filter((x) => x !== g.id))} />${g.id}</label>`)}
    ${known.data && !known.data.groups.length && html`<span class="muted">no groups you may read</span>`}
    <h3>Grants</h3><${GrantPicker} grants=${grants} setGrants=${setGrants} />
    <div class="toolbar"><${Action} id="key-create" class="primary" onRun=${issue} setError=${setError} disabled=${!name}>Issue</${Action}></div>
    <${ErrorBox} error=${error} /></section>`;
}

export function Keys({ access }) {
  const { data, error, reload } = useLoad(() => load(access), []);
  const [issuing, setIssuing] = useState(false);
  const [shown, setShown] = useState(null); // {name, secret, id}: shown once
  const [picked, setPicked] = useState(new Set());
  const [failure, setFailure] = useState(null);
  const writable = access.can("keys:write");
  const fresh = (created) => { setShown({ name: created.key.name, secret: created.secret, id: created.key.id }); setIssuing(false); reload(); };
  const rotate = async (key) => { const created = await post(`/keys/${key.id}/rotate`); secrets.set(created.key.id, created.secret); fresh(created); };
  const revoke = async (ids) => {
    if (!confirm(`Revoke ${ids.length} key${ids.length > 1 ? "s" : ""}? Every replica refuses ${ids.length > 1 ? "them" : "it"} at once.`)) return;
    for (const id of ids) await post(`/keys/${id}/revoke`);
    setPicked(new Set());
    reload();
  };
  const toggle = (id) => { const next = new Set(picked); next.has(id) ? next.delete(id) : next.add(id); setPicked(next); };
  const keys = data ? data.keys : [];
  return html`
    ${shown && html`<section class="panel" id="key-secret"><h2>Key ${shown.name}: its secret, shown once</h2>
      <p>Store it now; Bastion keeps only its sha256. Send it as <code>${"Authorization: Bearer <secret>"}</code>.</p>
      <div class="secret" id="key-secret-value">${shown.secret}</div>
      <div class="toolbar" style="margin-top:8px"><${CopyButton} id="key-secret-copy" text=${shown.secret} from="key-secret-value" />
        <a href=${"#/playground?key=" + shown.id} id="key-try">Try it in the playground</a>
        <button type="button" onClick=${() => setShown(null)}>Done</button></div></section>`}
    ${issuing && html`<${Issue} access=${access} onIssued=${fresh} />`}
    <section class="panel">
      <div class="toolbar"><h2 style="margin:0">Keys</h2><button type="button" onClick=${reload}>Refresh</button>
        ${writable && html`<button type="button" class="primary" id="key-new" onClick=${() => setIssuing(!issuing)}>Issue a key</button>`}
        ${writable && picked.size > 0 && html`<${Action} id="keys-revoke-selected" class="danger" onRun=${() => revoke([...picked])}
          setError=${setFailure}>Revoke ${picked.size} selected</${Action}>`}</div>
      <${ErrorBox} error=${error || failure} />
      ${data && !keys.length && html`<${Empty}>No virtual key yet.${writable ? " Issue one: agents send it to call tools." : ""}</${Empty}>`}
      ${keys.length > 0 && html`<table id="keys-table"><thead><tr>${writable ? html`<th></th>` : null}<th>name</th><th>id</th><th>grants</th>
        <th>groups</th><th>budget</th><th class="num">calls (month)</th><th class="num">spend USD</th><th>created</th><th></th></tr></thead>
        <tbody>${keys.map((k) => {
          const seen = data.spend[k.name] || {};
          return html`<tr data-key=${k.name} class=${k.revoked ? "muted" : ""}>
            ${writable ? html`<td>${!k.revoked && html`<input type="checkbox" aria-label=${"select " + k.name} checked=${picked.has(k.id)} onChange=${() => toggle(k.id)} />`}</td>` : null}
            <td><strong>${k.name}</strong>${k.revoked ? " (revoked)" : ""}</td><td><code>${k.id.slice(0, 12)}</code></td>
            <td>${k.grants.map((g) => html`<span class="tag">${g}</span>`)}</td><td>${k.groups.map((g) => html`<span class="tag">${g}</span>`)}</td>
            <td>${k.budget ? `${k.budget.limit_usd} / ${k.budget.period}` : ""}</td>
            <td class="num">${seen.calls ?? ""}</td><td class="num">${seen.spend_usd ?? ""}</td><td>${when(k.created_at)}</td>
            <td>${writable && !k.revoked && html`<${Action} onRun=${() => rotate(k)} setError=${setFailure}>Rotate</${Action}>
              <${Action} class="danger" data-revoke=${k.name} onRun=${() => revoke([k.id])} setError=${setFailure}>Revoke</${Action}>`}</td></tr>`;
        })}</tbody></table>`}
    </section>`;
}
