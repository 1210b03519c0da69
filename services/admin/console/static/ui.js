// What every view shares: the toolkit's bindings, error and empty states, small form parts.
"use strict";
import { h } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);

export function ErrorBox({ error }) {
  if (!error) return null;
  const detail = (error.detail || []).map((d) => `${(d.loc || []).join(".")}: ${d.msg}`);
  return html`<div class="error" role="alert">${error.message || String(error)}${detail.length ? html`<br/>${detail.join("; ")}` : ""}</div>`;
}

export function Empty({ children }) { return html`<div class="empty">${children}</div>`; }

// Loads `load()` on mount and whenever `deps` change; `reload` asks again.
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const run = useCallback(() => {
    setState((s) => ({ ...s, loading: true }));
    load().then((data) => setState({ data, error: null, loading: false }), (error) => setState({ data: null, error, loading: false }));
  }, deps);
  useEffect(run, [run]);
  return { ...state, reload: run };
}

// A button whose action is async: disabled while it runs, its failure shown by the caller's setError.
export function Action({ onRun, setError, children, ...rest }) {
  const [busy, setBusy] = useState(false);
  const click = async (event) => {
    event.preventDefault();
    setBusy(true);
    if (setError) setError(null);
    try { await onRun(); } catch (err) { if (setError) setError(err); else throw err; } finally { setBusy(false); }
  };
  return html`<button type="button" ...${rest} disabled=${busy || rest.disabled} onClick=${click}>${children}</button>`;
}

// Enter on a focused clickable row does what a click does; Enter on a control inside the row is the control's.
export function onEnter(event, run) {
  if (event.key === "Enter" && event.target === event.currentTarget) { event.preventDefault(); run(); }
}

export function when(epoch) {
  if (!epoch) return "";
  return new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19);
}

export function pretty(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") { try { return JSON.stringify(JSON.parse(value), null, 2); } catch (_) { return value; } }
  return JSON.stringify(value, null, 2);
}

export function parseJson(text, what) {
  try { return JSON.parse(text); } catch (err) { throw new Error(`${what} is not valid JSON: ${err.message}`); }
}

// Copies `text` (a secret shown once): the clipboard API where the browser grants it, else the old
// select-and-copy of the element `from`; says whether it worked, and if not, to copy it by hand.
export function CopyButton({ text, from, ...rest }) {
  const [said, setSaid] = useState("Copy");
  const byHand = () => {
    const node = document.getElementById(from);
    if (!node) return false;
    const range = document.createRange();
    range.selectNodeContents(node);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    return document.execCommand("copy");
  };
  const copy = async () => {
    let copied = false;
    try { await navigator.clipboard.writeText(text); copied = true; } catch (_) { copied = byHand(); }
    setSaid(copied ? "Copied" : "Select it and copy it by hand");
  };
  return html`<button type="button" ...${rest} data-said=${said} onClick=${copy}>${said}</button>`;
}
