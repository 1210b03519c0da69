// An agent on the official MCP TypeScript SDK (what Claude Code, Cursor and most desktop agents are
// built on), run by tests/support/ts_sdk.py on the Node 22 the suite installs into .tools/.
//
//   node ts_sdk_client.mjs <sdk package folder> <url> <key> <plan JSON>
//
// Connects over streamable HTTP with the key as a bearer token, lists the tools, then runs the plan:
// a list of [tool name, arguments]. Like a desktop agent, it keeps its own copy of the tool list and
// refreshes it only when the server says `notifications/tools/list_changed`; before calling a tool its
// copy does not hold, it waits (up to 10 s) for such a refresh, and fails if none brings the tool.
// Prints one JSON object: protocolVersion, tools (the first list), calls (each result), refreshes
// (how many list_changed notifications came), toolsAtEnd (its copy at the end).
import { pathToFileURL } from 'node:url';

const [sdk, url, key, planJson] = process.argv.slice(2);
const load = (path) => import(pathToFileURL(`${sdk}/dist/esm/${path}`).href);
const { Client } = await load('client/index.js');
const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');
const { ToolListChangedNotificationSchema } = await load('types.js');

const client = new Client({ name: 'bastion-test-ts-agent', version: '1.0.0' });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${key}` } },
});

let known = new Set();
let refreshes = 0;
const waiting = [];
const relist = async () => {
  known = new Set((await client.listTools()).tools.map((tool) => tool.name));
};
client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
  refreshes += 1;
  await relist();
  waiting.splice(0).forEach((wake) => wake());
});

await client.connect(transport);
await relist();
const first = [...known].sort();
const calls = [];
for (const [name, args] of JSON.parse(planJson)) {
  const deadline = Date.now() + 10_000;
  while (!known.has(name)) {
    if (Date.now() > deadline) {
      throw new Error(`${name} never appeared in the tool list (refreshes: ${refreshes}, list: ${[...known]})`);
    }
    await new Promise((wake) => {
      waiting.push(wake);
      setTimeout(wake, 200);
    });
  }
  calls.push(await client.callTool({ name, arguments: args }));
}
const out = {
  protocolVersion: transport.protocolVersion ?? client.getServerVersion()?.protocolVersion ?? null,
  tools: first,
  calls,
  refreshes,
  toolsAtEnd: [...known].sort(),
};
await client.close();
process.stdout.write(JSON.stringify(out));
