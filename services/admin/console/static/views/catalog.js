// Catalog: every tool of every server, searched and paged by the admin service (fast on thousands of
// tools: the browser holds one page); a tool's full definition and pin; changed definitions waiting for
// approval; many tools added to a group at once.
"use strict";
import { useEffect, useState } from "preact/hooks";
import { api, get } from "../api.js";
import { Action, Empty, ErrorBox, html, onEnter, pretty, useLoad } from "../ui.js";
import { PendingApprovals, PinPanel } from "./pins.js";

const PAGE = 50;
const FOLLOW_MS = 10000;

export function useCatalog(q, server, offset) {
  const [debounced, setDebounced] = useState(q);
  useEffect(() => { const t = setTimeout(() => setDebounced(q), 200); return () => clearTimeout(t); }, [q]);
  const params = new URLSearchParams({ q: debounced, offset: String(offset), limit: String(PAGE) });
  if (server) params.set("server", server);
  return useLoad(() => get(`/console/catalog?${params}`), [debounced, server, offset]);
}

// A tool's grant pattern, as keys and groups write it
export const grantOf = (row) => `${row.server}/${row.tool}`;

export function Catalog({ access }) {
  const [q, setQ] = useState("");
  const [offset, setOffset] = useState(0);
  const [open, setOpen] = useState(null);
  const [picked, setPicked] = useState(new Set());
  const [group, setGroup] = useState("");
  const [error, setError] = useState(null);
  const [done, setDone] = useState("");
  const [held, setHeld] = useState(null); // a pending definition opened: not in the catalog while it waits
  const { data, error: failed, reload: reloadCatalog } = useCatalog(q, "", offset);
  const pending = useLoad(() => get("/tools/pending"), []);
  // a change an upstream makes while the person looks shows up without a reload: what waits, and the
  // catalog itself (a definition held back for approval leaves it)
  useEffect(() => {
    const t = setInterval(() => { pending.reload(); reloadCatalog(); }, FOLLOW_MS);
    return () => clearInterval(t);
  }, [pending.reload, reloadCatalog]);
  const waiting = (pending.data || []).map((p) => `${p.server}/${p.name}`);
  // a listed row whose definition is held back is stale: it goes with the next page the API answers
  const withheld = open && waiting.includes(grantOf(open));
  const decided = () => { pending.reload(); reloadCatalog(); };
  const show = (row) => { setHeld(null); setOpen(row); };
  const showHeld = (p) => { setOpen(null); setHeld(p); };
  const groups = useLoad(() => (access.can("groups:write") ? get("/groups") : Promise.resolve([])), []);
  const toggle = (grant) => { const next = new Set(picked); next.has(grant) ? next.delete(grant) : next.add(grant); setPicked(next); };
  const addToGroup = async () => {
    const found = await get(`/groups/${encodeURIComponent(group)}`);
    const tools = [...new Set([...found.tools, ...picked])];
    await api("PATCH", `/groups/${encodeURIComponent(group)}`, { tools });
    setDone(`${picked.size} tools added to ${group}`);
    setPicked(new Set());
  };
  const rows = data ? data.rows.filter((r) => !waiting.includes(grantOf(r))) : [];
  return html`<div><${PendingApprovals} pending=${pending.data || []} openKey=${held && `${held.server}/${held.name}`} onOpen=${showHeld} />
    <div class="split">
    <section class="panel">
      <div class="toolbar"><h2 style="margin:0">Catalog</h2>
        <input id="catalog-search" type="search" placeholder="search every tool: name, server, description" size="40"
          value=${q} onInput=${(e) => { setQ(e.target.value); setOffset(0); }} aria-label="search tools" />
        ${data && html`<span class="muted" id="catalog-count">${data.total} ${data.total === 1 ? "tool" : "tools"}${q ? (data.total === 1 ? " matches" : " match") : ""} · ${data.servers} servers</span>`}</div>
      ${access.can("groups:write") && picked.size > 0 && html`<div class="toolbar notice">
        ${picked.size} selected · add to group
        <select id="bulk-group" value=${group} onChange=${(e) => setGroup(e.target.value)}>
          <option value="">choose…</option>${(groups.data || []).map((g) => html`<option value=${g.id}>${g.id}</option>`)}</select>
        <${Action} id="bulk-add" onRun=${addToGroup} setError=${setError} disabled=${!group}>Add</${Action}></div>`}
      <${ErrorBox} error=${failed || error} />
      ${done && html`<div class="notice">${done}</div>`}
      ${data && !rows.length && html`<${Empty}>${q ? "No tool matches." : "No tools yet: add a server, and its tools appear here once the executor lists them."}</${Empty}>`}
      ${rows.length > 0 && html`<table id="catalog-table"><thead><tr>${access.can("groups:write") ? html`<th></th>` : null}
        <th>tool</th><th>server</th><th>description</th></tr></thead>
        <tbody>${rows.map((r) => html`<tr class=${"clickable" + (open && open.name === r.name ? " selected" : "")}
            data-tool=${r.name} tabindex="0" onClick=${() => show(r)} onKeyDown=${(e) => onEnter(e, () => show(r))}>
          ${access.can("groups:write") ? html`<td onClick=${(e) => e.stopPropagation()}><input type="checkbox" aria-label=${"select " + r.name}
            checked=${picked.has(grantOf(r))} onChange=${() => toggle(grantOf(r))} /></td>` : null}
          <td><code>${r.name}</code></td><td>${r.server}</td><td class="muted">${r.description.slice(0, 140)}</td></tr>`)}</tbody></table>
        <div class="pager"><button type="button" disabled=${offset === 0} onClick=${() => setOffset(Math.max(0, offset - PAGE))}>Previous</button>
          <span class="muted">${offset + 1}–${offset + rows.length} of ${data.total}</span>
          <button type="button" id="catalog-next" disabled=${offset + rows.length >= data.total} onClick=${() => setOffset(offset + PAGE)}>Next</button></div>`}
    </section>
    <section class="panel" id="tool-detail">
      <${ErrorBox} error=${pending.error} />
      ${open ? html`<h2><code>${open.name}</code></h2>
        ${withheld && html`<div class="notice" id="tool-withheld">Held back: a changed definition waits for approval,
          so this tool is not listed or callable until a person decides.</div>`}
        <p>${open.description}</p>
        <h3>Definition</h3><pre>${pretty(open.definition)}</pre>
        <h3>Pinning</h3>
        <${PinPanel} key=${grantOf(open) + (withheld ? ":held" : "")} server=${open.server} name=${open.tool} access=${access} onDecided=${decided} />`
        : held ? html`<h2><code>${held.server}/${held.name}</code> <span class="muted">waiting for approval</span></h2>
          <${PinPanel} key=${"held:" + held.server + "/" + held.name} server=${held.server} name=${held.name} access=${access} onDecided=${decided} />`
        : html`<${Empty}>Pick a tool to see its definition and pin, or a pending approval to decide it.</${Empty}>`}
    </section></div></div>`;
}
