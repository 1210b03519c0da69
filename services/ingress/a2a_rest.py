"""A2A's HTTP+JSON binding in front: the same front as the JSON-RPC one, under REST paths.

`POST /a2a/<server>/message:send`, `POST .../message:stream` (SSE of bare `StreamResponse`s),
`GET .../tasks/<id>` and `POST .../tasks/<id>:cancel` answer what `SendMessage`,
`SendStreamingMessage`, `GetTask` and `CancelTask` answer on `/a2a/<server>` (`a2a_front`); an
error is a `google.rpc.Status` with an `ErrorInfo` whose `reason` is A2A's (`TASK_NOT_FOUND`, ...),
under the HTTP status A2A maps it to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from libs.common.contracts.messages import Caller
from services.ingress.a2a_front import MAX_MESSAGE_BYTES, A2aFront, refused, stream_events
from services.ingress.auth.keys import AuthFailure

__all__ = ["a2a_rest_router"]

_BY_CODE: Final[dict[int, tuple[int, str, str]]] = {
    -32001: (404, "NOT_FOUND", "TASK_NOT_FOUND"),
    -32002: (400, "FAILED_PRECONDITION", "TASK_NOT_CANCELABLE"),
    -32004: (400, "FAILED_PRECONDITION", "UNSUPPORTED_OPERATION"),
    -32600: (400, "INVALID_ARGUMENT", "INVALID_REQUEST"),
    -32602: (400, "INVALID_ARGUMENT", "INVALID_PARAMS"),
    -32601: (404, "NOT_FOUND", "METHOD_NOT_FOUND"),
}
"""A JSON-RPC error code -> (HTTP status, gRPC status, A2A reason) of the HTTP+JSON binding."""
TaskAction = Callable[[Caller, Any, Any], Awaitable[dict[str, Any]]]
"""`A2aFront.get_task` or `.cancel_task`: (caller, JSON-RPC id, params) -> the JSON-RPC answer."""
_REFUSED: Final = (403, "PERMISSION_DENIED", "")
"""A gateway refusal (a grant, a policy, a budget): the message says which."""


def _status(error: dict[str, Any]) -> JSONResponse:
    """A JSON-RPC error as the binding's `google.rpc.Status`."""
    code = int(error.get("code", -32603))
    status, grpc, reason = _BY_CODE.get(code, _REFUSED if code <= -32000 else (500, "INTERNAL", "INTERNAL_ERROR"))
    body: dict[str, Any] = {"code": status, "status": grpc, "message": str(error.get("message", ""))}
    if reason:
        body["details"] = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "a2a-protocol.org"}
        ]
    return JSONResponse({"error": body}, status)


def _answered(body: dict[str, Any]) -> JSONResponse:
    return _status(body["error"]) if "error" in body else JSONResponse(body["result"])


def a2a_rest_router(front: A2aFront, authenticate: Callable[[Request], Caller | AuthFailure]) -> APIRouter:
    """The binding's routes over `front`, each behind `authenticate` (a 401 without a credential)."""
    router = APIRouter()

    async def read(request: Request) -> tuple[Caller, Any, int] | Response:
        caller = authenticate(request)
        if isinstance(caller, AuthFailure):
            return refused(caller)
        raw = await request.body()
        if len(raw) > MAX_MESSAGE_BYTES:
            return _status({"code": -32600, "message": f"the request is larger than {MAX_MESSAGE_BYTES} bytes"})
        try:
            params = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return _status({"code": -32600, "message": "the request is not JSON"})
        return caller, params, len(raw)

    async def on_message(request: Request, server: str, *, stream: bool) -> Response:
        """One message sent to `server`: the answer as JSON, or with `stream` as SSE of its events."""
        got = await read(request)
        if isinstance(got, Response):
            return got
        caller, params, size = got
        body = await front.answer(caller, server, None, params, size, stream=stream)
        if not stream or "error" in body:
            return _answered(body)
        data = b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in stream_events(body["result"]))
        return Response(data, media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @router.post("/a2a/{server}/message:send")
    async def send(request: Request, server: str) -> Response:
        return await on_message(request, server, stream=False)

    @router.post("/a2a/{server}/message:stream")
    async def stream(request: Request, server: str) -> Response:
        return await on_message(request, server, stream=True)

    async def on_task(request: Request, task_id: str, act: TaskAction) -> Response:
        caller = authenticate(request)
        if isinstance(caller, AuthFailure):
            return refused(caller)
        return _answered(await act(caller, None, {"id": task_id}))

    @router.get("/a2a/{server}/tasks/{task_id}")
    async def get_task(request: Request, server: str, task_id: str) -> Response:
        return await on_task(request, task_id, front.get_task)

    @router.post("/a2a/{server}/tasks/{task_id}:cancel")
    async def cancel_task(request: Request, server: str, task_id: str) -> Response:
        return await on_task(request, task_id, front.cancel_task)

    return router
