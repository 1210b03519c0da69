// Export: the configuration the role may read, as a file `bastion config apply` takes (YAML; written in
// its JSON flow style, which YAML includes). No secret is in it: a server's secret values become
// ${VARIABLES} the file expands when applied, an LLM provider's key an api_key_env, and keys are named
// by their sha256 (key_sha256), never their secret. Import (./import.js) takes it back with the masks
// left as read instead: the admin API expands nothing, and `***` keeps a stored secret for the
// destination it was stored for (docs/admin-api.md, "Secrets are bound to their destination").
"use strict";
import { useState } from "preact/hooks";
import { get } from "../api.js";
import { Action, ErrorBox, html } from "../ui.js";
import { Import, mayImport } from "./import.js";

const MASK = "***";
const variable = (...parts) => parts.join("_").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
const defined = (record, fields) => Object.fromEntries(fields.filter((f) => record[f] != null).map((f) => [f, record[f]]));

// every masked string in a server entry becomes ${BASTION_SECRET_<SERVER>_<WHERE>} (`needed` null: stays masked)
function unmasked(value, server, path, needed) {
  if (value === MASK && needed) { const name = variable("BASTION_SECRET", server, ...path); needed.push(name); return `\${${name}}`; }
  if (Array.isArray(value)) return value.map((v, i) => unmasked(v, server, [...path, String(i)], needed));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, unmasked(v, server, [...path, k], needed)]));
  }
  return value;
}

// masks: leave `***` as read (for the import through the admin API) instead of naming variables
export async function exportConfig(access, masks = false) {
  const needed = masks ? null : [];
  const config = {};
  const read = (permission, path) => (access.can(permission) ? get(path) : Promise.resolve(null));
  const [servers, keys, groups, customers, teams, users, providers] = await Promise.all([
    read("servers:read", "/servers"), read("keys:read", "/keys"), read("groups:read", "/groups"),
    read("directory:read", "/customers"), read("directory:read", "/teams"), read("directory:read", "/users"),
    read("providers:read", "/llm-providers"),
  ]);
  if (servers) config.mcpServers = Object.fromEntries(servers.map((s) => [s.name, unmasked(s.config, s.name, [], needed)]));
  if (keys) {
    config.keys = keys.filter((k) => !k.revoked).map((k) => ({
      name: k.name, key_sha256: k.id, tools: k.grants, groups: k.groups,
      ...defined({ user: k.user_id, team: k.team_id, customer: k.customer_id, budget: k.budget, rate_limit: k.rate_limit, agent: k.agent }, ["user", "team", "customer", "budget", "rate_limit", "agent"]),
      code_mode: k.code_mode, content_logging: k.content_logging,
    }));
  }
  if (groups) config.groups = groups.map((g) => defined(g, ["id", "description", "tools"]));
  if (customers) config.customers = customers.map((c) => defined(c, ["id", "name", "groups", "budget"]));
  if (teams) config.teams = teams.map((t) => defined(t, ["id", "name", "customer_id", "groups", "budget"]));
  if (users) config.users = users.map((u) => defined(u, ["id", "name", "team_id", "groups", "rate_limit"]));
  if (providers) {
    config.llm = { providers: Object.fromEntries(providers.map((p) => {
      const entry = Object.fromEntries(Object.entries(p.config).filter(([, v]) => v !== null));
      if (entry.api_key === MASK && needed) { delete entry.api_key; entry.api_key_env = variable("BASTION_LLM", p.name, "API_KEY"); needed.push(entry.api_key_env); }
      return [p.name, entry];
    })) };
  }
  const header = [
    `# Bastion configuration exported by the console (${new Date().toISOString()}, ${access.principal}).`,
    "# Apply it with `bastion config apply FILE`. It holds no secret: keys are named by their sha256,",
    needed
      ? `# and these variables must hold the secrets when it is applied: ${needed.length ? needed.join(", ") : "none"}.`
      : "# and `***` keeps each stored secret where it is (for the same URL or command only).",
  ];
  return `${header.join("\n")}\n${JSON.stringify(config, null, 2)}\n`;
}

export function Export({ access }) {
  const [text, setText] = useState("");
  const [error, setError] = useState(null);
  const [draft, setDraft] = useState(null); // the export handed to the import form to edit
  const download = () => URL.createObjectURL(new Blob([text], { type: "application/yaml" }));
  return html`<div><section class="panel"><h2>Export the configuration</h2>
    <p>Servers, keys (without secrets), groups, customers, teams, users and LLM providers your role may read, as a
      file <code>bastion config apply</code> takes. Secrets stay out: the file names the variables that must hold them.</p>
    <div class="toolbar"><${Action} id="export-run" class="primary" onRun=${async () => setText(await exportConfig(access))} setError=${setError}>Export</${Action}>
      ${text && html`<a id="export-download" href=${download()} download="bastion-config.yaml">Download bastion-config.yaml</a>`}
      ${text && mayImport(access) && html`<button type="button" id="export-edit" onClick=${async () => setDraft({ text: await exportConfig(access, true) })}>Edit and import it</button>`}</div>
    <${ErrorBox} error=${error} />
    ${text && html`<textarea id="export-text" rows="24" readonly value=${text}></textarea>`}
  </section>
  ${mayImport(access) && html`<${Import} draft=${draft} />`}</div>`;
}
