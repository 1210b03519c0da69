// Pinning in the catalog (docs/supply-chain.md): what waits for a person, a definition's pin state,
// the drift diff of a changed definition, and approve/reject for a role with tools:approve.
"use strict";
import { useState } from "preact/hooks";
import { ApiError, get, post } from "../api.js";
import { Action, Empty, ErrorBox, html, onEnter, useLoad, when } from "../ui.js";

const path = (server, name) => `/tools/${encodeURIComponent(server)}/${encodeURIComponent(name)}`;
const short = (sha) => (sha ? sha.slice(0, 12) : "none");

// A definition nothing pinned is an answer, not a failure: pinning is off or the server not listed yet.
const pinOf = (server, name) => get(`${path(server, name)}/pin`).catch((err) => {
  if (err instanceof ApiError && err.status === 404) return null;
  throw err;
});

// Whether agents see it: the upstream listing it is not enough while a changed definition waits.
const listedOf = (state) => (!state.listed ? "no: the upstream no longer lists it"
  : state.pending ? "no: withheld until a person approves the change" : "yes");

export function PendingApprovals({ pending, openKey, onOpen }) {
  if (!pending.length) return null;
  return html`<section class="panel" id="pending-approvals">
    <h2>Pending approvals <span class="tag" id="pending-count">${pending.length}</span></h2>
    <p class="muted">Changed definitions held back until a person decides: they are not listed or callable meanwhile.</p>
    <table><thead><tr><th>definition</th><th>kind</th><th>why</th></tr></thead>
      <tbody>${pending.map((p) => {
        const key = `${p.server}/${p.name}`;
        return html`<tr class=${"clickable" + (openKey === key ? " selected" : "")} data-pending=${key} tabindex="0"
          onClick=${() => onOpen(p)} onKeyDown=${(e) => onEnter(e, () => onOpen(p))}>
          <td><code>${key}</code></td><td>${p.kind}</td>
          <td>${p.reason || "changed"}${p.renamed_from ? ` (from ${p.renamed_from})` : ""}</td></tr>`;
      })}</tbody></table>
  </section>`;
}

// The pin of one definition: approved version and by whom, and when a change waits, its diff and the decision.
export function PinPanel({ server, name, access, onDecided }) {
  const pin = useLoad(() => pinOf(server, name), [server, name]);
  const waiting = pin.data && pin.data.pending;
  const diff = useLoad(() => (waiting ? get(`${path(server, name)}/diff`) : Promise.resolve(null)), [server, name, waiting]);
  const [error, setError] = useState(null);
  const [done, setDone] = useState("");
  const decide = async (what) => {
    // the version looked at: refused (409) if another one waits by now
    await post(`${path(server, name)}/${what}`, { sha256: waiting });
    setDone(what === "approve"
      ? `Approved ${short(waiting)}: the executors list ${server} again and serve it.`
      : `Rejected ${short(waiting)}: it stays out, and is not asked about again.`);
    pin.reload();
    if (onDecided) onDecided();
  };
  const state = pin.data;
  return html`<div id="pin-state">
    <${ErrorBox} error=${pin.error || diff.error || error} />
    ${done && html`<div class="notice" id="pin-decided">${done}</div>`}
    ${!pin.loading && !pin.error && !state && html`<${Empty}>Not pinned: pinning is off, or ${server} was not listed since it was turned on.</${Empty}>`}
    ${state && html`<table><tbody>
      <tr><th>approved</th><td><code>${short(state.approved)}</code>${state.approved_by ? ` by ${state.approved_by}` : ""}${state.approved_at ? `, ${when(state.approved_at)}` : ""}</td></tr>
      <tr><th>waiting</th><td id="pin-waiting">${state.pending ? html`<code>${short(state.pending)}</code> (${state.reason || "changed"})` : "nothing"}</td></tr>
      <tr><th>rejected</th><td>${state.rejected}</td></tr>
      <tr><th>listed</th><td id="pin-listed">${listedOf(state)}</td></tr></tbody></table>`}
    ${waiting && diff.data && html`<h3>Drift</h3><pre id="pin-diff">${diff.data.diff}</pre>
      ${access.can("tools:approve")
        ? html`<div class="toolbar">
            <${Action} id="pin-approve" class="primary" onRun=${() => decide("approve")} setError=${setError}>Approve</${Action}>
            <${Action} id="pin-reject" class="danger" onRun=${() => decide("reject")} setError=${setError}>Reject</${Action}></div>`
        : html`<p class="muted">A role with tools:approve decides.</p>`}`}
  </div>`;
}
