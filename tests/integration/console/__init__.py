"""The web console in a real browser against one real running stack, a module per concern.

Debian's Chromium over the DevTools Protocol drives the console of a stack with every service from
its composition root, real upstream MCP servers (one with 1,200 tools), the admin service with the
console, and the gateway's `/mcp` behind the playground. A person signs in, sees every view, issues a
key, calls a tool with it (through an agent's client and through the playground), and finds the calls
in live traffic with their audit rows; adds a server after testing its connection; revokes keys in
bulk. Screenshots of each view are saved as test artifacts under `.artifacts/console/`
(docs/console.md names them). The stack and the browser start once for the folder (`conftest.py`).
"""
