// A call to replay, handed from live traffic to the playground. Kept in this tab's memory, never in
// the address: browsers keep addresses in their history, and a call's arguments may be sensitive.
"use strict";

let queued = null;

function parsed(text) {
  if (text === null || text === undefined) return null;
  if (typeof text !== "string") return text;
  try { return JSON.parse(text); } catch (_) { return null; } // a cut or redacted record: replay the tool alone
}

// Open the playground on this audit event's key and tool, its recorded arguments filled in.
export function replayInPlayground(event) {
  queued = { key: event.key_id || "", tool: event.name, arguments: parsed(event.arguments) };
  location.hash = `#/playground?key=${encodeURIComponent(queued.key)}`;
}

// The queued call, once: a later visit to the playground starts empty.
export function takeReplay() {
  const taken = queued;
  queued = null;
  return taken;
}
