// Add a server from an MCP Registry (docs/registry.md): search a configured registry, pick a server,
// give the inputs its server.json declares for the chosen remote or package, import it pinned at its
// version (POST /admin/v1/servers/import). A package runs as a command: the API asks for the owner's
// servers:command, and its refusal is shown as any error is.
"use strict";
import { useState } from "preact/hooks";
import { get, post } from "../api.js";
import { Action, Empty, ErrorBox, html, useLoad } from "../ui.js";

const q = encodeURIComponent;

// The inputs one way of running it declares: [{key, description, required, secret, fallback, choices}].
// Keys are what the import's `values` are keyed by: the env var's or header's name, an argument's
// valueHint or flag, a {variable}'s name. An input with a fixed value asks only for its variables.
export function inputsOf(server, choice) {
  const [kind, index] = choice.split(":");
  const found = [];
  const add = (key, spec) => {
    if (!key || found.some((i) => i.key === key)) return;
    found.push({ key, description: spec.description || "", required: !!spec.isRequired, secret: !!spec.isSecret,
      fallback: spec.default || "", choices: spec.choices || [] });
  };
  const input = (key, spec) => {
    if (typeof spec.value === "string") Object.entries(spec.variables || {}).forEach(([name, v]) => add(name, v));
    else add(key, spec);
  };
  const way = (kind === "remote" ? server.remotes : server.packages)[Number(index)] || {};
  if (kind === "remote") {
    Object.entries(way.variables || {}).forEach(([name, v]) => add(name, v));
    (way.headers || []).forEach((h) => input(h.name, h));
  } else {
    (way.environmentVariables || []).forEach((e) => input(e.name, e));
    [...(way.runtimeArguments || []), ...(way.packageArguments || [])]
      .forEach((a) => input(a.type === "named" ? a.name : a.valueHint, a));
  }
  return found;
}

const describe = (way, kind) => (kind === "remote" ? `remote (${way.type}) ${way.url}`
  : `${way.registryType} package ${way.identifier}${way.version ? "@" + way.version : ""} (runs as a command)`);

function Importer({ registry, entry, onDone, onCancel }) {
  const server = entry.server;
  const [choice, setChoice] = useState(entry.choices[0]);
  const [name, setName] = useState(server.name.split("/").pop());
  const [values, setValues] = useState({});
  const [error, setError] = useState(null);
  const inputs = inputsOf(server, choice);
  const run = async () => {
    const given = Object.fromEntries(Object.entries(values).filter(([key, v]) => v !== "" && inputs.some((i) => i.key === key)));
    await post("/servers/import", { registry, server: server.name, version: server.version, name, choice, values: given });
    onDone(name);
  };
  const way = (c) => { const [k, i] = c.split(":"); return describe((k === "remote" ? server.remotes : server.packages)[Number(i)], k); };
  return html`<div id="registry-importer">
    <h3>${server.title || server.name} <span class="muted">${server.name} ${server.version}</span></h3>
    <p class="muted">${server.description}</p>
    <label>Name here<input id="registry-name" value=${name} onInput=${(e) => setName(e.target.value)} /></label>
    <label>Run it as<select id="registry-choice" value=${choice} onChange=${(e) => { setChoice(e.target.value); setValues({}); }}>
      ${entry.choices.map((c) => html`<option value=${c}>${way(c)}</option>`)}</select></label>
    ${inputs.map((i) => html`<label data-input=${i.key}>${i.key}${i.required ? " (required)" : ""}
      <span class="muted">${i.description}</span>
      <input type=${i.secret ? "password" : "text"} placeholder=${i.fallback} value=${values[i.key] || ""}
        onInput=${(e) => setValues({ ...values, [i.key]: e.target.value })} /></label>`)}
    <div class="toolbar">
      <${Action} id="registry-import" class="primary" onRun=${run} setError=${setError}>Import ${server.version}</${Action}>
      <button type="button" onClick=${onCancel}>Back</button></div>
    <${ErrorBox} error=${error} />
  </div>`;
}

export function RegistryImport({ onDone, onCancel }) {
  const { data: registries, error } = useLoad(() => get("/registries"), []);
  const [registry, setRegistry] = useState(null);
  const [text, setText] = useState("");
  const [found, setFound] = useState(null);
  const [entry, setEntry] = useState(null);
  const [failure, setFailure] = useState(null);
  const chosen = registry || (registries && Object.keys(registries)[0]);
  const search = async () => { setEntry(null); setFound(await get(`/registries/${q(chosen)}/servers?search=${q(text)}`)); };
  const pick = async (name) => setEntry(await get(`/registries/${q(chosen)}/entry?server=${q(name)}`));
  return html`<section class="panel" id="registry-panel">
    <h2>Add a server from a registry</h2>
    <${ErrorBox} error=${error || failure} />
    ${registries && html`<div class="toolbar">
      <select id="registry-select" value=${chosen} onChange=${(e) => setRegistry(e.target.value)}>
        ${Object.entries(registries).map(([n, url]) => html`<option value=${n} title=${url}>${n}</option>`)}</select>
      <input id="registry-search" placeholder="part of a server's name" value=${text} onInput=${(e) => setText(e.target.value)} />
      <${Action} id="registry-go" onRun=${search} setError=${setFailure}>Search</${Action}>
      <button type="button" onClick=${onCancel}>Close</button></div>`}
    ${entry ? html`<${Importer} registry=${chosen} entry=${entry} onDone=${onDone} onCancel=${() => setEntry(null)} />`
      : found && (found.servers.length === 0 ? html`<${Empty}>No server's name contains “${text}”.</${Empty}>`
        : html`<table id="registry-results"><thead><tr><th>server</th><th>version</th><th>description</th><th></th></tr></thead>
        <tbody>${found.servers.map(({ server }) => html`<tr data-registry-server=${server.name}>
          <td><strong>${server.title || server.name}</strong><br/><span class="muted">${server.name}</span></td>
          <td>${server.version}</td><td>${server.description}</td>
          <td><${Action} onRun=${() => pick(server.name)} setError=${setFailure}>Choose</${Action}></td></tr>`)}</tbody></table>`)}
  </section>`;
}

// Imported servers whose registry has a newer version (GET /registries/updates): nothing moves until a
// person approves one here (POST /servers/{name}/registry-update), as pinning's changes wait.
export function RegistryUpdates({ writable, onDone, onCancel }) {
  const { data, error, reload } = useLoad(() => get("/registries/updates"), []);
  const [failure, setFailure] = useState(null);
  const approve = async (u) => {
    await post(`/servers/${q(u.name)}/registry-update`, { version: u.latest });
    reload();
    onDone();
  };
  return html`<section class="panel" id="registry-updates">
    <div class="toolbar"><h2 style="margin:0">Registry updates</h2><button type="button" onClick=${onCancel}>Close</button></div>
    <${ErrorBox} error=${error || failure} />
    ${data && (data.length === 0 ? html`<${Empty}>Every imported server runs its registry's latest version.</${Empty}>`
      : html`<table><thead><tr><th>server</th><th>registry</th><th>pinned</th><th>latest</th><th></th></tr></thead>
      <tbody>${data.map((u) => html`<tr data-update=${u.name}><td><strong>${u.name}</strong><br/><span class="muted">${u.server}</span></td>
        <td>${u.registry}</td><td>${u.pinned}</td><td>${u.latest || html`<span class="muted">${u.error}</span>`}</td>
        <td>${writable && u.latest && html`<${Action} class="primary" onRun=${() => approve(u)} setError=${setFailure}>Approve ${u.latest}</${Action}>`}</td>
      </tr>`)}</tbody></table>`)}
  </section>`;
}
