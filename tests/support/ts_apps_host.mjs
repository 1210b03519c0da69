// A host of MCP Apps on the official MCP TypeScript SDK, run by tests/support/ts_sdk.py: it declares
// the `io.modelcontextprotocol/ui` extension at initialize, as a host that renders apps does, then
// does what such a host does before and while it renders one:
//
//   node ts_apps_host.mjs <sdk package folder> <url> <key> <model tool> <app-only tool>
//
// lists the tools (the host keeps those without "model" in `_meta.ui.visibility` from its model),
// reads the app the model tool names (`_meta.ui.resourceUri`), and calls the app-only tool as the
// app's button would. Prints one JSON object: tools (name -> `_meta.ui`), modelTools (what its model
// would see), app (the read's first content: uri, mimeType, _meta, a prefix of its text), call (the
// app-only tool's result).
import { pathToFileURL } from 'node:url';

const [sdk, url, key, modelTool, appTool] = process.argv.slice(2);
const load = (path) => import(pathToFileURL(`${sdk}/dist/esm/${path}`).href);
const { Client } = await load('client/index.js');
const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');

const UI = 'io.modelcontextprotocol/ui';
const client = new Client(
  { name: 'bastion-test-ts-apps-host', version: '1.0.0' },
  { capabilities: { extensions: { [UI]: { mimeTypes: ['text/html;profile=mcp-app'] } } } },
);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${key}` } },
});
await client.connect(transport);

const listed = (await client.listTools()).tools;
const tools = Object.fromEntries(listed.map((tool) => [tool.name, tool._meta?.ui ?? null]));
const modelTools = listed
  .filter((tool) => !Array.isArray(tool._meta?.ui?.visibility) || tool._meta.ui.visibility.includes('model'))
  .map((tool) => tool.name)
  .sort();
const appUri = tools[modelTool]?.resourceUri;
const read = await client.readResource({ uri: appUri });
const content = read.contents[0];
const app = { uri: content.uri, mimeType: content.mimeType, _meta: content._meta ?? null, text: content.text.slice(0, 200) };
const call = await client.callTool({ name: appTool, arguments: {} });
console.log(JSON.stringify({ tools, modelTools, app, call }));
await client.close();
