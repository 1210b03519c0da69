// Tool groups: named sets of grant patterns keys and people share; tools picked from the catalog.
"use strict";
import { useState } from "preact/hooks";
import { api, get, post } from "../api.js";
import { Action, Empty, ErrorBox, html, useLoad } from "../ui.js";
import { GrantPicker } from "./keys.js";

function Editor({ editing, onDone, onCancel }) {
  const [id, setId] = useState(editing ? editing.id : "");
  const [description, setDescription] = useState(editing ? editing.description : "");
  const [tools, setTools] = useState(editing ? editing.tools : []);
  const [error, setError] = useState(null);
  const save = async () => {
    if (editing) await api("PATCH", `/groups/${encodeURIComponent(id)}`, { description, tools });
    else await post("/groups", { id, description, tools });
    onDone();
  };
  return html`<section class="panel" id="group-editor"><h2>${editing ? `Edit ${editing.id}` : "New group"}</h2>
    <label>Id (lower-case)<input id="group-id" value=${id} disabled=${!!editing} onInput=${(e) => setId(e.target.value)} /></label>
    <label>Description<input id="group-description" size="50" value=${description} onInput=${(e) => setDescription(e.target.value)} /></label>
    <h3>Tools</h3><${GrantPicker} grants=${tools} setGrants=${setTools} />
    <div class="toolbar"><${Action} id="group-save" class="primary" onRun=${save} setError=${setError} disabled=${!id}>Save</${Action}>
      <button type="button" onClick=${onCancel}>Cancel</button></div>
    <${ErrorBox} error=${error} /></section>`;
}

export function Groups({ access }) {
  const { data, error, reload } = useLoad(() => get("/groups"), []);
  const [editing, setEditing] = useState(null);
  const [failure, setFailure] = useState(null);
  const writable = access.can("groups:write");
  const remove = async (g) => {
    if (!confirm(`Delete group ${g.id}?`)) return;
    await api("DELETE", `/groups/${encodeURIComponent(g.id)}`);
    reload();
  };
  const rows = data || [];
  return html`${editing && html`<${Editor} editing=${editing === "new" ? null : editing}
      onDone=${() => { setEditing(null); reload(); }} onCancel=${() => setEditing(null)} />`}
    <section class="panel"><div class="toolbar"><h2 style="margin:0">Tool groups</h2>
      ${writable && html`<button type="button" class="primary" id="group-new" onClick=${() => setEditing("new")}>New group</button>`}</div>
      <${ErrorBox} error=${error || failure} />
      ${data && !rows.length && html`<${Empty}>No tool group yet: a group names tools many keys share.</${Empty}>`}
      ${rows.length > 0 && html`<table id="groups-table"><thead><tr><th>group</th><th>description</th><th>tools</th><th></th></tr></thead>
        <tbody>${rows.map((g) => html`<tr data-group=${g.id}><td><strong>${g.id}</strong></td><td>${g.description}</td>
          <td>${g.tools.map((t) => html`<span class="tag">${t}</span>`)}</td>
          <td>${writable && html`<button type="button" onClick=${() => setEditing(g)}>Edit</button>
            <${Action} class="danger" onRun=${() => remove(g)} setError=${setFailure}>Delete</${Action}>`}</td></tr>`)}</tbody></table>`}
    </section>`;
}
