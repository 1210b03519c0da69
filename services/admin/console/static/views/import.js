// Import: a configuration file (the export, edited, or any file `bastion config apply` takes) planned and
// applied through the admin API (`/config/plan`, `/config/apply`). It adds and changes what the file
// names and never deletes; the API checks the whole file before writing anything.
"use strict";
import { useEffect, useState } from "preact/hooks";
import { post } from "../api.js";
import { Action, ErrorBox, html } from "../ui.js";

const WRITES = ["servers:write", "keys:write", "groups:write", "directory:write", "providers:write"];
const SECTIONS = { servers: "servers", keys: "keys", groups: "groups", customers: "customers", teams: "teams",
  users: "users", llm_providers: "LLM providers" };

// Held everywhere (a team's key manager may not import keys); the API checks each section the file fills.
export const mayImport = (access) => WRITES.some((p) => access.permissions.has(p));

function Plan({ plan }) {
  const rows = Object.entries(plan.sections).filter(([, s]) => s.added.length + s.changed.length + s.unchanged.length);
  const names = (list) => (list.length ? list.join(", ") : html`<span class="muted">—</span>`);
  return html`<div id="import-plan-result">
    ${rows.length ? html`<table><thead><tr><th>kind</th><th>added</th><th>changed</th><th>unchanged</th></tr></thead>
      <tbody>${rows.map(([name, s]) => html`<tr data-section=${name}><td>${SECTIONS[name] || name}</td>
        <td class="added">${names(s.added)}</td><td class="changed">${names(s.changed)}</td>
        <td class="muted">${s.unchanged.length}</td></tr>`)}</tbody></table>`
      : html`<div class="empty">The file names nothing to import.</div>`}
    ${plan.ignored.length > 0 && html`<p class="muted">Not imported (read when a service starts): ${plan.ignored.join(", ")}.</p>`}
  </div>`;
}

export function Import({ draft }) {
  const [text, setText] = useState("");
  const [plan, setPlan] = useState(null); // the plan of exactly `text`: Apply is offered only for it
  const [done, setDone] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => { if (draft) { setText(draft.text); setPlan(null); setDone(null); } }, [draft]);
  const edit = (value) => { setText(value); setPlan(null); setDone(null); };
  const load = (event) => {
    const file = event.target.files[0];
    if (file) file.text().then(edit, setError);
  };
  const count = (p, what) => Object.values(p.sections).reduce((n, s) => n + s[what].length, 0);
  return html`<section class="panel" id="import-panel"><h2>Import a configuration file</h2>
    <p>A file <code>bastion config apply</code> takes (YAML or JSON; the export above, edited). An import <strong>adds
      and changes</strong> what the file names and <strong>never deletes</strong> what it leaves out. A <code>\${VARIABLE}</code> must
      be set in the admin service's environment; write <code>***</code> to keep a stored secret. Nothing is
      written until you apply, and the whole file is checked first.</p>
    <div class="toolbar"><label>File<input type="file" id="import-file" accept=".yaml,.yml,.json" onChange=${load} /></label></div>
    <textarea id="import-text" rows="16" value=${text} onInput=${(e) => edit(e.target.value)} aria-label="the configuration file"></textarea>
    <div class="toolbar">
      <${Action} id="import-plan" onRun=${async () => { setPlan(await post("/config/plan", { yaml: text })); setDone(null); }}
        setError=${setError} disabled=${!text.trim()}>Plan</${Action}>
      <${Action} id="import-apply" class="primary" setError=${setError} disabled=${!plan || plan.applied}
        onRun=${async () => { const applied = await post("/config/apply", { yaml: text }); setPlan(applied); setDone(applied); }}>Apply</${Action}>
    </div>
    <${ErrorBox} error=${error} />
    ${done && html`<div class="notice" id="import-done">Imported: ${count(done, "added")} added, ${count(done, "changed")} changed, nothing deleted.</div>`}
    ${plan && html`<${Plan} plan=${plan} />`}
  </section>`;
}
