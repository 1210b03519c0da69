// Servers: health, breaker, last error, tools, latency; add, edit, remove; a remote server is tested
// before it is saved (POST /console/servers/test), a stdio one is watched until the executor reports.
"use strict";
import { useEffect, useState } from "preact/hooks";
import { api, get, post } from "../api.js";
import { Action, Empty, ErrorBox, html, parseJson, pretty, useLoad } from "../ui.js";
import { RegistryImport, RegistryUpdates } from "./registry.js";

const EXAMPLE = '{\n  "url": "https://mcp.example.com/mcp",\n  "headers": {"Authorization": "Bearer ..."}\n}';

// What the executor speaks to it with (ServerConfig.transport): an OpenAPI server is neither stdio nor MCP over HTTP
export const transportOf = (config) => (config.openapi ? "openapi" : config.command ? "stdio" : config.type === "sse" ? "sse" : "http");

async function load(access) {
  const servers = await get("/servers");
  let latency = {};
  if (access.can("analytics:read")) {
    try {
      const answer = await get("/analytics/panels/servers");
      latency = Object.fromEntries(answer.rows.map((r) => [r[0], { calls: r[1], errorRate: r[2], p95: r[3] }]));
    } catch (_) { latency = {}; } // the audit store may be down: the servers still show
  }
  return { servers, latency };
}

function Editor({ editing, onDone, onCancel }) {
  const [name, setName] = useState(editing ? editing.name : "");
  const [text, setText] = useState(editing ? pretty(editing.config) : EXAMPLE);
  const [error, setError] = useState(null);
  const [probe, setProbe] = useState(null);
  const config = () => parseJson(text, "the server entry");
  const test = async () => { setProbe(null); setProbe(await post("/console/servers/test", { name, config: config() })); };
  const save = async () => {
    if (editing) await api("PUT", `/servers/${encodeURIComponent(name)}`, { config: config() });
    else await post("/servers", { name, config: config() });
    onDone(name);
  };
  return html`<section class="panel" id="server-editor">
    <h2>${editing ? `Edit ${editing.name}` : "Add a server"}</h2>
    <label>Name<input id="server-name" value=${name} disabled=${!!editing} onInput=${(e) => setName(e.target.value)} /></label>
    <label class="wide">
      <span id="server-config-help">Entry (one <code>mcpServers</code> entry: <code>url</code> and <code>headers</code>, or <code>command</code>,${" "}
        <code>args</code>, <code>env</code>; or <code>openapi</code>)</span>
      <textarea id="server-config" rows="8" value=${text} onInput=${(e) => setText(e.target.value)}></textarea></label>
    <div class="toolbar">
      <${Action} id="server-test" onRun=${test} setError=${setError}>Test connection</${Action}>
      <${Action} id="server-save" class="primary" onRun=${save} setError=${setError}>Save</${Action}>
      <button type="button" onClick=${onCancel}>Cancel</button>
    </div>
    <${ErrorBox} error=${error} />
    ${probe && (probe.ok
      ? html`<div class="notice" id="server-probe">Connected (${probe.protocol_version || "?"}): ${probe.tools.length} tools — ${probe.tools.join(", ")}</div>`
      : html`<div class="error" id="server-probe">Connection failed: ${probe.error}</div>`)}
  </section>`;
}

export function Servers({ access }) {
  const { data, error, reload } = useLoad(() => load(access), []);
  const [editing, setEditing] = useState(null); // null, "new", "registry", "updates" or a server
  const [failure, setFailure] = useState(null);
  const writable = access.can("servers:write");
  // a server just saved is pending until an executor reports on it: watch it until then
  const pending = !!data && data.servers.some((s) => s.status === "pending");
  useEffect(() => {
    if (!pending) return undefined;
    const timer = setTimeout(reload, 1500);
    return () => clearTimeout(timer);
  }, [pending, data]);
  const remove = async (server) => {
    if (!confirm(`Remove ${server.name}? Its tools disappear from every catalog.`)) return;
    await api("DELETE", `/servers/${encodeURIComponent(server.name)}`);
    reload();
  };
  const rows = data ? data.servers : [];
  return html`
    ${editing === "registry" && html`<${RegistryImport} onDone=${() => { setEditing(null); reload(); }} onCancel=${() => setEditing(null)} />`}
    ${editing === "updates" && html`<${RegistryUpdates} writable=${writable} onDone=${reload} onCancel=${() => setEditing(null)} />`}
    ${editing && editing !== "registry" && editing !== "updates" && html`<${Editor} editing=${editing === "new" ? null : editing}
      onDone=${() => { setEditing(null); reload(); }} onCancel=${() => setEditing(null)} />`}
    <section class="panel">
      <div class="toolbar"><h2 style="margin:0">Servers</h2>
        <button type="button" onClick=${reload}>Refresh</button>
        ${writable && html`<button type="button" class="primary" id="server-add" onClick=${() => setEditing("new")}>Add a server</button>
          <button type="button" id="server-from-registry" onClick=${() => setEditing("registry")}>From a registry</button>`}
        <button type="button" id="server-updates" onClick=${() => setEditing("updates")}>Registry updates</button></div>
      <${ErrorBox} error=${error || failure} />
      ${data && !rows.length && html`<${Empty}>No upstream server yet.${writable ? " Add one: its tools appear in the catalog once the executor connects." : ""}</${Empty}>`}
      ${rows.length > 0 && html`<table id="servers-table"><thead><tr><th></th><th>server</th><th>transport</th><th>status</th>
        <th>breaker</th><th>last error</th><th class="num">tools</th><th class="num">calls</th><th class="num">p95 ms</th><th></th></tr></thead>
        <tbody>${rows.map((s) => {
          const seen = data.latency[s.name] || {};
          return html`<tr data-server=${s.name}>
            <td><span class=${"dot h-" + (s.health || s.status)} title=${s.health || s.status}></span></td>
            <td><strong>${s.name}</strong></td>
            <td data-transport>${transportOf(s.config)}</td>
            <td>${s.health || s.status}${s.authorize_url && html` · <a href=${s.authorize_url} target="_blank" rel="noopener">authorize</a>`}</td>
            <td>${s.breaker ? `${s.breaker.state}${s.breaker.failures ? ` (${s.breaker.failures} failures)` : ""}` : ""}</td>
            <td class="muted">${s.error || ""}</td>
            <td class="num">${s.tools}</td><td class="num">${seen.calls ?? ""}</td><td class="num">${seen.p95 ?? ""}</td>
            <td>${writable && html`<button type="button" onClick=${() => setEditing(s)}>Edit</button>
              <${Action} class="danger" onRun=${() => remove(s)} setError=${setFailure}>Remove</${Action}>`}</td>
          </tr>`;
        })}</tbody></table>`}
    </section>`;
}
