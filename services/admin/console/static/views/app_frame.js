// An MCP App (io.modelcontextprotocol/ui) in the playground: the app a tool names (`_meta.ui.resourceUri`)
// is read through the gateway as the key, served by the admin service as a document of its own under the
// policy its `_meta.ui.csp` declares (a one-time frame URL), framed with sandbox="allow-scripts" (an opaque
// origin: no cookie, no storage, nothing of the console), and spoken to over postMessage as the ext-apps
// spec's host: `ui/initialize`, then the tool's input and result; the app's `tools/call` go through the
// gateway as the key, declaring the extension, and only to tools the app may call (the admin service
// decides). Every message is listed under the frame.
"use strict";
import { useEffect, useRef, useState } from "preact/hooks";
import { post } from "../api.js";
import { html } from "../ui.js";

const PROTOCOL = "2026-01-26"; // the ext-apps revision this host speaks
const MAX_LOG = 50;
const MAX_HEIGHT = 1200;
const HOST_INFO = { name: "bastion-console-playground", version: "1" };

// The app a tool's result (or else its definition) names, if any.
export function appOf(tool, result) {
  for (const item of [result, tool]) {
    const meta = item && item._meta;
    const uri = meta && ((meta.ui && meta.ui.resourceUri) || meta["ui/resourceUri"]);
    if (typeof uri === "string" && uri.startsWith("ui://")) return uri;
  }
  return null;
}

function short(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text && text.length > 300 ? text.slice(0, 300) + "…" : text;
}

export function AppFrame({ secret, uri, input, result }) {
  const frame = useRef(null);
  const [opened, setOpened] = useState(null);
  const [log, setLog] = useState([]);
  const [height, setHeight] = useState(320);
  const note = (entry) => setLog((was) => [...was, { at: was.length, ...entry }].slice(-MAX_LOG));

  useEffect(() => {
    let live = true;
    setOpened(null); setLog([]);
    post("/console/playground/app", { secret, uri }).then((found) => { if (live) setOpened(found); },
      (error) => { if (live) setOpened({ ok: false, error: error.message }); });
    return () => { live = false; };
  }, [uri]);

  useEffect(() => {
    if (!opened || !opened.ok) return undefined;
    const send = (message) => frame.current && frame.current.contentWindow.postMessage({ jsonrpc: "2.0", ...message }, "*");
    const answer = (id, reply) => send({ id, ...reply });
    const callTool = async (id, params) => {
      const name = String((params && params.name) || "");
      const called = await post("/console/playground/app-call", { secret, uri, tool: name, arguments: (params && params.arguments) || {} })
        .catch((error) => ({ ok: false, error: error.message }));
      note({ method: "tools/call", tool: name, outcome: called.ok ? (called.result.isError ? "tool-error" : "ok") : "refused",
        detail: called.ok ? `${called.tool}: ${short(called.result.content || called.result)}` : called.error });
      answer(id, called.ok ? { result: called.result } : { error: { code: -32000, message: called.error } });
    };
    const onMessage = (event) => {
      if (!frame.current || event.source !== frame.current.contentWindow) return; // this app's frame only
      const message = event.data || {};
      if (typeof message !== "object" || message.jsonrpc !== "2.0" || typeof message.method !== "string") return;
      const { id, method, params } = message;
      if (method === "tools/call" && id !== undefined) { callTool(id, params); return; }
      if (method === "ui/initialize") {
        note({ method, outcome: "ok", detail: short((params && params.appInfo) || {}) });
        answer(id, { result: { protocolVersion: PROTOCOL, hostInfo: HOST_INFO, hostCapabilities: { serverTools: {}, logging: {} },
          hostContext: { theme: "light", displayMode: "inline", availableDisplayModes: ["inline"], platform: "web" } } });
        return;
      }
      if (method === "ui/notifications/initialized") {
        note({ method, outcome: "ok", detail: "sent the tool's input and result" });
        send({ method: "ui/notifications/tool-input", params: { arguments: input || {} } });
        if (result) send({ method: "ui/notifications/tool-result", params: result });
        return;
      }
      if (method === "ui/notifications/size-changed") {
        const wanted = Number(params && params.height);
        if (wanted > 0) setHeight(Math.min(Math.ceil(wanted), MAX_HEIGHT));
        return;
      }
      if (method === "notifications/message") { note({ method, outcome: String((params && params.level) || "info"), detail: short(params && params.data) }); return; }
      if (method === "ping" && id !== undefined) { answer(id, { result: {} }); return; }
      note({ method, outcome: "refused", detail: "not offered by the playground" });
      if (id !== undefined) answer(id, { error: { code: -32601, message: `${method} is not offered by the playground` } });
    };
    window.addEventListener("message", onMessage);
    return () => window.removeEventListener("message", onMessage);
  }, [opened]);

  if (!opened) return html`<p class="muted">Reading the app ${uri}…</p>`;
  if (!opened.ok) return html`<div class="error" id="play-app-error">The app ${uri}: ${opened.error}</div>`;
  const ui = opened.ui || {};
  return html`<div id="play-app-panel" data-uri=${uri}>
    <p class="muted">The app <code>${uri}</code>, sandboxed (scripts only, an origin of its own), under the policy it declares:
      network to <code>${(ui.csp && ui.csp.connectDomains || []).join(" ") || "nothing"}</code>; no permission granted
      ${ui.permissions ? html` (it asks for <code>${Object.keys(ui.permissions).join(", ")}</code>)` : ""}.</p>
    <iframe id="play-app" ref=${frame} title=${"MCP App " + uri} sandbox="allow-scripts" referrerpolicy="no-referrer"
      src=${"/console/app-frame/" + encodeURIComponent(opened.frame)}
      style=${`width:100%;height:${height}px;border:${ui.prefersBorder === false ? "0" : "1px solid #ccc"}`}></iframe>
    <h3>What the app asked</h3>
    ${!log.length ? html`<p class="muted">Nothing yet.</p>` : html`<ol id="play-app-log">${log.map((e) => html`<li key=${e.at}
      data-method=${e.method} data-tool=${e.tool || ""} data-outcome=${e.outcome}><code>${e.method}</code>${e.tool ? html` <code>${e.tool}</code>` : ""}${": "}<strong>${e.outcome}</strong>
      <span class="muted">${" " + (e.detail || "")}</span></li>`)}</ol>`}
  </div>`;
}
