// Tool calls a policy parked for a person (docs/approvals.md): the pending ones with the arguments
// that would run, and approve or deny with a reason (approvals:decide). Decided and expired ones on ask.
"use strict";
import { useState } from "preact/hooks";
import { get, post } from "../api.js";
import { Action, Empty, ErrorBox, html, pretty, useLoad, when } from "../ui.js";

function Decide({ approval, onDecided }) {
  const [reason, setReason] = useState("");
  const [error, setError] = useState(null);
  const decide = async (what) => {
    await post(`/approvals/${encodeURIComponent(approval.id)}/${what}`, { reason });
    onDecided();
  };
  return html`<div class="toolbar" data-decide=${approval.id}>
    <input class="approval-reason" size="40" placeholder="reason (required)" aria-label="reason"
      value=${reason} onInput=${(e) => setReason(e.target.value)} />
    <${Action} class="primary approval-approve" onRun=${() => decide("approve")} setError=${setError} disabled=${!reason.trim()}>Approve</${Action}>
    <${Action} class="danger approval-deny" onRun=${() => decide("deny")} setError=${setError} disabled=${!reason.trim()}>Deny</${Action}>
    <${ErrorBox} error=${error} /></div>`;
}

function Row({ a, onDecided }) {
  return html`<tr data-approval=${a.id} data-state=${a.state}>
    <td><code>${a.id}</code><br/><span class="muted">${when(a.created_at)}</span></td>
    <td><strong>${a.key_name}</strong>${a.user_id ? html`<br/><span class="muted">user ${a.user_id}</span>` : ""}</td>
    <td><code>${a.name}</code></td>
    <td><code>${a.policy}</code>${a.reason ? html`<br/>${a.reason}` : ""}<br/><span class="muted">approvers: ${a.approvers}</span></td>
    <td><pre class="approval-arguments">${a.arguments ? pretty(a.arguments) : "(sealed: the admin service has no key to open them)"}</pre></td>
    <td>${a.state === "pending"
      ? html`<span class="muted">expires ${when(a.expires_at)}</span><${Decide} approval=${a} onDecided=${onDecided} />`
      : html`<span class="tag">${a.state}</span>${a.decided_by ? html`<br/>${a.decided_by}: ${a.decision_reason}` : ""}`}</td></tr>`;
}

export function Approvals() {
  const [every, setEvery] = useState(false);
  const { data, error, reload } = useLoad(() => get(every ? "/approvals" : "/approvals?state=pending"), [every]);
  const rows = data || [];
  return html`<section class="panel"><div class="toolbar"><h2 style="margin:0">Approvals
      ${!every && html` <span class="tag" id="approvals-count">${rows.length}</span>`}</h2>
      <label><input type="checkbox" id="approvals-all" checked=${every} onChange=${(e) => setEvery(e.target.checked)} /> decided and expired too</label>
      <button type="button" id="approvals-reload" onClick=${reload}>Reload</button></div>
    <p class="muted">Tool calls a policy holds for a person. Approved, the agent's next call naming the approval runs
      these arguments once; denied or expired, it never runs.</p>
    <${ErrorBox} error=${error} />
    ${data && !rows.length && html`<${Empty}>Nothing waits for approval.</${Empty}>`}
    ${rows.length > 0 && html`<table id="approvals-table"><thead><tr><th>approval</th><th>key</th><th>tool</th>
      <th>policy</th><th>arguments</th><th>decision</th></tr></thead>
      <tbody>${rows.map((a) => html`<${Row} a=${a} onDecided=${reload} />`)}</tbody></table>`}
  </section>`;
}
