// The navigation the console and the dashboard share: one list of places, each shown only to a role
// holding the permission that opens it. The console renders it itself (app.js); on the dashboard this
// module fills <nav id="bastion-nav"> with plain links, from the same sign-in (GET /admin/v1/me).
"use strict";
import { whoami } from "./api.js";

// console view (#/<name>), title, the permission that shows it
export const PLACES = [
  ["servers", "Servers", "servers:read"],
  ["catalog", "Catalog", "servers:read"],
  ["keys", "Keys", "keys:read"],
  ["groups", "Groups", "groups:read"],
  ["directory", "People", "directory:read"],
  ["providers", "LLM providers", "providers:read"],
  ["traffic", "Live traffic", "analytics:read"],
  ["playground", "Playground", "keys:read"],
  ["export", "Export", "servers:read"],
  ["approvals", "Approvals", "approvals:decide"],
];
export const DASHBOARD = { href: "/dashboard", title: "Dashboard", permission: "analytics:read" };

async function fill(nav) {
  const access = await whoami().catch(() => null);
  if (!access) return;
  for (const [name, title, permission] of PLACES) {
    if (!access.can(permission)) continue;
    const link = document.createElement("a");
    link.href = `/console#/${name}`;
    link.id = `nav-${name}`;
    link.textContent = title;
    nav.appendChild(link);
  }
  const here = document.createElement("a");
  here.href = DASHBOARD.href;
  here.id = "nav-dashboard";
  here.textContent = DASHBOARD.title;
  here.setAttribute("aria-current", "page");
  nav.appendChild(here);
}

const slot = document.getElementById("bastion-nav");
if (slot) fill(slot);
