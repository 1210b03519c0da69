"""A lean `tools/call` on an established stdio or SSE session.

One request written as a JSON line on the child's stdin (stdio, `stdio_pipe`) or through the SDK
transport's own write stream (SSE: a POST to its endpoint), its answer taken before the SDK session sees
it: off the pipe as bytes (`line`), or off the event stream's read side (`take`).

The SDK's stdio transport stays whole (the child process, its pipes, parsing each line, shutdown);
what this skips is the session's per-request dispatcher (a request model validated, a response
stream and task per request, the result routed back through it), as `lean.HttpLink` does for
streamable HTTP. Everything else on the pipe (notifications, server requests, listings) goes to the
SDK session as before, except log messages, which go to the session's logging callback
(`on_log`) as they are read, so a call's outcome counts those that came before its answer. The
request is stamped by the session and its result checked as `ClientSession.send_request` would
(`lean.stamp`, `lean.checked`); a plain `tools/call` comes stamped from the session's kept plan
(`lean_session`, `lean_plan`) straight to `send`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp.client._transport import WriteStream
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED

from libs.common.contracts import json_codec

from ...answer_limits import AnswerTooLarge
from .lean import LogFn, deliver_log, next_request_id, stamp, tell_cancelled
from .lean_results import answer_of, checked
from .stdio_pipe import SendLine

__all__ = ["StdioLink"]

_Answer = types.JSONRPCResponse | types.JSONRPCError | dict[str, Any]
_LOG = "notifications/message"
_OURS = b'"bastion-'
"""In every line answering a lean request (its id); a line without it is not read as JSON here."""
_LOGGED = b'"notifications/message"'
_ABANDONED = 1024
"""Ids of abandoned requests remembered at most (their answers are dropped when they come)."""


@dataclass(eq=False)
class StdioLink:
    """What a lean send needs of one live stdio (or SSE) session.

    The transport's write stream, and the answers its read side hands over (`take`, called by the
    executor's watched read stream)."""

    outbound: WriteStream[SessionMessage] | None = None
    """The SDK transport's write side (SSE); None when requests go on the pipe as lines (`send_line`)."""
    send_line: SendLine | None = None
    """Writes a line to the child's stdin (`stdio_pipe`); answers then come through `line`."""
    max_result: int | None = None
    """`BASTION_MAX_RESULT_BYTES`, which an answer too long to read (`overlong`) is reported against."""
    on_log: LogFn | None = None
    """What the SDK session calls for a log message (`AgentLink.on_log`)."""
    usable: bool = True
    sent: int = 0
    """Requests sent the lean way so far."""
    _waiting: dict[str, asyncio.Future[_Answer]] = field(default_factory=dict)
    _cancels: set[asyncio.Task[None]] = field(default_factory=set)
    _abandoned: set[str] = field(default_factory=set)
    """Requests given up on whose answer may still come: dropped when it does."""
    _closed: bool = False

    async def request(self, session: ClientSession, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one request on the session's pipe and return its result as a wire dict.

        Raises what `ClientSession.send_request` raises for the same answers."""
        request_id = next_request_id()
        data, _ = stamp(session, method, params)  # stdio has no headers: only the era's _meta counts
        message = {"jsonrpc": "2.0", "id": request_id, **data}
        result = await self.send(session, request_id, message, json_codec.dumps(message))
        return checked(method, session.protocol_version or "2025-11-25", result)

    async def send(
        self, session: ClientSession, request_id: str, message: dict[str, Any], body: bytes
    ) -> dict[str, Any]:
        """Send `message` (stamped; `body` its JSON) and return its result, unchecked (`lean_results.checked`).

        Raises what `ClientSession.send_request` raises for the same answers, except the result checks."""
        if self._closed:
            raise MCPError(CONNECTION_CLOSED, "Connection closed")
        answer: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answer
        self.sent += 1
        try:
            try:
                if self.send_line is not None:
                    await self.send_line(body + b"\n")
                else:
                    assert self.outbound is not None, "a StdioLink writes lines or to a write stream"
                    request = types.JSONRPCRequest.model_construct(
                        jsonrpc="2.0", id=request_id, method=message["method"], params=message["params"]
                    )
                    await self.outbound.send(SessionMessage(request))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                raise MCPError(CONNECTION_CLOSED, "Connection closed") from None
            try:
                got = await answer
            except asyncio.CancelledError:  # the deadline, or the agent cancelled
                if len(self._abandoned) >= _ABANDONED:
                    self._abandoned.clear()  # answers that never came; a late one goes to the session
                self._abandoned.add(request_id)
                tell_cancelled(session, request_id, self._cancels)
                raise
        finally:
            self._waiting.pop(request_id, None)
        if isinstance(got, dict):
            return answer_of(got)
        if isinstance(got, types.JSONRPCError):
            raise MCPError(got.error.code, got.error.message, got.error.data)
        return got.result

    async def line(self, line: bytes) -> bool:
        """True when `line` (read off the pipe) answers a lean request, or is a log message.

        It goes to that request, or to `on_log` before the next line is read, not to the SDK session.
        Lines that can be neither are not parsed here."""
        ours = _OURS in line and bool(self._waiting or self._abandoned)
        if not ours and (self.on_log is None or _LOGGED not in line):
            return False
        try:
            message = json_codec.loads(line)
        except ValueError:
            return False  # the session reports it
        if not isinstance(message, dict):
            return False
        if "method" not in message:
            request_id = message.get("id")
            return ours and isinstance(request_id, str) and self._answered(request_id, message)
        if self.on_log is not None and message["method"] == _LOG and "id" not in message:
            await deliver_log(self.on_log, message.get("params"))
            return True
        return False

    async def take(self, message: object) -> bool:
        """True when `message` (off the read stream) answers a lean request, or is a log message.

        It goes to that request, or to `on_log` before the next line is read, not to the SDK session."""
        if not isinstance(message, SessionMessage):
            return False
        inner = message.message
        if self.on_log is not None and isinstance(inner, types.JSONRPCNotification) and inner.method == _LOG:
            await deliver_log(self.on_log, inner.params)
            return True
        if not isinstance(inner, types.JSONRPCResponse | types.JSONRPCError) or not isinstance(inner.id, str):
            return False
        return self._answered(inner.id, inner)

    def overlong(self, request_id: int | str) -> bool:
        """The answer to `request_id` was too long to read (`stdio_pipe`).

        True when that was a lean request, which then fails as too large (or was abandoned: nobody
        waits)."""
        if not isinstance(request_id, str):
            return False
        waiting = self._waiting.pop(request_id, None)
        if waiting is None:
            return self._answered(request_id, {})  # an abandoned request's: dropped
        assert self.max_result is not None, "lines are cut (and overlong called) only with a result limit"
        if not waiting.done():
            waiting.set_exception(AnswerTooLarge(self.max_result))
        return True

    def _answered(self, request_id: str, answer: _Answer) -> bool:
        waiting = self._waiting.pop(request_id, None)
        if waiting is None:
            if request_id in self._abandoned:
                self._abandoned.discard(request_id)
                return True  # the answer to a request we gave up on: nobody waits for it
            return False  # not ours: the session decides, as for any stray answer
        if not waiting.done():
            waiting.set_result(answer)
        return True

    def closed(self) -> None:
        """The pipe ended: requests still waiting fail as the SDK's would."""
        self._closed = True
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(MCPError(CONNECTION_CLOSED, "Connection closed"))
        self._waiting.clear()
