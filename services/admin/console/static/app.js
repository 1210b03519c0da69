// The console shell: sign-in, the navigation (shared with the dashboard, which is a link in it), and a
// hash router over the views. A view or link appears only when the signed-in role allows it; the API
// refuses anyway.
"use strict";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { endSession, signIn, signOut, token, whoami } from "./api.js";
import { ErrorBox, html } from "./ui.js";
import { DASHBOARD, PLACES } from "./nav.js";
import { Servers } from "./views/servers.js";
import { Catalog } from "./views/catalog.js";
import { Keys } from "./views/keys.js";
import { Groups } from "./views/groups.js";
import { Providers } from "./views/providers.js";
import { Traffic } from "./views/traffic.js";
import { Playground } from "./views/playground.js";
import { Export } from "./views/export.js";
import { Directory } from "./views/directory.js";
import { Approvals } from "./views/approvals.js";

// the shared navigation's places (nav.js), each with its view
const VIEW_OF = { servers: Servers, catalog: Catalog, keys: Keys, groups: Groups, directory: Directory, providers: Providers, traffic: Traffic, playground: Playground, export: Export, approvals: Approvals };
export const VIEWS = PLACES.map(([name, title, permission]) => [name, title, permission, VIEW_OF[name]]);

function route() {
  const [name, query] = location.hash.replace(/^#\/?/, "").split("?");
  return { name: name || "", params: new URLSearchParams(query || "") };
}

// The two ways in, said in full: a person may arrive with neither a token nor a user.
const TOKEN_FILE = "<data dir>/stack.json";
const MAKE_USER = "bastion users create alice --name Alice --password";
const BIND_USER = "bastion principals create alice@example.com --person --user alice --role operator";

function Login({ error, onDone }) {
  const [value, setValue] = useState("");
  const submit = (event) => { event.preventDefault(); if (value.trim()) { signIn(value); onDone(); } };
  return html`<main class="login"><section class="panel">
    <h2>Sign in to the Bastion console</h2>
    <p>Two ways in ${"(docs/console.md, "}<em>Signing in</em>${"):"}</p>
    <ol id="login-ways">
      <li><strong>Paste an API token</strong> below. Under <code>bastion up</code> the first owner's token is the
        ${" "}<code>admin_token</code> in <code>${TOKEN_FILE}</code>${" "}(the data dir is <code>.bastion</code> by default).
        It stays in this browser tab only, and opens the dashboard too. An owner makes tokens for others:
        ${" "}<code>bastion principals create ... --role operator --token</code>.</li>
      <li><strong>Sign in as a Bastion user</strong> with a password (or through your identity provider). No user
        exists until one is made: <code id="login-make-user">${MAKE_USER}</code>, then give that person a role:
        ${" "}<code id="login-bind-user">${BIND_USER}</code>.${" "}Then <a id="sign-in" href="/login?next=/console">sign in</a>.</li>
    </ol>
    <${ErrorBox} error=${error} />
    <form onSubmit=${submit}>
      <input id="login-token" type="password" autocomplete="off" aria-label="admin API token" placeholder="API token"
        value=${value} onInput=${(e) => setValue(e.target.value)} />
      <button class="primary" id="login-open">Open the console</button>
    </form>
  </section></main>`;
}

function Shell({ access, onSignOut }) {
  const [where, setWhere] = useState(route());
  useEffect(() => {
    const moved = () => setWhere(route());
    addEventListener("hashchange", moved);
    return () => removeEventListener("hashchange", moved);
  }, []);
  const allowed = VIEWS.filter(([, , permission]) => access.can(permission));
  const current = allowed.find(([name]) => name === where.name) || allowed[0];
  useEffect(() => { document.body.dataset.view = current ? current[0] : "none"; }, [current]);
  const View = current ? current[3] : null;
  return html`<header class="bar">
      <h1>Bastion</h1>
      <nav class="main" aria-label="console">
        ${allowed.map(([name, title]) => html`<a href=${"#/" + name} id=${"nav-" + name}
          aria-current=${current && current[0] === name ? "page" : undefined}>${title}</a>`)}
        ${access.can(DASHBOARD.permission) ? html`<a href=${DASHBOARD.href} id="nav-dashboard">${DASHBOARD.title}</a>` : null}
      </nav>
      <span class="who"><span id="who">${access.label}</span>
        <button type="button" id="sign-out" onClick=${onSignOut}>Sign out</button></span>
    </header>
    <main>${View
      ? html`<${View} access=${access} params=${where.params} />`
      : html`<section class="panel">Your role opens no view of the console. Ask an owner for a role.</section>`}</main>`;
}

function App() {
  const [state, setState] = useState({ access: null, error: null, checked: false });
  const check = () => whoami().then(
    (access) => setState({ access, error: access || !token() ? null : new Error("that token was refused"), checked: true }),
    (error) => setState({ access: null, error, checked: true }),
  );
  useEffect(() => { check(); }, []);
  useEffect(() => { document.body.dataset.state = !state.checked ? "loading" : state.access ? "ready" : "login"; });
  if (!state.checked) return html`<p class="pad muted">Loading…</p>`;
  if (!state.access) return html`<${Login} error=${state.error} onDone=${check} />`;
  const out = async () => { await endSession(state.access); signOut(); setState({ access: null, error: null, checked: true }); };
  return html`<${Shell} access=${state.access} onSignOut=${out} />`;
}

// a token in the address (#token=...) is taken into the tab and dropped from the address and history
const given = new URLSearchParams(location.hash.slice(1)).get("token");
if (given) { signIn(given); history.replaceState(null, "", location.pathname + location.search); }
render(html`<${App} />`, document.getElementById("app"));
