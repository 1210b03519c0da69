// An agent on the official MCP TypeScript SDK that speaks the 2025-11-25 experimental tasks
// (`client.experimental.tasks`), run by tests/support/ts_sdk.py (`run_ts_tasks`).
//
//   node ts_sdk_tasks.mjs <sdk package folder> <url> <key> <plan JSON>
//
// plan: {tool, release, job, cancelJob}. Calls `tool` for `job` as a task (callToolStream with a task
// ttl), and once the task is created calls `release` so the job can finish; the stream polls
// tasks/get and fetches tasks/result by itself. Then it starts `tool` for `cancelJob` and cancels
// that task. Prints one JSON object: protocolVersion, the stream's message types, the result, the
// task ids, what getTask says of each, and the ids tasks/list shows.
import { pathToFileURL } from 'node:url';

const [sdk, url, key, planJson] = process.argv.slice(2);
const plan = JSON.parse(planJson);
const load = (path) => import(pathToFileURL(`${sdk}/dist/esm/${path}`).href);
const { Client } = await load('client/index.js');
const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');

const client = new Client(
  { name: 'bastion-test-ts-tasks', version: '1.0.0' },
  { capabilities: { tasks: { list: {}, cancel: {} } } },
);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${key}` } },
});
await client.connect(transport);
await client.listTools();
const tasks = client.experimental.tasks;

const types = [];
let result = null;
let taskId = null;
const stream = tasks.callToolStream({ name: plan.tool, arguments: { job: plan.job } }, undefined, {
  task: { ttl: 60000 },
});
for await (const message of stream) {
  types.push(message.type);
  if (message.type === 'taskCreated') {
    taskId = message.task.taskId;
    await client.callTool({ name: plan.release, arguments: { job: plan.job, text: 'from the ts sdk' } });
  } else if (message.type === 'result') {
    result = message.result;
  } else if (message.type === 'error') {
    throw message.error;
  }
}

let cancelId = null;
const second = tasks.callToolStream({ name: plan.tool, arguments: { job: plan.cancelJob } }, undefined, {
  task: { ttl: 60000 },
});
for await (const message of second) {
  if (message.type === 'taskCreated') {
    cancelId = message.task.taskId;
    await tasks.cancelTask(cancelId);
    break;
  }
}

const out = {
  protocolVersion: transport.protocolVersion ?? null,
  types,
  result,
  taskId,
  completed: (await tasks.getTask(taskId)).status,
  cancelId,
  cancelled: (await tasks.getTask(cancelId)).status,
  listed: (await tasks.listTasks()).tasks.map((task) => task.taskId),
};
await client.close();
process.stdout.write(JSON.stringify(out));
