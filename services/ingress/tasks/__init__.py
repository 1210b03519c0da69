"""MCP tasks through the gateway (docs/tasks.md).

The task methods and which call becomes a task (`task_router`), the records on the bus (`task_store`),
the two forms agents speak (`task_forms`), the tasks the gateway hosts itself (`hosted_tasks`,
`approval_tasks`) and the upstreams' task ids in the gateway's names (`upstream_task_ids`).

Below: sending, catalog, context, protocol, audit_events; the handlers only as the `TaskHost`
protocol (`task_host`). Above: the handlers, which route a task method here first.
"""
