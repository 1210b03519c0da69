"""A2A 1.0's JSON-RPC binding as the executor speaks it: the requests it sends, what an answer means.

Only what a tool call needs: `SendMessage` with a text part (and a data part when the call has
`data`), `GetTask` while the task works, `CancelTask` when the call's time runs out. An answer is
either a `message` (the agent answered at once) or a `task`; a task in a final state becomes the MCP
result (its artifacts' parts, else its status message's), one still working is polled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "FINAL",
    "PROTOCOL_HEADERS",
    "Answer",
    "WireError",
    "cancel_task",
    "get_task",
    "read_answer",
    "send_message",
]

PROTOCOL_HEADERS: Final = {"A2A-Version": "1.0", "Accept": "application/json"}
FINAL: Final = frozenset({"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED"})
"""States after which a task never changes."""
_WAITING_FOR_USER: Final = frozenset({"TASK_STATE_INPUT_REQUIRED", "TASK_STATE_AUTH_REQUIRED"})
_FAILED: Final = frozenset({"TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED"})
_MAX_PARTS: Final = 256


class WireError(ValueError):
    """The agent's answer is not A2A JSON-RPC, or is a JSON-RPC error (its message, bounded)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What one answer says: a finished result, or a task still running."""

    task_id: str | None
    context_id: str | None
    state: str
    """`TASK_STATE_*`, or `MESSAGE` for a direct message answer."""
    result: dict[str, Any] | None
    """The MCP `CallToolResult` when the answer is final (or waits for the user), else None."""


def _rpc(method: str, params: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": method, "params": params})


def send_message(arguments: dict[str, Any], skill: str) -> bytes:
    """`SendMessage` for a tool call's arguments (`message`, optional `data` and `contextId`).

    The message's metadata names the skill the tool stands for (`skillId`: A2A addresses an agent, not a
    skill, so this is a hint the agent may use)."""
    parts: list[dict[str, Any]] = [{"text": str(arguments.get("message", ""))}]
    if isinstance(arguments.get("data"), dict):
        parts.append({"data": arguments["data"], "mediaType": "application/json"})
    message: dict[str, Any] = {
        "messageId": uuid.uuid4().hex,
        "role": "ROLE_USER",
        "parts": parts,
        "metadata": {"skillId": skill},
    }
    if isinstance(arguments.get("contextId"), str):
        message["contextId"] = arguments["contextId"]
    configuration = {"acceptedOutputModes": ["text/plain", "application/json"]}
    return _rpc("SendMessage", {"message": message, "configuration": configuration})


def get_task(task_id: str) -> bytes:
    return _rpc("GetTask", {"id": task_id})


def cancel_task(task_id: str) -> bytes:
    return _rpc("CancelTask", {"id": task_id})


def read_answer(body: bytes) -> Answer:
    """The answer to `SendMessage` or `GetTask` (`result.task`, `result.message`, or a bare task)."""
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WireError("the agent's answer is not JSON") from None
    if not isinstance(reply, dict):
        raise WireError("the agent's answer is not a JSON-RPC response")
    if isinstance(reply.get("error"), dict):
        error = reply["error"]
        raise WireError(f"the agent refused: {str(error.get('message', ''))[:500]} (code {error.get('code')})")
    result = reply.get("result")
    if not isinstance(result, dict):
        raise WireError("the agent's answer has no result")
    if isinstance(result.get("message"), dict):
        message = result["message"]
        return Answer(None, _str(message.get("contextId")), "MESSAGE", _mcp(message.get("parts"), False, None))
    task = result.get("task")
    return _task(task if isinstance(task, dict) else result)


def _task(task: dict[str, Any]) -> Answer:
    status: dict[str, Any] = task["status"] if isinstance(task.get("status"), dict) else {}
    state = str(status.get("state", ""))
    task_id, context_id = _str(task.get("id")), _str(task.get("contextId"))
    if not state.startswith("TASK_STATE_") or task_id is None:
        raise WireError("the agent's answer is neither a message nor a task with an id and a state")
    if state not in FINAL and state not in _WAITING_FOR_USER:
        return Answer(task_id, context_id, state, None)
    parts: list[Any] = []
    for artifact in task.get("artifacts") or []:
        if isinstance(artifact, dict):
            parts.extend(artifact.get("parts") or [])
    said = (status.get("message") or {}).get("parts") if isinstance(status.get("message"), dict) else None
    if not parts or state not in ("TASK_STATE_COMPLETED",):
        parts = [*(said or []), *parts]
    error = state in _FAILED or state in _WAITING_FOR_USER
    prefix = None
    if state in _WAITING_FOR_USER:
        needs = "input" if state == "TASK_STATE_INPUT_REQUIRED" else "authorization"
        prefix = f"the agent needs {needs} (task {task_id}): "
    elif error:
        prefix = f"the agent's task ended {state.removeprefix('TASK_STATE_').lower()}: "
    result = _mcp(parts, error, prefix)
    result["_meta"] = {"io.a2a/task": {"id": task_id, "contextId": context_id, "state": state}}
    return Answer(task_id, context_id, state, result)


def _mcp(parts: Any, error: bool, prefix: str | None) -> dict[str, Any]:
    """Parts as MCP content.

    Text as text, data as JSON text (and `structuredContent` when it is the only data part), a file by
    URL as a resource link, raw bytes as an embedded blob."""
    content: list[dict[str, Any]] = []
    data: list[Any] = []
    for part in (parts if isinstance(parts, list) else [])[:_MAX_PARTS]:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            content.append({"type": "text", "text": part["text"]})
        elif "data" in part:
            data.append(part["data"])
            content.append({"type": "text", "text": orjson.dumps(part["data"]).decode()})
        elif isinstance(part.get("url"), str):
            name = str(part.get("filename") or part["url"])[:200]
            content.append({"type": "resource_link", "uri": part["url"], "name": name, **_media(part)})
        elif isinstance(part.get("raw"), str):
            uri = f"a2a:part/{part.get('filename') or 'file'}"
            content.append({"type": "resource", "resource": {"uri": uri, "blob": part["raw"], **_media(part)}})
    if prefix is not None:
        content.insert(0, {"type": "text", "text": prefix.rstrip(": ") if not content else prefix})
    result: dict[str, Any] = {"content": content, "isError": error}
    if len(data) == 1 and isinstance(data[0], dict) and not error:
        result["structuredContent"] = data[0]
    return result


def _media(part: dict[str, Any]) -> dict[str, str]:
    media = part.get("mediaType")
    return {"mimeType": media} if isinstance(media, str) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
