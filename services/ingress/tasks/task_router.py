"""MCP tasks through the gateway (docs/tasks.md).

Which `tools/call` becomes a task, and the task methods (`tasks/get`, `tasks/result`, `tasks/list`,
`tasks/cancel`, `tasks/update`), answered from any replica out of the records on the bus (`task_store`).

- An upstream tool that takes tasks (`execution.taskSupport`) is called as a task when the agent
  speaks tasks (either revision's form: `task_forms`); the upstream's task id stays on the bus, the
  agent gets a gateway id bound to its key. A tool that requires a task, called by an agent that
  speaks none, is polled to its end here, within the call's deadline: the agent gets the result.
- A tool configured as hosted (`ServerConfig.tasks`) becomes a task of the gateway's own when it
  outlasts `after_ms`, for agents that speak tasks (`hosted_tasks`).
- A call policy parks for a person's approval becomes a hosted task at once, for agents that speak
  tasks: it waits for the decision and ends with the approved run (`approval_tasks`).

Task requests go to the upstream as routed requests, through policy like any other (the key must
still be granted the tool), uncharged: a task's price is charged once, by its call. Each is audited
as a `task` event under the call's event (`parent_id`), naming the method (`action`) and the
gateway's task id (`target`), which the call's own event names too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.gateway_tasks import TERMINAL, HostedTask, TaskRecord, new_task_id
from libs.common.contracts.messages import AuditEvent, CallOutcome, GatewayError
from services.ingress.audit_events import Ending
from services.ingress.catalog.aggregated import CatalogEntry
from services.ingress.context import RequestContext
from services.ingress.protocol import RawJson, error_body, gateway_error_body, ok_body
from services.ingress.tasks.approval_tasks import collect, names_approval, parked_approval, waiting_message
from services.ingress.tasks.hosted_tasks import HostedTasks, TaskEnding
from services.ingress.tasks.task_forms import (
    Form,
    agent_form,
    created,
    detailed,
    listed,
    read_upstream_task,
    requested_ttl,
)
from services.ingress.tasks.task_host import TaskHost
from services.ingress.tasks.task_store import TaskStore, TooManyTasks
from services.ingress.tasks.upstream_task_ids import namespaced, namespaced_error

__all__ = ["RELATED_TASK", "TASK_METHODS", "TaskRouter"]

RELATED_TASK = "io.modelcontextprotocol/related-task"
TASK_METHODS = frozenset(("tasks/get", "tasks/result", "tasks/list", "tasks/cancel", "tasks/update"))
_UNKNOWN = "Unknown task {task_id!r}: it never existed, it expired, or it belongs to another key"

Answered = tuple[dict[str, Any], AuditEvent | None]


def _result_of(outcome: CallOutcome) -> Any:
    if outcome.raw_result is not None:
        return orjson.loads(outcome.raw_result)
    return outcome.result


def _payload_result(payload: dict[str, Any]) -> Any:
    result = payload.get("result")
    return result.parsed() if isinstance(result, RawJson) else result


def _task_support(entry: CatalogEntry) -> str | None:
    # asked of every call's tool: without a call for the usual one, which names no `execution`
    definition = entry.definition
    if "execution" not in definition or type(execution := definition["execution"]) is not dict:
        return None
    support = execution.get("taskSupport")
    return support if support in ("optional", "required") else None


class TaskRouter:
    def __init__(self, store: TaskStore, hosting: HostedTasks, emit: Callable[[AuditEvent], object]) -> None:
        self.store, self.hosting = store, hosting
        self.emit = emit
        """Publishes an audit event outside any request (a hosted task's run, once it ends)."""

    def route(
        self, ctx: RequestContext, method: str, params: dict[str, Any], h: TaskHost
    ) -> Awaitable[Answered] | None:
        """What answers `method` when it is a task matter, to await; None when it is not (the ordinary handler answers).

        Decided in this frame, not in a coroutine, for the usual `tools/call`, which is none."""
        if method != "tools/call":
            return self._task_method(ctx, method, params, h) if method in TASK_METHODS else None
        name = params["name"] if "name" in params else None
        entry = h.catalog.by_name.get(name) if type(name) is str else None
        if entry is None:
            return None
        form = agent_form(ctx.version, params)
        hosted = h.catalog.hosted_by_name.get(entry.name)
        if hosted is not None:  # the operator's word wins over the upstream's own tasks
            return self._hosted_task(ctx, params, entry, form, hosted, h) if form is not None else None
        support = _task_support(entry)
        if support is not None and (form is not None or support == "required"):
            return self._upstream_task(ctx, params, entry, form, h)
        if form is None or names_approval(params):
            if "task" in params:  # a task only the gateway grants: an upstream must never hand one out unbound
                return h.tools_call(ctx, {k: v for k, v in params.items() if k != "task"})
            return None
        return self._call(ctx, params, entry, form, h)

    async def _task_method(self, ctx: RequestContext, method: str, params: dict[str, Any], h: TaskHost) -> Answered:
        form: Form = "extension" if ctx.version in MODERN_PROTOCOL_VERSIONS else "legacy"
        if method == "tasks/list":
            if form == "extension":  # the extension has no tasks/list
                return error_body(
                    ctx.request_id, METHOD_NOT_FOUND, "tasks/list is not part of the tasks extension"
                ), None
            records = await self.store.owned(ctx.caller.key_id)
            return ok_body(ctx.request_id, ctx.version, listed(records)), None
        if method == "tasks/result" and form == "extension":
            return error_body(ctx.request_id, METHOD_NOT_FOUND, "tasks/result is not part of the tasks extension"), None
        task_id = params.get("taskId")
        if not isinstance(task_id, str) or not task_id:
            return error_body(ctx.request_id, INVALID_PARAMS, f"{method} needs 'params.taskId' (a string)"), None
        record = await self.store.find(ctx.caller.key_id, task_id)
        if record is None:
            message = _UNKNOWN.format(task_id=task_id[:64])
            return error_body(ctx.request_id, INVALID_PARAMS, message), self._audit(
                h, ctx, method, task_id, None, message
            )
        return await self._about(ctx, method, params, record, form, h)

    # ------------------------------------------------------------------ calls

    async def _call(
        self, ctx: RequestContext, params: dict[str, Any], entry: CatalogEntry, form: Form, h: TaskHost
    ) -> Answered:
        """A call whose agent takes a task: the plain call, a task once it parks on an approval."""
        plain = {k: v for k, v in params.items() if k != "task"}
        payload, audit = await h.tools_call(ctx, plain)
        approval = parked_approval(payload)
        if approval is None:
            return payload, audit
        return await self._approval_task(ctx, plain, entry, form, (payload, audit), approval, h)

    def _record(self, ctx: RequestContext, entry: CatalogEntry, kind: str, ttl_ms: int) -> TaskRecord:
        return TaskRecord.model_validate(
            {
                "task_id": new_task_id(),
                "key_id": ctx.caller.key_id,
                "server": entry.server,
                "tool": entry.tool,
                "name": entry.name,
                "kind": kind,
                "ttl_ms": ttl_ms,
                "poll_interval_ms": self.store.limits.poll_interval_ms,
            }
        )

    async def _upstream_task(
        self, ctx: RequestContext, params: dict[str, Any], entry: CatalogEntry, form: Form | None, h: TaskHost
    ) -> Answered:
        limits = self.store.limits
        ttl = limits.ttl(requested_ttl(params))
        if form is not None:
            try:
                await self.store.check_room(ctx.caller.key_id)
            except TooManyTasks as exc:
                return _too_many(ctx, exc), None
        payload, audit = await h.tools_call(ctx, {**params, "task": {"ttl": ttl}})
        task = read_upstream_task(_payload_result(payload))
        if task is None:  # an error, or the upstream answered at once: the agent gets that
            return payload, audit
        record = self._record(ctx, entry, "upstream", ttl)
        record.upstream_task_id = task["taskId"]
        record.call_event = audit.event_id if audit is not None else None
        _mirror(record, task)
        if audit is not None:
            audit.target = record.task_id
        if form is None:
            return await self._wait_for(ctx, record, h), audit
        await self.store.create(record)
        return ok_body(ctx.request_id, ctx.version, created(record, form)), audit

    async def _wait_for(self, ctx: RequestContext, record: TaskRecord, h: TaskHost) -> dict[str, Any]:
        """The task's result for an agent that speaks no tasks: polled within the call's deadline."""
        deadline = ctx.started + h.sender.timeout(ctx)
        entry = _entry(record)
        while record.status not in TERMINAL:
            wait = min(record.poll_interval_ms / 1000, self.store.limits.poll_interval_ms / 1000)
            if time.perf_counter() + wait >= deadline:
                await h.sender.request(ctx, "tasks/cancel", entry, {"taskId": record.upstream_task_id})
                message = f"the upstream task did not finish within the call's {h.sender.timeout(ctx):g}s; cancelled"
                return gateway_error_body(
                    ctx.request_id, GatewayError(kind=ErrorKind.UPSTREAM_TIMEOUT, message=message)
                )
            await asyncio.sleep(wait)
            outcome = await h.sender.request(ctx, "tasks/get", entry, {"taskId": record.upstream_task_id})
            if outcome.error is not None:
                return _upstream_error_body(ctx, outcome.error, record)
            if (task := read_upstream_task(_result_of(outcome))) is not None:
                _mirror(record, task)
        outcome = await h.sender.request(ctx, "tasks/result", entry, {"taskId": record.upstream_task_id})
        if outcome.error is not None:
            return _upstream_error_body(ctx, outcome.error, record)
        return ok_body(ctx.request_id, ctx.version, _without_related(namespaced(_result_of(outcome), record)))

    async def _hosted_task(
        self,
        ctx: RequestContext,
        params: dict[str, Any],
        entry: CatalogEntry,
        form: Form,
        hosted: HostedTask,
        h: TaskHost,
    ) -> Answered:
        plain = {k: v for k, v in params.items() if k != "task"}
        record = self._record(ctx, entry, "hosted", self.store.limits.ttl(requested_ttl(params) or hosted.ttl_ms))
        # the work runs on after this request is answered: it must not write to the request's
        # stream, nor journal under the event the request owes (that one is emitted with the task)
        background = _detached(ctx)
        call_event: list[AuditEvent | None] = []
        hosted_as: list[TaskRecord] = []

        async def work() -> TaskEnding:
            try:
                payload, audit = await h.tools_call(background, plain)
            except asyncio.CancelledError:  # cancelled (or expired): the executor stops the upstream call too
                if background.call_id is not None:
                    await h.sender.path.abandon(background.call_id)
                raise
            call_event.append(audit)
            if hosted_as:  # answered with the task already: the run is the task's to audit
                self._emit_run(audit, hosted_as[0])
            if "error" in payload:
                return TaskEnding(error=payload["error"])
            return TaskEnding(result=_payload_result(payload))

        try:
            hosting = await self.hosting.host(record, work, hosted.after_ms / 1000)
        except TooManyTasks as exc:
            return _too_many(ctx, exc), None
        if isinstance(hosting, TaskEnding):  # quick enough: a plain answer, as without tasks
            audit = call_event[0] if call_event else None
            if audit is not None and ctx.audit_id:
                audit.event_id = ctx.audit_id  # the event this request owes, as the journal knows it
            payload = _ending_body(ctx, hosting)
            approval = None if names_approval(params) else parked_approval(payload)
            if approval is not None:  # parked: the task waits for a person
                return await self._approval_task(ctx, plain, entry, form, (payload, audit), approval, h)
            return payload, audit
        audit = h.audits.record(
            ctx, "tool_call", entry.name, entry.server, entry.tool, Ending(None, execution="may_have_run")
        )
        audit.target = record.task_id
        record.call_event = audit.event_id
        await self.store.save(record)
        hosted_as.append(record)
        if call_event:  # it ended while the task was being stored
            self._emit_run(call_event[0], record)
        return ok_body(ctx.request_id, ctx.version, created(record, form)), audit

    async def _approval_task(
        self,
        ctx: RequestContext,
        plain: dict[str, Any],
        entry: CatalogEntry,
        form: Form,
        parked: Answered,
        approval: dict[str, Any],
        h: TaskHost,
    ) -> Answered:
        """A call policy parked for approval.

        As a task that waits for the decision and then ends with the approved run (`approval_tasks`);
        with no room for a task, the parked answer."""
        payload, audit = parked
        expires = approval.get("expires_at")
        waits_ms = int((expires - time.time()) * 1000) if isinstance(expires, int | float) else 0
        # the task outlives the wait and the run, so the agent can read what the run answered
        wanted = waits_ms + int(h.sender.timeout(ctx) * 1000) + self.store.limits.default_ttl_ms
        record = self._record(ctx, entry, "hosted", self.store.limits.ttl(wanted))
        record.status_message = waiting_message(approval)
        record.call_event = audit.event_id if audit is not None else None
        background = _detached(ctx)
        interval = self.store.limits.poll_interval_ms / 1000

        async def work() -> TaskEnding:
            try:
                answer, run = await collect(background, plain, approval["id"], interval, h)
            except asyncio.CancelledError:  # the approval stays as it is; a run under way is abandoned
                if background.call_id is not None:
                    await h.sender.path.abandon(background.call_id)
                raise
            self._emit_run(run, record)
            if "error" in answer:
                return TaskEnding(error=answer["error"])
            return TaskEnding(result=_payload_result(answer))

        try:
            hosting = await self.hosting.host(record, work, 0)
        except TooManyTasks:
            return payload, audit
        if isinstance(hosting, TaskEnding):  # decided before the task was stored: a plain answer
            return _ending_body(ctx, hosting), audit
        if audit is not None:
            audit.target = record.task_id
        return ok_body(ctx.request_id, ctx.version, created(record, form)), audit

    # ------------------------------------------------------------------ task methods

    async def _about(
        self, ctx: RequestContext, method: str, params: dict[str, Any], record: TaskRecord, form: Form, h: TaskHost
    ) -> Answered:
        if record.kind == "hosted":
            return await self._hosted_method(ctx, method, record, form, h)
        entry = _entry(record)
        upstream_params: dict[str, Any] = {"taskId": record.upstream_task_id}
        if method == "tasks/update":
            upstream_params["inputResponses"] = params.get("inputResponses") or {}
        outcome = await h.sender.request(ctx, method, entry, upstream_params)
        if outcome.error is not None:
            body = _upstream_error_body(ctx, outcome.error, record)
            return body, self._audit(h, ctx, method, record.task_id, record, outcome.error.message, outcome)
        answer = namespaced(_result_of(outcome), record)
        if (task := read_upstream_task(answer)) is not None and method != "tasks/result":
            _mirror(record, task)
            await self.store.save(record)
        audit = self._audit(h, ctx, method, record.task_id, record, None, outcome)
        if method == "tasks/result":
            return ok_body(ctx.request_id, ctx.version, _related(answer, record.task_id)), audit
        if method in ("tasks/update",) or (method == "tasks/cancel" and form == "extension"):
            return ok_body(ctx.request_id, ctx.version, {}), audit
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        if form == "extension" and record.status in ("completed", "failed"):
            fetched = await h.sender.request(ctx, "tasks/result", entry, {"taskId": record.upstream_task_id})
            result = _without_related(namespaced(_result_of(fetched), record)) if fetched.error is None else None
            failed = namespaced_error(fetched.error, record) if fetched.error is not None else None
            error = failed.model_dump(include={"code", "message"}) if failed is not None else None
        return ok_body(ctx.request_id, ctx.version, detailed(record, form, result, error)), audit

    async def _hosted_method(
        self, ctx: RequestContext, method: str, record: TaskRecord, form: Form, h: TaskHost
    ) -> Answered:
        audit = self._audit(h, ctx, method, record.task_id, record, None)
        if method == "tasks/update":
            message = "this task asks for no input: tasks/update has nothing to answer"
            return error_body(ctx.request_id, INVALID_PARAMS, message), audit
        if method == "tasks/cancel":
            if record.status not in TERMINAL:
                await self.hosting.cancel(record)
            if form == "extension":
                return ok_body(ctx.request_id, ctx.version, {}), audit
            return ok_body(ctx.request_id, ctx.version, detailed(record, form, None, None)), audit
        if method == "tasks/result":
            record = await self._finished(ctx, record, h)
            if record.status == "completed":
                return ok_body(ctx.request_id, ctx.version, _related(record.result, record.task_id)), audit
            error = record.error or {"code": -32603, "message": record.status_message or record.status}
            return {"jsonrpc": "2.0", "id": ctx.request_id, "error": error}, audit
        return ok_body(ctx.request_id, ctx.version, detailed(record, form, record.result, record.error)), audit

    async def _finished(self, ctx: RequestContext, record: TaskRecord, h: TaskHost) -> TaskRecord:
        """The record once terminal (2025-11-25 `tasks/result` blocks), or as it is at the deadline."""
        deadline = ctx.started + h.sender.timeout(ctx)
        while record.status not in TERMINAL and time.perf_counter() < deadline:
            await asyncio.sleep(self.store.limits.poll_interval_ms / 1000)
            fresh = await self.store.find(ctx.caller.key_id, record.task_id)
            if fresh is None:
                break
            record = fresh
        return record

    def _emit_run(self, audit: AuditEvent | None, record: TaskRecord) -> None:
        """The event of a hosted task's run (the call as it went upstream), under the call's event."""
        if audit is None:
            return
        audit.kind, audit.action, audit.target, audit.parent_id = "task", "run", record.task_id, record.call_event
        self.emit(audit)

    def _audit(
        self,
        h: TaskHost,
        ctx: RequestContext,
        method: str,
        task_id: str,
        record: TaskRecord | None,
        error: str | None,
        outcome: CallOutcome | None = None,
    ) -> AuditEvent:
        failed = GatewayError(kind=ErrorKind.INVALID_ARGUMENTS, message=error) if error is not None else None
        if outcome is not None and outcome.error is not None:
            failed = outcome.error
        ending = Ending(
            failed,
            upstream_ms=outcome.upstream_ms if outcome else None,
            execution="not_run" if record is None else None,
        )
        name = record.name if record else ""
        audit = h.audits.record(
            ctx, "task", name, record.server if record else None, record.tool if record else None, ending
        )
        audit.action, audit.target = method, task_id[:128]
        audit.parent_id = record.call_event if record else None
        return audit


def _entry(record: TaskRecord) -> CatalogEntry:
    """Where a task's requests go: its tool's server, granted as that tool."""
    return CatalogEntry(record.name, record.server, record.tool, {}, orjson.Fragment(b"{}"), target=record.tool)


def _mirror(record: TaskRecord, task: dict[str, Any]) -> None:
    record.status = task["status"]
    message = task.get("statusMessage")
    record.status_message = namespaced(message, record) if isinstance(message, str) else None
    interval = task.get("pollInterval")
    if isinstance(interval, int) and not isinstance(interval, bool) and interval > 0:
        record.poll_interval_ms = max(interval, record.poll_interval_ms)


def _related(result: Any, task_id: str) -> dict[str, Any]:
    """A task's result with its `related-task` naming the gateway's task id (never the upstream's)."""
    result = _without_related(result)
    meta = result.get("_meta") if isinstance(result.get("_meta"), dict) else {}
    return {**result, "_meta": {**meta, RELATED_TASK: {"taskId": task_id}}}


def _without_related(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        return {"content": []}
    meta = result.get("_meta")
    if isinstance(meta, dict) and RELATED_TASK in meta:
        meta = {k: v for k, v in meta.items() if k != RELATED_TASK}
        result = {k: v for k, v in result.items() if k != "_meta"} | ({"_meta": meta} if meta else {})
    return dict(result)


def _ending_body(ctx: RequestContext, ending: TaskEnding) -> dict[str, Any]:
    if ending.error is not None:
        return {"jsonrpc": "2.0", "id": ctx.request_id, "error": ending.error}
    return ok_body(ctx.request_id, ctx.version, ending.result or {"content": []})


def _detached(ctx: RequestContext) -> RequestContext:
    return replace(ctx, emit=None, audit_id=None, session=None)


def _upstream_error_body(ctx: RequestContext, error: GatewayError, record: TaskRecord) -> dict[str, Any]:
    """An upstream's error about a task, as the agent reads it: naming the gateway's task id."""
    return gateway_error_body(ctx.request_id, namespaced_error(error, record), server=record.server)


def _too_many(ctx: RequestContext, exc: TooManyTasks) -> dict[str, Any]:
    return gateway_error_body(ctx.request_id, GatewayError(kind=ErrorKind.RATE_LIMITED, message=str(exc)))
