"""A2A in front: `/a2a/<server>` serves an A2A agent behind Bastion to A2A clients (JSON-RPC binding, 1.0).

The card (`/a2a/<server>/.well-known/agent-card.json`) is made from what the caller may use: the
agent's skills that are tools of the caller's key, Bastion's URL as the one interface, a bearer
scheme (a Bastion key or a Bastion OAuth access token). `SendMessage` becomes the `tools/call` of
the skill the message names in `metadata.skillId` (or of the caller's only skill of that agent),
by the same route `/mcp` takes, so grants, Cedar, approvals, budgets, limits, guardrails and the
audit row are the tool call's. The call runs the agent's task to its end (the executor follows it),
so the answer is the finished task or the agent's message; tasks are not kept for `GetTask` or
`CancelTask`, which answer `TaskNotFoundError` saying so (docs/a2a.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Final

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from libs.common.contracts.a2a_config import skill_tool
from libs.common.contracts.messages import AuditEvent, Caller
from services.ingress.auth.keys import AuthFailure
from services.ingress.context import RequestContext
from services.ingress.handlers import Handlers
from services.ingress.protocol import result_object

__all__ = ["MAX_MESSAGE_BYTES", "A2aFront", "a2a_router", "refused", "stream_events"]

_META: Final = "io.a2a/agent"
_TASK_META: Final = "io.a2a/task"
MAX_MESSAGE_BYTES: Final = 1024 * 1024
_PARSE, _INVALID, _NO_METHOD, _PARAMS = -32700, -32600, -32601, -32602
_TASK_NOT_FOUND, _NOT_CANCELABLE, _UNSUPPORTED = -32001, -32002, -32004
TASK_TTL_MS: Final = 3_600_000
"""How long a task the front hosts is kept (the server's `tasks` setting decides when a call becomes one)."""
_STATES: Final = {
    "working": "TASK_STATE_WORKING",
    "input_required": "TASK_STATE_INPUT_REQUIRED",
    "completed": "TASK_STATE_COMPLETED",
    "failed": "TASK_STATE_FAILED",
    "cancelled": "TASK_STATE_CANCELED",
}
_VERSION: Final = "2025-11-25"
"""The MCP protocol version the front's requests are dispatched under: the one whose tasks
(`params.task`, `tasks/get`, `tasks/result`, `tasks/cancel`) the front's tasks are."""


def refused(failure: AuthFailure) -> JSONResponse:
    """No credential, or a wrong one: 401, on every route of the front."""
    return JSONResponse({"error": failure.error, "message": failure.message}, 401, {"WWW-Authenticate": "Bearer"})


def _result_body(rpc_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "result": result}


def _error_body(rpc_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}}


def stream_events(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """A `SendMessageResponse` as A2A's `StreamResponse`s.

    A message is itself; a task is the task working, each artifact, then its final status."""
    task = answer.get("task")
    if not isinstance(task, dict):
        return [answer]
    ids = {"taskId": task["id"], "contextId": task["contextId"]}
    events: list[dict[str, Any]] = [{"task": {**task, "status": {"state": "TASK_STATE_WORKING"}, "artifacts": []}}]
    for artifact in task.get("artifacts") or []:
        events.append({"artifactUpdate": {**ids, "artifact": artifact, "lastChunk": True}})
    events.append({"statusUpdate": {**ids, "status": task["status"]}})
    return events


def _code_and_message(error: dict[str, Any]) -> tuple[int, str]:
    return int(error.get("code", -32603)), str(error.get("message", ""))


def _rpc_error(rpc_id: Any, code: int, message: str, status: int = 200) -> JSONResponse:
    return JSONResponse(_error_body(rpc_id, code, message), status)


def _skills(tools: list[dict[str, Any]], server: str) -> dict[str, dict[str, Any]]:
    """Skill id -> its tool, for the tools of `server` that stand for an A2A skill."""
    found: dict[str, dict[str, Any]] = {}
    for tool in tools:
        meta = (tool.get("_meta") or {}).get(_META)
        if isinstance(meta, dict) and str(tool.get("name", "")).startswith(f"{server}__"):
            found[str(meta.get("skill"))] = tool
    return found


def _card(server: str, skills: dict[str, dict[str, Any]], url: str) -> dict[str, Any]:
    agent = next(iter(skills.values()))["_meta"][_META].get("agent", server)
    return {
        "name": agent,
        "description": f"{agent}, through the Bastion gateway (server {server!r})",
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": url, "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
        ],
        "capabilities": {"streaming": True, "pushNotifications": False},
        "securitySchemes": {"bastion": {"httpAuthSecurityScheme": {"scheme": "bearer"}}},
        "securityRequirements": [{"schemes": {"bastion": {"list": []}}}],
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": [
            {"id": skill, "name": tool.get("title") or skill, "description": tool.get("description") or "", "tags": []}
            for skill, tool in skills.items()
        ],
    }


def _arguments(message: dict[str, Any]) -> dict[str, Any]:
    """The skill tool's arguments: the text parts joined, the first data part, the context id."""
    given = message.get("parts")
    parts: list[Any] = given if isinstance(given, list) else []
    text = "\n".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
    arguments: dict[str, Any] = {"message": text}
    data = next((p["data"] for p in parts if isinstance(p, dict) and isinstance(p.get("data"), dict)), None)
    if data is not None:
        arguments["data"] = data
    if isinstance(message.get("contextId"), str):
        arguments["contextId"] = message["contextId"]
    return arguments


def _parts(result: dict[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for block in result.get("content") or []:
        if block.get("type") == "text":
            parts.append({"text": block.get("text", "")})
        elif block.get("type") == "resource_link":
            parts.append({"url": block.get("uri", ""), "filename": block.get("name", "")})
    if isinstance(result.get("structuredContent"), dict):
        parts = [p for p in parts if "text" not in p] + [{"data": result["structuredContent"]}]
    return parts


def _answer(result: dict[str, Any], context_id: str | None, task_id: str | None = None) -> dict[str, Any]:
    """The tool's result as A2A's `SendMessageResponse`: the agent's task (finished) or its message.

    A task carries the gateway's id (`task_id`, or a new one): the agent's own is no use to a caller, who
    reaches tasks only through Bastion."""
    task = (result.get("_meta") or {}).get(_TASK_META)
    if task_id is not None and not isinstance(task, dict):
        task = {"state": "TASK_STATE_FAILED" if result.get("isError") else "TASK_STATE_COMPLETED"}
    parts = _parts(result)
    if not isinstance(task, dict):
        state = "TASK_STATE_FAILED" if result.get("isError") else None
        if state is None:
            message = {"messageId": uuid.uuid4().hex, "role": "ROLE_AGENT", "parts": parts}
            return {"message": {**message, **({"contextId": context_id} if context_id else {})}}
        task = {"id": uuid.uuid4().hex, "contextId": context_id or uuid.uuid4().hex, "state": state}
    status_message = {"messageId": uuid.uuid4().hex, "role": "ROLE_AGENT", "parts": parts}
    finished = task.get("state") == "TASK_STATE_COMPLETED"
    gateway_id = task_id or uuid.uuid4().hex
    return {
        "task": {
            "id": gateway_id,
            "contextId": str(task.get("contextId") or context_id or gateway_id),
            "status": {"state": task.get("state"), **({} if finished else {"message": status_message})},
            "artifacts": [{"artifactId": uuid.uuid4().hex, "name": "answer", "parts": parts}] if finished else [],
        }
    }


class A2aFront:
    def __init__(self, handlers: Handlers, emit_audit: Callable[[AuditEvent], object]) -> None:
        self.handlers = handlers
        self.emit_audit = emit_audit

    def _ctx(self, caller: Caller, request_bytes: int) -> RequestContext:
        return RequestContext(caller=caller, version=_VERSION, request_id=uuid.uuid4().hex, request_bytes=request_bytes)

    async def skills(self, caller: Caller, server: str) -> dict[str, dict[str, Any]]:
        payload, _ = await self.handlers.dispatch(self._ctx(caller, 0), "tools/list", {})
        if "error" in payload:
            return {}
        tools = payload["result"]["tools"]
        if isinstance(tools, orjson.Fragment):  # the handlers' cached encoding
            tools = orjson.loads(orjson.dumps(tools))
        return _skills(tools, server)

    async def send(self, caller: Caller, server: str, rpc_id: Any, params: Any, size: int) -> JSONResponse:
        body = await self.answer(caller, server, rpc_id, params, size, stream=False)
        return JSONResponse(body)

    async def stream(self, caller: Caller, server: str, rpc_id: Any, params: Any, size: int) -> Response:
        """`SendStreamingMessage`: the answer as A2A's stream events, over SSE, once the skill ended.

        A message is one event; a task is the task (working), its artifact and its final status, the
        last event. Nothing streams before the end: the executor returns the skill's result whole."""
        body = await self.answer(caller, server, rpc_id, params, size, stream=True)
        events = [body] if "error" in body else [_result_body(rpc_id, event) for event in stream_events(body["result"])]
        data = b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events)
        return Response(data, media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def answer(
        self, caller: Caller, server: str, rpc_id: Any, params: Any, size: int, *, stream: bool
    ) -> dict[str, Any]:
        """The JSON-RPC answer to a message: a result (`SendMessageResponse`) or an error."""
        message = params.get("message") if isinstance(params, dict) else None
        if not isinstance(message, dict):
            return _error_body(rpc_id, _PARAMS, "params.message must be an A2A Message object")
        given = message.get("metadata")
        metadata: dict[str, Any] = given if isinstance(given, dict) else {}
        skill = metadata.get("skillId") if isinstance(metadata.get("skillId"), str) else None
        if skill is None:  # only then is the caller's list needed: its one skill of this agent, if one
            skills = await self.skills(caller, server)
            if len(skills) != 1:
                named = ", ".join(sorted(skills)) or "none"
                why = f"name one of your skills of this agent in message.metadata.skillId: {named}"
                return _error_body(rpc_id, _PARAMS, why)
            skill = next(iter(skills))
        # called by the tool name the executor lists it under; one the caller may not use is refused
        # by policy, and audited
        name = f"{server}__{skill_tool(skill)}"
        call: dict[str, Any] = {"name": name, "arguments": _arguments(message)}
        configuration = params.get("configuration")
        if not stream and isinstance(configuration, dict) and configuration.get("returnImmediately") is True:
            call["task"] = {"ttl": TASK_TTL_MS}  # hosted on the bus when the call outlasts the server's `after_ms`
        payload, audit = await self.handlers.dispatch(self._ctx(caller, size), "tools/call", call)
        if audit is not None:
            self.emit_audit(audit)
        if "error" in payload:
            return _error_body(rpc_id, *_code_and_message(payload["error"]))
        context_id = message.get("contextId") if isinstance(message.get("contextId"), str) else None
        result = result_object(payload["result"])
        hosted = result.get("task")
        if isinstance(hosted, dict):
            task_id = str(hosted.get("taskId"))
            working = {"id": task_id, "contextId": context_id or task_id, "status": {"state": "TASK_STATE_WORKING"}}
            return _result_body(rpc_id, {"task": working})
        return _result_body(rpc_id, _answer(result, context_id))

    async def get_task(self, caller: Caller, rpc_id: Any, params: Any) -> dict[str, Any]:
        """`tasks/get` of the gateway-hosted task, then `tasks/result` once it ended: any replica answers."""
        task_id = _task_id(params)
        if task_id is None:
            return _error_body(rpc_id, _PARAMS, "params.id must name a task")
        payload, _ = await self.handlers.dispatch(self._ctx(caller, 0), "tasks/get", {"taskId": task_id})
        if "error" in payload:
            return _error_body(rpc_id, _TASK_NOT_FOUND, f"no task {task_id[:64]!r} of yours")
        status = result_object(payload["result"]).get("status")
        if status not in ("completed", "failed"):
            return _result_body(rpc_id, _bare(task_id, _STATES.get(str(status), "TASK_STATE_WORKING")))
        payload, _ = await self.handlers.dispatch(self._ctx(caller, 0), "tasks/result", {"taskId": task_id})
        if "error" in payload:
            said = {
                "messageId": uuid.uuid4().hex,
                "role": "ROLE_AGENT",
                "parts": [{"text": _code_and_message(payload["error"])[1]}],
            }
            return _result_body(
                rpc_id,
                {**_bare(task_id, "TASK_STATE_FAILED"), "status": {"state": "TASK_STATE_FAILED", "message": said}},
            )
        task: dict[str, Any] = _answer(result_object(payload["result"]), None, task_id)["task"]
        return _result_body(rpc_id, task)

    async def cancel_task(self, caller: Caller, rpc_id: Any, params: Any) -> dict[str, Any]:
        task_id = _task_id(params)
        if task_id is None:
            return _error_body(rpc_id, _PARAMS, "params.id must name a task")
        payload, audit = await self.handlers.dispatch(self._ctx(caller, 0), "tasks/cancel", {"taskId": task_id})
        if audit is not None:
            self.emit_audit(audit)
        if "error" in payload:
            message = _code_and_message(payload["error"])[1]
            found = await self.handlers.dispatch(self._ctx(caller, 0), "tasks/get", {"taskId": task_id})
            return _error_body(rpc_id, _NOT_CANCELABLE if "error" not in found[0] else _TASK_NOT_FOUND, message[:500])
        return _result_body(rpc_id, _bare(task_id, "TASK_STATE_CANCELED"))


def _task_id(params: Any) -> str | None:
    task_id = params.get("id") if isinstance(params, dict) else None
    return task_id if isinstance(task_id, str) and task_id else None


def _bare(task_id: str, state: str) -> dict[str, Any]:
    return {"id": task_id, "contextId": task_id, "status": {"state": state}}


def a2a_router(
    front: A2aFront,
    authenticate: Callable[[Request], Caller | AuthFailure],
    public_url: Callable[[], str],
) -> APIRouter:
    """`GET /a2a/{server}/.well-known/agent-card.json` and `POST /a2a/{server}` (JSON-RPC)."""
    router = APIRouter()

    @router.get("/a2a/{server}/.well-known/agent-card.json")
    async def card(request: Request, server: str) -> JSONResponse:
        caller = authenticate(request)
        if isinstance(caller, AuthFailure):
            return refused(caller)
        skills = await front.skills(caller, server)
        if not skills:
            return JSONResponse({"error": "not_found", "message": f"no A2A agent {server!r} you may use"}, 404)
        return JSONResponse(_card(server, skills, f"{public_url()}/a2a/{server}"))

    @router.post("/a2a/{server}")
    async def rpc(request: Request, server: str) -> Response:
        caller = authenticate(request)
        if isinstance(caller, AuthFailure):
            return refused(caller)
        raw = await request.body()
        if len(raw) > MAX_MESSAGE_BYTES:
            return _rpc_error(None, _INVALID, f"the request is larger than {MAX_MESSAGE_BYTES} bytes", 413)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _rpc_error(None, _PARSE, "the request is not JSON")
        if not isinstance(body, dict) or body.get("jsonrpc") != "2.0" or not isinstance(body.get("method"), str):
            return _rpc_error(None, _INVALID, "not a JSON-RPC 2.0 request")
        rpc_id, method = body.get("id"), body["method"]
        if method == "SendMessage":
            return await front.send(caller, server, rpc_id, body.get("params"), len(raw))
        if method == "SendStreamingMessage":
            return await front.stream(caller, server, rpc_id, body.get("params"), len(raw))
        if method == "GetTask":
            return JSONResponse(await front.get_task(caller, rpc_id, body.get("params")))
        if method == "CancelTask":
            return JSONResponse(await front.cancel_task(caller, rpc_id, body.get("params")))
        if method in ("SubscribeToTask", "ListTasks") or "PushNotification" in method:
            return _rpc_error(rpc_id, _UNSUPPORTED, f"{method} is not supported here (the card says so)")
        return _rpc_error(rpc_id, _NO_METHOD, f"unknown method {method[:64]!r}")

    return router
