// LLM providers: the OpenAI-compatible upstreams behind the gateway's /v1 (api_key never shown).
"use strict";
import { useState } from "preact/hooks";
import { api, get, post } from "../api.js";
import { Action, Empty, ErrorBox, html, parseJson, pretty, useLoad } from "../ui.js";

const EXAMPLE = '{\n  "base_url": "http://localhost:11434/v1",\n  "models": ["qwen3:8b"],\n  "api_key_env": "OLLAMA_KEY"\n}';

export function Providers({ access }) {
  const { data, error, reload } = useLoad(() => get("/llm-providers"), []);
  const [editing, setEditing] = useState(null);
  const [name, setName] = useState("");
  const [text, setText] = useState(EXAMPLE);
  const [failure, setFailure] = useState(null);
  const writable = access.can("providers:write");
  const open = (p) => { setEditing(p || "new"); setName(p ? p.name : ""); setText(p ? pretty(p.config) : EXAMPLE); };
  const save = async () => {
    const config = parseJson(text, "the provider entry");
    if (editing === "new") await post("/llm-providers", { name, config });
    else await api("PUT", `/llm-providers/${encodeURIComponent(name)}`, { config });
    setEditing(null);
    reload();
  };
  const remove = async (p) => { if (confirm(`Remove provider ${p.name}?`)) { await api("DELETE", `/llm-providers/${encodeURIComponent(p.name)}`); reload(); } };
  const rows = data || [];
  return html`${editing && html`<section class="panel" id="provider-editor"><h2>${editing === "new" ? "Add a provider" : `Edit ${name}`}</h2>
      <label>Name<input id="provider-name" value=${name} disabled=${editing !== "new"} onInput=${(e) => setName(e.target.value)} /></label>
      <label style="display:flex">Entry (one <code>llm.providers</code> entry; an <code>api_key</code> sent as <code>***</code> keeps the stored one)
        <textarea id="provider-config" rows="7" value=${text} onInput=${(e) => setText(e.target.value)}></textarea></label>
      <div class="toolbar"><${Action} id="provider-save" class="primary" onRun=${save} setError=${setFailure}>Save</${Action}>
        <button type="button" onClick=${() => setEditing(null)}>Cancel</button></div></section>`}
    <section class="panel"><div class="toolbar"><h2 style="margin:0">LLM providers</h2>
      ${writable && html`<button type="button" class="primary" id="provider-new" onClick=${() => open(null)}>Add a provider</button>`}</div>
      <${ErrorBox} error=${error || failure} />
      ${data && !rows.length && html`<${Empty}>No LLM provider: the gateway's <code>/v1</code> answers once one is added.</${Empty}>`}
      ${rows.length > 0 && html`<table id="providers-table"><thead><tr><th>provider</th><th>base URL</th><th>models</th><th>key</th><th>source</th><th></th></tr></thead>
        <tbody>${rows.map((p) => html`<tr data-provider=${p.name}><td><strong>${p.name}</strong></td><td><code>${p.config.base_url}</code></td>
          <td>${p.config.models.map((m) => html`<span class="tag">${m}</span>`)}</td>
          <td>${p.config.api_key ? "stored (sealed)" : p.config.api_key_env ? `$${p.config.api_key_env}` : "none"}</td><td>${p.source || "API"}</td>
          <td>${writable && html`<button type="button" onClick=${() => open(p)}>Edit</button>
            <${Action} class="danger" onRun=${() => remove(p)} setError=${setFailure}>Remove</${Action}>`}</td></tr>`)}</tbody></table>`}
    </section>`;
}
