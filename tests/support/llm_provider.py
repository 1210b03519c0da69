"""A scripted OpenAI-compatible provider: a real HTTP server on a free port speaking the chat
completions wire format (JSON answers, and server-sent-event chunks with tool-call deltas).

Written on raw asyncio streams so a test can also make it misbehave at the transport level: close
the connection without answering (a reset before any token), or answer with an HTTP error. Each
request takes the next step of the script; every request received is recorded (headers, body).

It checks each conversation as strict OpenAI-compatible providers do (`conversation_problem`) and
answers a malformed one with HTTP 400, taking no step: a message without a role, a tool call no
`tool` message answers, a call id used twice, a `tool` message answering no call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "Computed",
    "Cut",
    "Drop",
    "Fail",
    "Held",
    "Reply",
    "ScriptedProvider",
    "Stall",
    "Stop",
    "conversation_problem",
    "scripted_provider",
]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass
class Reply:
    """A completion: assistant text and/or tool calls `(name, arguments)`; `ids` are the calls' ids
    when a test chooses them (some providers repeat ids across answers, or leave them empty)."""

    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    usage: tuple[int, int] = (10, 5)
    ids: tuple[str, ...] = ()


@dataclass
class Fail:
    status: int = 500
    message: str = "the provider is having a bad day"
    retry_after: int | None = None
    """Seconds sent as the `Retry-After` header."""


@dataclass
class Drop:
    """Close the connection without a response."""


@dataclass
class Stall:
    """Never answer: hold the connection until the client gives up and closes it."""


@dataclass
class Cut:
    """Stream `text` as a reply would, then break the connection mid-body (no finish, no `[DONE]`)."""

    text: str


@dataclass
class Stop:
    """Stream `text` as a reply would, then end the response cleanly: no finish reason, no usage, no `[DONE]`."""

    text: str


@dataclass
class Held:
    """Answer `reply` once the test sets `ScriptedProvider.release`."""

    reply: Reply


@dataclass
class Computed:
    """Answer what `answer` makes of the request body (a provider that reads what it was asked)."""

    answer: Callable[[dict[str, Any]], Reply | Fail]


Step = Reply | Fail | Drop | Stall | Cut | Stop | Held | Computed


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]


class ScriptedProvider:
    def __init__(self) -> None:
        self.script: list[Step] = []
        self.received: list[Received] = []
        self.refused: list[str] = []
        """Why each malformed conversation was answered 400 (a test expecting none asserts it empty)."""
        self.release = asyncio.Event()
        self.always: Step | None = None
        """What to answer once the script ran out (None: a 500 saying so); a load's every request."""
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.port = 0

    def reset(self) -> None:
        """A script, a record of requests and a `release` of the next test's own (a module's provider)."""
        self.script, self.received, self.refused = [], [], []
        self.release = asyncio.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def kill(self) -> None:
        """Die as a crashed process does: refuse new connections and break every open one."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = orjson.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
            self.received.append(Received(headers, body))
            problem = conversation_problem(body.get("messages"))
            if problem is not None:
                self.refused.append(problem)
                payload = orjson.dumps(
                    {"error": {"message": problem, "type": "invalid_request_error", "param": "messages", "code": None}}
                )
                writer.write(_head(400, "application/json", len(payload)) + payload)
                await writer.drain()
                return
            step = self.script.pop(0) if self.script else self.always or Fail(500, "the test script ran out of steps")
            if isinstance(step, Drop):
                return
            if isinstance(step, Held):
                await asyncio.wait_for(self.release.wait(), 60)
                step = step.reply
            if isinstance(step, Computed):
                step = step.answer(body)
            if isinstance(step, Stall):
                await asyncio.wait_for(reader.read(), 60)  # EOF: the client closed its side
                return
            if isinstance(step, Cut | Stop):
                # Cut: a declared length the body never reaches, the client sees the connection break;
                # Stop: no length, the body ends cleanly when the connection closes
                writer.write(_head(200, "text/event-stream", 1_000_000 if isinstance(step, Cut) else None))
                for chunk in self._chunks(Reply(step.text), body)[:-2]:  # no finish reason, no usage
                    writer.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                await writer.drain()
                return
            if isinstance(step, Fail):
                payload = orjson.dumps({"error": {"message": step.message, "type": "server_error", "code": None}})
                head = _head(step.status, "application/json", len(payload), step.retry_after)
                writer.write(head + payload)
            elif body.get("stream"):
                writer.write(_head(200, "text/event-stream", None))
                for chunk in self._chunks(step, body):
                    writer.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                    await writer.drain()
                writer.write(b"data: [DONE]\n\n")
            else:
                payload = orjson.dumps(self._completion(step, body))
                writer.write(_head(200, "application/json", len(payload)) + payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _tool_calls(self, step: Reply) -> list[dict[str, Any]]:
        ids = step.ids or tuple(f"call_{next(self._ids)}" for _ in step.tool_calls)
        return [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
            }
            for call_id, (name, arguments) in zip(ids, step.tool_calls, strict=True)
        ]

    @staticmethod
    def _usage(step: Reply) -> dict[str, int]:
        prompt, completion = step.usage
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _completion(self, step: Reply, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": step.text}
        calls = self._tool_calls(step)
        if calls:
            message["tool_calls"] = calls
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": self._usage(step),
        }

    def _chunks(self, step: Reply, body: dict[str, Any]) -> list[dict[str, Any]]:
        """As OpenAI streams: a role delta, text in pieces, each tool call's name then its arguments
        in two pieces, a finish reason, and (when asked for) a last chunk with the usage."""
        base = {"id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion.chunk", "created": 1_700_000_000}
        base["model"] = body.get("model")

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        chunks = [chunk({"role": "assistant", "content": ""})]
        text = step.text or ""
        chunks += [chunk({"content": text[i : i + 4]}) for i in range(0, len(text), 4)]
        for index, call in enumerate(self._tool_calls(step)):
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"]},
            }
            chunks.append(chunk({"tool_calls": [{**head, "function": {**head["function"], "arguments": ""}}]}))
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        chunks.append(chunk({}, "tool_calls" if step.tool_calls else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": self._usage(step)})
        return chunks


def conversation_problem(messages: Any) -> str | None:
    """Why a strict provider would refuse these `messages` (OpenAI's own wording where it has one), or None."""
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    seen: set[str] = set()
    unanswered: list[str] = []  # the calls of the last assistant message no tool message answered yet
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            return f"messages[{i}]: missing or unknown 'role' ({role!r})"
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in unanswered:
                return (
                    f"messages[{i}]: messages with role 'tool' must be a response to a preceding message with "
                    f"'tool_calls' ({call_id!r} answers none, or was answered already)"
                )
            unanswered.remove(call_id)
            continue
        if unanswered:
            break
        calls = message.get("tool_calls") if role == "assistant" else None
        for call in calls or []:
            call_id = call.get("id") if isinstance(call, dict) else None
            if not isinstance(call_id, str) or not call_id:
                return f"messages[{i}]: each tool call needs an 'id'"
            if call_id in seen:
                return f"messages[{i}]: duplicate tool_call id {call_id!r}"
            seen.add(call_id)
            unanswered.append(call_id)
    if unanswered:
        return (
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(unanswered)}"
        )
    return None


def _head(status: int, content_type: str, length: int | None, retry_after: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if retry_after is not None:
        lines.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@contextlib.asynccontextmanager
async def scripted_provider() -> AsyncIterator[ScriptedProvider]:
    provider = ScriptedProvider()
    await provider.start()
    try:
        yield provider
    finally:
        await provider.stop()
