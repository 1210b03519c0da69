// Adds `Authorization: <CONFORMANCE_AUTH_HEADER>` to every request the conformance suite sends to
// CONFORMANCE_AUTH_ORIGIN. The suite's `server` command has no option for custom headers (0.1.16:
// only --url/--scenario/--suite/--expected-failures/-o/--spec-version/--verbose), and it sends
// requests three ways: the SDK's StreamableHTTPClientTransport and raw `fetch` (both global fetch)
// and `undici.request` (dns-rebinding-protection). Loaded with `node --import <this file>`;
// CONFORMANCE_UNDICI is the path of the suite's own `undici` entry point, so its global
// dispatcher is the one patched.
const header = process.env.CONFORMANCE_AUTH_HEADER;
const origin = process.env.CONFORMANCE_AUTH_ORIGIN;

if (header && origin) {
  const sameOrigin = (url) => {
    try {
      return new URL(String(url instanceof Request ? url.url : url)).origin === origin;
    } catch {
      return false;
    }
  };

  // Diagnostic only (run_conformance.py --prefix-tools): CONFORMANCE_TOOL_PREFIX is prepended to
  // the tool name of every tools/call, to see what fails once the namespacing is out of the way.
  const prefix = process.env.CONFORMANCE_TOOL_PREFIX;
  const renameTools = (body) => {
    if (!prefix || typeof body !== 'string' || !body.includes('"tools/call"')) return body;
    const rename = (m) => {
      if (m?.method === 'tools/call' && m.params?.name && !m.params.name.startsWith(prefix)) {
        m.params.name = prefix + m.params.name;
      }
      return m;
    };
    const msg = JSON.parse(body);
    return JSON.stringify(Array.isArray(msg) ? msg.map(rename) : rename(msg));
  };

  const originalFetch = globalThis.fetch;
  globalThis.fetch = (input, init = {}) => {
    if (!sameOrigin(input)) return originalFetch(input, init);
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
    headers.set('authorization', header);
    return originalFetch(input, { ...init, headers, body: renameTools(init.body) });
  };

  if (process.env.CONFORMANCE_UNDICI) {
    const undici = await import(process.env.CONFORMANCE_UNDICI);
    const withAuth = (dispatch) => (opts, handler) => {
      if (opts.origin && new URL(String(opts.origin)).origin === origin) {
        // Flat [name, value, ...] or an object; drop any Authorization already set by the fetch
        // wrapper (Node's own fetch also goes through this dispatcher), then set ours once.
        const h = opts.headers ?? {};
        const pairs = Array.isArray(h) ? h.flatMap((v, i) => (i % 2 ? [] : [[v, h[i + 1]]])) : Object.entries(h);
        const kept = pairs.filter(([k]) => String(k).toLowerCase() !== 'authorization');
        opts = { ...opts, headers: Object.fromEntries([...kept, ['authorization', header]]) };
      }
      return dispatch(opts, handler);
    };
    undici.setGlobalDispatcher(new undici.Agent().compose(withAuth));
  }
}
