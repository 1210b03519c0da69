// Live traffic: the audit trail's newest events with filters (key, server, tool, status, time),
// followed every few seconds; an event's detail: latency split, trace id, the Code Mode run or LLM
// request it belongs to, and its arguments and result only for a role with audit:payloads.
"use strict";
import { useEffect, useState } from "preact/hooks";
import { query } from "../api.js";
import { Empty, ErrorBox, html, onEnter, pretty, useLoad, when } from "../ui.js";
import { replayInPlayground } from "./replay.js";

const LIST = `SELECT event_id, toUnixTimestamp64Milli(ts) AS ts_ms, kind, key_name, server, tool, name, status, error_kind,
  round(latency_ms, 2) AS latency_ms FROM bastion.audit_events FINAL
  WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
    AND ({key:String} = '' OR key_name = {key:String}) AND ({server:String} = '' OR server = {server:String})
    AND ({tool:String} = '' OR tool = {tool:String} OR name = {tool:String}) AND ({status:String} = '' OR status = {status:String})
  ORDER BY ts DESC, event_id DESC LIMIT 200`;

const DETAIL = `event_id, toUnixTimestamp64Milli(ts) AS ts_ms, kind, trace_id, key_name, key_id, user_id, team_id, customer_id,
  server, tool, name, status, error_kind, error_code, error, latency_ms, upstream_ms, request_bytes, response_bytes, cost_usd,
  parent_id, actor, action, target`;
const PAYLOADS = ", arguments, result, before, after, arguments_sha256, result_sha256"; // audit:payloads only

const RANGES = [["300", "last 5 minutes"], ["3600", "last hour"], ["86400", "last 24 hours"], ["604800", "last 7 days"]];

export async function eventById(access, id) {
  const columns = DETAIL + (access.can("audit:payloads") ? PAYLOADS : "");
  const rows = await query(`SELECT ${columns} FROM bastion.audit_events FINAL WHERE event_id = {id:String} LIMIT 1`, { id });
  return rows[0] || null;
}

export function EventDetail({ access, event }) {
  const children = useLoad(() => query(
    "SELECT event_id, name, status, round(latency_ms, 2) AS latency_ms FROM bastion.audit_events FINAL"
    + " WHERE parent_id = {id:String} ORDER BY ts LIMIT 100", { id: event.event_id }), [event.event_id]);
  const gateway = event.upstream_ms != null ? Math.max(0, event.latency_ms - event.upstream_ms) : null;
  const fields = [
    ["time", when(event.ts_ms / 1000)], ["kind", event.kind], ["status", event.status],
    ["error", [event.error_kind, event.error_code, event.error].filter((x) => x != null && x !== "").join(" · ")],
    ["key", event.key_name], ["user / team / customer", [event.user_id, event.team_id, event.customer_id].filter(Boolean).join(" / ")],
    ["server / tool", event.server ? `${event.server} / ${event.tool}` : event.tool], ["gateway name", event.name],
    ["latency", `${Number(event.latency_ms).toFixed(2)} ms total` + (gateway != null
      ? ` = ${Number(event.upstream_ms).toFixed(2)} ms upstream + ${gateway.toFixed(2)} ms gateway` : "")],
    ["bytes in / out", `${event.request_bytes} / ${event.response_bytes}`], ["cost USD", event.cost_usd ?? ""],
    ["trace id", event.trace_id || "(tracing off)"], ["part of", event.parent_id || ""],
    ["admin change", [event.actor, event.action, event.target].filter(Boolean).join(" · ")], ["event id", event.event_id],
  ];
  const replayable = event.kind === "tool_call" && event.name && access.can("keys:read"); // the playground's permission
  return html`<div id="event-detail">
    ${replayable && html`<div class="toolbar"><button type="button" id="event-replay" onClick=${() => replayInPlayground(event)}>
      Replay in the playground</button>${access.can("audit:payloads") ? "" : html`<span class="muted">with the arguments
      filled in for a role with <code>audit:payloads</code></span>`}</div>`}
    <table><tbody>${fields.filter(([, v]) => v !== "" && v != null).map(([k, v]) => html`<tr><th>${k}</th><td>${v}</td></tr>`)}</tbody></table>
    ${access.can("audit:payloads")
      ? html`<h3>Arguments</h3>${event.arguments != null ? html`<pre id="event-arguments">${pretty(event.arguments)}</pre>` : html`<p class="muted">not recorded (the key logs no content)</p>`}
        <h3>Result</h3>${event.result != null ? html`<pre id="event-result">${pretty(event.result)}</pre>` : html`<p class="muted">not recorded</p>`}
        ${event.before != null && html`<h3>Before</h3><pre>${pretty(event.before)}</pre>`}${event.after != null && html`<h3>After</h3><pre>${pretty(event.after)}</pre>`}`
      : html`<p class="muted" id="event-payloads-hidden">Arguments and results (and their digests) are shown to roles
          with <code>audit:payloads</code> (auditors).</p>`}
    ${children.data && children.data.length > 0 && html`<h3>Calls made inside it</h3><table><tbody>${children.data.map((c) =>
      html`<tr><td><code>${c.name}</code></td><td class=${"st-" + c.status}>${c.status}</td><td class="num">${c.latency_ms} ms</td></tr>`)}</tbody></table>`}
  </div>`;
}

export function Traffic({ access, params }) {
  const [filters, setFilters] = useState({ key: params.get("key") || "", server: "", tool: "", status: "", range: "3600" });
  const [follow, setFollow] = useState(true);
  const [tick, setTick] = useState(0);
  const [open, setOpen] = useState(null);
  const detail = useLoad(() => (open ? eventById(access, open) : Promise.resolve(null)), [open]);
  const { data, error } = useLoad(() => query(LIST, {
    since_ms: Date.now() - Number(filters.range) * 1000, key: filters.key, server: filters.server, tool: filters.tool, status: filters.status,
  }), [filters, tick]);
  useEffect(() => {
    if (!follow) return undefined;
    const timer = setInterval(() => setTick((t) => t + 1), 3000);
    return () => clearInterval(timer);
  }, [follow]);
  const set = (name) => (e) => setFilters({ ...filters, [name]: e.target.value });
  const rows = data || [];
  return html`<div class="split">
    <section class="panel"><div class="toolbar"><h2 style="margin:0">Live traffic</h2>
        <label>Key<input id="filter-key" size="12" value=${filters.key} onChange=${set("key")} /></label>
        <label>Server<input id="filter-server" size="10" value=${filters.server} onChange=${set("server")} /></label>
        <label>Tool<input id="filter-tool" size="14" value=${filters.tool} onChange=${set("tool")} /></label>
        <label>Status<select id="filter-status" value=${filters.status} onChange=${set("status")}>
          ${["", "ok", "tool_error", "error", "denied"].map((s) => html`<option value=${s}>${s || "any"}</option>`)}</select></label>
        <label>Time<select value=${filters.range} onChange=${set("range")}>${RANGES.map(([v, t]) => html`<option value=${v}>${t}</option>`)}</select></label>
        <label class="inline"><input type="checkbox" checked=${follow} onChange=${(e) => setFollow(e.target.checked)} />follow</label></div>
      <${ErrorBox} error=${error} />
      ${data && !rows.length && html`<${Empty}>No event in this range with these filters. Calls appear here within seconds.</${Empty}>`}
      ${rows.length > 0 && html`<div class="scroll"><table id="traffic-table"><thead><tr><th>time</th><th>key</th><th>server</th><th>tool</th>
        <th>status</th><th class="num">ms</th></tr></thead><tbody>${rows.map((r) => html`<tr class=${"clickable" + (open === r.event_id ? " selected" : "")}
          data-event=${r.event_id} data-tool=${r.name} tabindex="0" onClick=${() => setOpen(r.event_id)} onKeyDown=${(e) => onEnter(e, () => setOpen(r.event_id))}>
          <td>${when(r.ts_ms / 1000)}</td><td>${r.key_name || (r.kind === "admin" ? "(admin API)" : "")}</td><td>${r.server}</td><td><code>${r.tool}</code></td>
          <td class=${"st-" + r.status}>${r.status}${r.error_kind && r.error_kind !== r.status ? ` (${r.error_kind})` : ""}</td><td class="num">${r.latency_ms}</td></tr>`)}</tbody></table></div>`}
    </section>
    <section class="panel"><h2>Event</h2>
      <${ErrorBox} error=${detail.error} />
      ${detail.data ? html`<${EventDetail} access=${access} event=${detail.data} />` : html`<${Empty}>Pick an event to see its detail.</${Empty}>`}
    </section></div>`;
}
