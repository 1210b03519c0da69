// The playground's chat completion with tools: which of the key's tools the model is offered, what the
// key's mode means for their calls, and the answer: the calls the gateway ran (agent mode), the calls
// proposed to the caller (explicit), which the person may run as the key, the model's text, and every
// audit row the request left.
"use strict";
import { useEffect, useState } from "preact/hooks";
import { query } from "../api.js";
import { Action, Empty, ErrorBox, html, pretty } from "../ui.js";

export const MAX_OFFERED = 32; // the admin API's cap on the tools one playground chat offers

// the key's events since the request started: its rounds (llm_request) and the tool calls they led to
const ROWS = "SELECT event_id, kind, name, status, parent_id, round(latency_ms, 2) AS latency_ms FROM bastion.audit_events FINAL"
  + " WHERE key_id = {key_id:String} AND ts >= fromUnixTimestamp64Milli({since_ms:Int64}) ORDER BY ts, event_id LIMIT 100";

export function ModeNote({ record }) {
  if (!record) return null;
  const agent = record.agent;
  return html`<p class="notice" id="play-agent" data-mode=${agent ? "agent" : "explicit"}>${agent
    ? html`This key is in <strong>agent mode</strong>: the gateway runs the calls the model proposes that
        match <code>${agent.tools_to_auto_execute.join(", ")}</code> (as the key, audited) and asks the model again,
        at most ${agent.max_depth} rounds; other calls come back to you.`
    : html`This key is in <strong>explicit mode</strong>: the model's tool calls come back to you, none is run.
        (Agent mode is the key's setting: <code>agent</code> in the key's configuration.)`}</p>`;
}

// Checkboxes over the key's tools (as the gateway lists them for it); none is offered until picked.
export function OfferedTools({ tools, picked, setPicked }) {
  const [filter, setFilter] = useState("");
  if (!tools) return html`<p class="muted">List the key's tools to offer some to the model; none is offered otherwise.</p>`;
  if (!tools.length) return html`<${Empty}>This key may call no tool.</${Empty}>`;
  const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
  const shown = tools.filter((t) => words.every((w) => t.name.toLowerCase().includes(w))).slice(0, 200);
  const toggle = (name, on) => setPicked(on ? [...picked, name] : picked.filter((x) => x !== name));
  return html`<fieldset id="play-offer"><legend>Tools offered to the model (${picked.length} of at most ${MAX_OFFERED})</legend>
    ${tools.length > 10 && html`<input id="play-offer-search" type="search" placeholder="search the key's tools" aria-label="search the key's tools"
      value=${filter} onInput=${(e) => setFilter(e.target.value)} />`}
    <div class="scroll short">${shown.map((t) => html`<label class="inline"><input type="checkbox" data-tool=${t.name}
      checked=${picked.includes(t.name)} disabled=${!picked.includes(t.name) && picked.length >= MAX_OFFERED}
      onChange=${(e) => toggle(t.name, e.target.checked)} /><code>${t.name}</code></label>`)}</div></fieldset>`;
}

// The calls the gateway ran, from the answer's `bastion.transcript`, each with its `tool` message.
function ranCalls(transcript) {
  const results = new Map(transcript.filter((m) => m.role === "tool").map((m) => [m.tool_call_id, m.content]));
  return transcript.filter((m) => m.role === "assistant").flatMap((m) => (m.tool_calls || []).map((c) => ({
    id: c.id, name: c.function.name, arguments: c.function.arguments, result: results.get(c.id) ?? "(no result)" })));
}

function Calls({ id, calls }) {
  return html`<ol id=${id} class="calls">${calls.map((c) => html`<li data-call=${c.name}><code>${c.name}</code>
    <pre class="call-arguments">${pretty(c.arguments)}</pre>${c.result !== undefined && html`<pre class="call-result">${c.result}</pre>`}
    ${c.error && html`<div class="error call-error">${c.error}</div>`}</li>`)}</ol>`;
}

// `execute(toolCall)` runs one proposed call as the key (/v1/mcp/tool/execute); `onExecuted(n)` says how many ran.
export function ChatAnswer({ answer, execute, onExecuted }) {
  const [outcomes, setOutcomes] = useState({}); // call id -> the gateway's answer to running it
  const [error, setError] = useState(null);
  const completion = answer.result;
  const message = ((completion.choices || [])[0] || {}).message || {};
  const loop = completion.bastion || null;
  const ran = loop ? ranCalls(loop.transcript || []) : [];
  const outcome = (id) => (outcomes[id] ? (outcomes[id].ok ? { result: outcomes[id].result.content } : { error: outcomes[id].error }) : {});
  const proposed = (message.tool_calls || []).map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments, ...outcome(c.id) }));
  const runAll = async () => {
    const done = {};
    for (const call of message.tool_calls) done[call.id] = await execute(call); // in the order proposed, as a client would
    setOutcomes(done);
    onExecuted(message.tool_calls.length);
  };
  return html`
    ${ran.length > 0 && html`<h3>Tool calls the gateway ran</h3><${Calls} id="play-ran" calls=${ran} />`}
    ${proposed.length > 0 && html`<h3>Tool calls proposed to you</h3><p class="muted">${loop
      ? `The gateway may not run these on its own (stopped: ${loop.stopped}).` : "The gateway runs none of them itself (explicit mode)."}
      ${Object.keys(outcomes).length ? " Run as the key: each result is below its arguments." : ""}</p>
      <${Calls} id="play-proposed" calls=${proposed} /><${ErrorBox} error=${error} />
      ${!Object.keys(outcomes).length && html`<div class="toolbar"><${Action} id="play-execute" onRun=${runAll} setError=${setError}>Run
        ${proposed.length === 1 ? " it" : " them"} as the key</${Action}><span class="muted">through <code>/v1/mcp/tool/execute</code>:
        policy, budget, audit</span></div>`}`}
    <h3>Answer</h3><div id="play-chat-answer" class="notice">${message.content || "(no text)"}</div>
    ${loop && html`<p class="muted" id="play-rounds">${loop.depth} model round${loop.depth === 1 ? "" : "s"}</p>`}`;
}

// Every audit row of the request: one per model round, one per tool call it ran (under its round).
export function ChatAuditRows({ answer, executed }) {
  const loop = answer.result.bastion;
  const expected = (loop ? loop.depth + ranCalls(loop.transcript || []).length : 1) + executed;
  const [rows, setRows] = useState(null);
  useEffect(() => {
    let live = true;
    (async () => {
      for (let attempt = 0; live && attempt < 20; attempt++) { // the rows land within moments of the answer
        const found = await query(ROWS, { key_id: answer.key_id, since_ms: Math.floor(answer.started_at * 1000) });
        if (live) setRows(found);
        if (found.length >= expected) return;
        await new Promise((done) => setTimeout(done, 500));
      }
    })().catch(() => live && setRows([]));
    return () => { live = false; };
  }, [answer, executed]);
  if (!rows) return html`<p class="muted">looking for its audit rows…</p>`;
  // ids share their node's prefix: rows are told apart by their place in this list, their events by a title
  const place = new Map(rows.map((r, i) => [r.event_id, i + 1]));
  const partOf = (id) => (!id ? "" : place.has(id) ? `#${place.get(id)}` : id);
  return html`<table id="play-audit-rows"><thead><tr><th>#</th><th>kind</th><th>name</th><th>status</th><th>part of</th>
    <th class="num">ms</th></tr></thead><tbody>${rows.map((r, i) => html`<tr data-kind=${r.kind} data-name=${r.name} data-event=${r.event_id}
      data-parent=${r.parent_id || ""}><td title=${r.event_id}>#${i + 1}</td><td>${r.kind}</td><td><code>${r.name}</code></td>
      <td class=${"st-" + r.status}>${r.status}</td><td>${partOf(r.parent_id)}</td><td class="num">${r.latency_ms}</td></tr>`)}</tbody></table>`;
}
