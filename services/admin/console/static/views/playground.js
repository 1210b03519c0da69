// Playground: act as a key through the gateway's real /mcp (policy, budgets, audit: a real call), with a
// form generated from the tool's input schema, or send a chat completion offering some of the key's tools
// through its /v1 (chat.js); shows the answer and the request's own audit rows, and renders the MCP App a
// tool names (app_frame.js).
"use strict";
import { useEffect, useState } from "preact/hooks";
import { get, post, query, secrets } from "../api.js";
import { Action, Empty, ErrorBox, html, parseJson, pretty, useLoad } from "../ui.js";
import { takeReplay } from "./replay.js";
import { EventDetail, eventById } from "./traffic.js";
import { ChatAnswer, ChatAuditRows, ModeNote, OfferedTools } from "./chat.js";
import { AppFrame, appOf } from "./app_frame.js";

const FIND = "SELECT event_id FROM bastion.audit_events FINAL WHERE key_id = {key_id:String} AND name = {tool:String}"
  + " AND ts >= fromUnixTimestamp64Milli({since_ms:Int64}) ORDER BY ts LIMIT 1"; // the key's first such call since this one started

// strings that are programs or queries get a text area (Code Mode's `code`)
const MULTILINE = new Set(["code", "script", "source", "sql", "query"]);

// One input per top-level property; objects and arrays are JSON text. Returns [inputs, values -> arguments].
function fieldsOf(schema) {
  const properties = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  return Object.entries(properties).map(([name, spec]) => ({ name, spec: spec || {}, required: required.has(name) }));
}

function argumentsOf(fields, values) {
  const out = {};
  for (const { name, spec, required } of fields) {
    const raw = values[name];
    const type = Array.isArray(spec.type) ? spec.type[0] : spec.type;
    if (type === "boolean") { if (raw !== undefined) out[name] = !!raw; continue; }
    if (raw === undefined || raw === "") { if (required) throw new Error(`${name} is required`); continue; }
    if (type === "integer" || type === "number") out[name] = Number(raw);
    else if (type === "object" || type === "array") out[name] = parseJson(raw, name);
    else out[name] = raw;
  }
  return out;
}

// The form's values for recorded arguments (objects and arrays as JSON text, as the form takes them).
function valuesOf(fields, args) {
  const values = {};
  for (const { name, spec } of fields) {
    if (!args || args[name] === undefined) continue;
    const type = Array.isArray(spec.type) ? spec.type[0] : spec.type;
    values[name] = type === "object" || type === "array" ? JSON.stringify(args[name], null, 2) : args[name];
  }
  return values;
}

function Field({ field, value, onValue }) {
  const { name, spec, required } = field;
  const type = Array.isArray(spec.type) ? spec.type[0] : spec.type;
  const id = "arg-" + name;
  // the schema's default is what the tool uses when the field is left empty: said, and shown as the placeholder
  const fallback = spec.default === undefined ? undefined : typeof spec.default === "string" ? spec.default : JSON.stringify(spec.default);
  const label = html`<span>${name}${required ? " *" : ""} <span class="muted">${type || ""}${spec.description ? " — " + spec.description : ""}</span>${fallback !== undefined
    ? html` <span class="muted" data-default=${name}>(default: ${fallback})</span>` : ""}</span>`;
  if (spec.enum) return html`<label style="display:flex">${label}<select id=${id} value=${value ?? ""} onChange=${(e) => onValue(e.target.value)}>
    <option value=""></option>${spec.enum.map((v) => html`<option value=${v}>${String(v)}</option>`)}</select></label>`;
  if (type === "boolean") return html`<label class="inline"><input id=${id} type="checkbox" checked=${!!value} onChange=${(e) => onValue(e.target.checked)} />${label}</label>`;
  if (type === "object" || type === "array" || MULTILINE.has(name)) return html`<label style="display:flex">${label}<textarea id=${id} rows="3" value=${value ?? ""} onInput=${(e) => onValue(e.target.value)}></textarea></label>`;
  return html`<label style="display:flex">${label}<input id=${id} type=${type === "integer" || type === "number" ? "number" : "text"}
    value=${value ?? ""} placeholder=${fallback ?? ""} onInput=${(e) => onValue(e.target.value)} /></label>`;
}

export function Playground({ access, params }) {
  const keys = useLoad(() => get("/keys"), []);
  const [keyId, setKeyId] = useState(params.get("key") || "");
  const [secret, setSecret] = useState(secrets.get(params.get("key") || "") || "");
  const [tools, setTools] = useState(null);
  const [tool, setTool] = useState(null);
  const [values, setValues] = useState({});
  const [answer, setAnswer] = useState(null);
  const [row, setRow] = useState(null);
  const [error, setError] = useState(null);
  const [replaying] = useState(takeReplay); // a call opened from live traffic, if any
  useEffect(() => { if (secrets.has(keyId)) setSecret(secrets.get(keyId)); }, [keyId]);
  const list = async () => {
    setTools(null); setTool(null); setAnswer(null); setRow(null); setOffered([]);
    const found = await post("/console/playground/tools", { secret });
    if (!found.ok) throw new Error(`the gateway refused: ${found.error}`);
    setTools(found.tools);
  };
  useEffect(() => { if (replaying && secret) list().catch(setError); }, []); // the key's secret is known in this tab
  useEffect(() => {
    if (!replaying || !tools) return;
    const found = tools.find((t) => t.name === replaying.tool);
    if (!found) { setError(new Error(`this key may not call ${replaying.tool} now`)); return; }
    setTool(found);
    setValues(valuesOf(fieldsOf(found.inputSchema), replaying.arguments));
  }, [tools]);
  const [mode, setMode] = useState("tool");
  const [model, setModel] = useState("");
  const [message, setMessage] = useState("");
  const [offered, setOffered] = useState([]);
  const [executed, setExecuted] = useState(0); // proposed calls the person ran since the answer
  const models = useLoad(async () => (access.can("providers:read")
    ? (await get("/llm-providers").catch(() => [])).flatMap((p) => p.config.models) : []), []);
  const findRow = async (called, name) => {
    if (!access.can("analytics:read")) return;
    for (let attempt = 0; attempt < 20; attempt++) { // the audit row lands within moments of the call
      const rows = await query(FIND, { key_id: called.key_id, tool: name, since_ms: Math.floor(called.started_at * 1000) });
      if (rows.length) { setRow(await eventById(access, rows[0].event_id)); return; }
      await new Promise((done) => setTimeout(done, 500));
    }
    setRow({ missing: true });
  };
  const call = async () => {
    setAnswer(null); setRow(null);
    const args = argumentsOf(fieldsOf(tool.inputSchema), values);
    const called = await post("/console/playground/call", { secret, tool: tool.name, arguments: args });
    setAnswer({ ...called, arguments: args, app: called.ok ? appOf(tool, called.result) : null });
    await findRow(called, tool.name);
  };
  const execute = (toolCall) => post("/console/playground/execute", { secret, tool_call: toolCall });
  const chat = async () => {
    setAnswer(null); setRow(null); setExecuted(0);
    const called = await post("/console/playground/chat", { secret, model, message, tools: offered });
    setAnswer(called);
    await findRow(called, model); // a refused request (budget, rate limit) is audited too
  };
  const active = (keys.data || []).filter((k) => !k.revoked);
  const record = active.find((k) => k.id === keyId);
  const fields = tool ? fieldsOf(tool.inputSchema) : [];
  return html`<div class="split">
    <section class="panel"><h2>Playground</h2>
      <p class="muted">A real request through the gateway as the key (<code>/mcp</code> for a tool, <code>/v1/chat/completions</code> for
        a chat): its grants, budget and rate limits apply, and it is audited.</p>
      ${replaying && html`<p class="notice" id="play-replay">Replaying <code>${replaying.tool}</code>${secret ? ""
        : ": paste the key's secret, then list its tools"}; check the arguments, then call it.</p>`}
      <label>Key<select id="play-key" value=${keyId} onChange=${(e) => setKeyId(e.target.value)}>
        <option value="">choose a key…</option>${active.map((k) => html`<option value=${k.id}>${k.name}</option>`)}</select></label>
      <label>Its secret ${secrets.has(keyId) ? "(issued in this tab)" : "(shown once when issued)"}
        <input id="play-secret" type="password" size="36" autocomplete="off" value=${secret} onInput=${(e) => setSecret(e.target.value)} /></label>
      <label>Try<select id="play-mode" value=${mode} onChange=${(e) => { setMode(e.target.value); setAnswer(null); setRow(null); }}>
        <option value="tool">a tool</option><option value="chat">a chat completion</option></select></label>
      <${ErrorBox} error=${error} />
      ${mode === "chat" && html`<form id="play-chat" onSubmit=${(e) => e.preventDefault()}>
        <label>Model<input id="play-model" list="play-models" value=${model} onInput=${(e) => setModel(e.target.value)} /></label>
        <datalist id="play-models">${(models.data || []).map((m) => html`<option value=${m} />`)}</datalist>
        <label style="display:flex">Message<textarea id="play-message" rows="4" value=${message} onInput=${(e) => setMessage(e.target.value)}></textarea></label>
        <${ModeNote} record=${record} />
        <div class="toolbar"><${Action} id="play-list" onRun=${list} setError=${setError} disabled=${!secret}>List its tools</${Action}></div>
        <${OfferedTools} tools=${tools} picked=${offered} setPicked=${setOffered} />
        <div class="toolbar"><${Action} id="play-send" class="primary" onRun=${chat} setError=${setError} disabled=${!secret || !model || !message}>Send</${Action}></div>
      </form>`}
      ${mode === "tool" && html`<div class="toolbar"><${Action} id="play-list" onRun=${list} setError=${setError} disabled=${!secret}>List its tools</${Action}></div>`}
      ${mode === "tool" && tools && !tools.length && html`<${Empty}>This key may call no tool.</${Empty}>`}
      ${mode === "tool" && tools && tools.length > 0 && html`<label>Tool<select id="play-tool" value=${tool ? tool.name : ""}
          onChange=${(e) => { setTool(tools.find((t) => t.name === e.target.value) || null); setValues({}); setAnswer(null); setRow(null); }}>
        <option value="">choose a tool…</option>${tools.map((t) => html`<option value=${t.name}>${t.name}</option>`)}</select></label>`}
      ${mode === "tool" && tool && html`<form id="play-form" onSubmit=${(e) => e.preventDefault()}><p>${tool.description || ""}</p>
        ${fields.map((f) => html`<${Field} field=${f} value=${values[f.name]} onValue=${(v) => setValues({ ...values, [f.name]: v })} />`)}
        ${!fields.length && html`<p class="muted">No arguments.</p>`}
        <div class="toolbar"><${Action} id="play-call" class="primary" onRun=${call} setError=${setError}>Call</${Action}></div></form>`}
    </section>
    <section class="panel"><h2>Result</h2>
      ${!answer && html`<${Empty}>The tool's answer and its audit row show here.</${Empty}>`}
      ${answer && !answer.ok && html`<div class="error" id="play-error">${answer.error}</div>`}
      ${answer && answer.ok && mode === "chat" && html`<${ChatAnswer} answer=${answer} execute=${execute} onExecuted=${setExecuted} />`}
      ${answer && answer.ok && mode === "chat" && html`<details id="play-completion"><summary>The completion as the gateway answered it</summary>
        <pre>${pretty(answer.result)}</pre></details>`}
      ${answer && answer.ok && mode === "tool" && html`<div id="play-result" data-is-error=${answer.result.isError ? "1" : "0"}>
        ${answer.result.isError && html`<div class="error">The tool reported an error.</div>`}<pre>${pretty(answer.result)}</pre></div>`}
      ${answer && answer.ok && mode === "tool" && answer.app && html`<h3>Its app</h3><${AppFrame} key=${answer.started_at}
        secret=${secret} uri=${answer.app} input=${answer.arguments} result=${answer.result} />`}
      ${answer && answer.ok && mode === "chat" && access.can("analytics:read") && html`<h3>Audit rows</h3><${ChatAuditRows} answer=${answer} executed=${executed} />`}
      ${answer && html`<h3>${mode === "chat" ? "The first round's audit row" : "Audit row"}</h3>${!access.can("analytics:read") ? html`<p class="muted">Your role does not read the audit trail.</p>`
        : row === null ? html`<p class="muted">looking for it…</p>` : row.missing ? html`<p class="error">Not in the audit store yet; see Live traffic.</p>`
        : html`<div id="play-audit" data-event=${row.event_id}><${EventDetail} access=${access} event=${row} /></div>`}`}
    </section></div>`;
}
