"""A scripted model provider: a real HTTP server on a free port speaking one provider's wire
(`tests/support/provider_wires`: OpenAI chat completions by default, or Azure OpenAI, Anthropic
Messages, Gemini, Vertex AI, Bedrock Converse), JSON answers and streams as that provider sends them.

Written on raw asyncio streams so a test can also make it misbehave at the transport level: close
the connection without answering (a reset before any token), or answer with an HTTP error. Each
request takes the next step of the script; every request received is recorded (headers, body).

It checks each request as its provider does and answers a refused one (HTTP 400 or 401/403, in
the wire's own error shape) taking no step: for OpenAI's wire (`conversation_problem`) a message
without a role, a tool call no `tool` message answers, a call id used twice, a `tool` message
answering no call; the other wires check credentials, their SDK's schema and their own rules.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tests.support.provider_wires import Answer, Call, Reply, Speaker, speaker_for
from tests.support.provider_wires.base import json_answer

__all__ = [
    "Broken",
    "Computed",
    "Cut",
    "Drop",
    "Fail",
    "Held",
    "Overload",
    "Raw",
    "Reply",
    "ScriptedProvider",
    "Stall",
    "Stop",
    "conversation_problem",
    "scripted_provider",
]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass
class Fail:
    status: int = 500
    message: str = "the provider is having a bad day"
    retry_after: float | None = None


@dataclass
class Raw:
    """Answer `payload` as JSON with `status`, whatever the wire (an answer not of its shape)."""

    status: int
    payload: Any


@dataclass
class Overload:
    """Answer as the provider does when it is overloaded (Anthropic's 529, Gemini's and Bedrock's 503)."""


@dataclass
class Broken:
    """Start streaming `text`, then send the provider's error event (an overload) mid-stream."""

    text: str


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


Step = Reply | Fail | Raw | Overload | Broken | Drop | Stall | Cut | Stop | Held | Computed


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]
    path: str = ""


class ScriptedProvider:
    def __init__(self, wire: str = "openai", key: str | None = None) -> None:
        """`key`: the credential the provider expects (None: any, or for Bedrock, a SigV4 signature)."""
        self.wire = wire
        self.speaker: Speaker = speaker_for(wire, key)
        self.script: list[Step] = []
        self.received: list[Received] = []
        self.refused: list[str] = []
        """Why each malformed conversation was answered 400 (a test expecting none asserts it empty)."""
        self.release = asyncio.Event()
        self.always: Step | None = None
        """What to answer once the script ran out (None: a 500 saying so); a load's every request."""
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.port = 0

    def reset(self) -> None:
        """A script, a record of requests and a `release` of the next test's own (a module's provider)."""
        self.script, self.received, self.refused = [], [], []
        self.release = asyncio.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.speaker.prefix}"

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
            path = lines[0].split(" ")[1] if lines[0].count(" ") >= 2 else "/"
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            body = orjson.loads(raw)
            self.received.append(Received(headers, body, path))
            await self._answer(writer, reader, path, headers, raw, body)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        body: dict[str, Any],
    ) -> None:
        speaker = self.speaker
        route = speaker.route(path, body)
        if route is None:
            self.refused.append(f"no route {path}")
            return await _write(writer, speaker.error(404, f"no route {path}", None))
        refusal = speaker.refusal(path, headers, raw, body)
        if refusal is not None:
            self.refused.append(refusal.frames[0].decode(errors="replace"))
            return await _write(writer, refusal)
        model, streaming = route
        step = self.script.pop(0) if self.script else self.always or Fail(500, "the test script ran out of steps")
        if isinstance(step, Drop):
            return None
        if isinstance(step, Held):
            await asyncio.wait_for(self.release.wait(), 60)
            step = step.reply
        if isinstance(step, Computed):
            step = step.answer(body)
        if isinstance(step, Stall):
            await asyncio.wait_for(reader.read(), 60)  # EOF: the client closed its side
            return None
        if isinstance(step, Cut | Stop):
            # Cut: a declared length the body never reaches, the client sees the connection break;
            # Stop: no length, the body ends cleanly when the connection closes
            answer = speaker.stream(Reply(step.text), [], model, body, whole=False)
            return await _write(writer, answer, 1_000_000 if isinstance(step, Cut) else None)
        if isinstance(step, Fail):
            return await _write(writer, speaker.error(step.status, step.message, step.retry_after))
        if isinstance(step, Raw):
            return await _write(writer, json_answer(step.status, step.payload))
        if isinstance(step, Overload):
            return await _write(writer, speaker.overload())
        if isinstance(step, Broken):
            return await _write(writer, speaker.broken(step.text, model))
        calls = self._calls(step)
        if streaming:
            return await _write(writer, speaker.stream(step, calls, model, body, whole=True))
        return await _write(writer, speaker.completion(step, calls, model))

    def _calls(self, step: Reply) -> list[Call]:
        ids = step.ids or tuple(self.speaker.call_ids(len(step.tool_calls)))
        return [Call(call_id, name, arguments) for call_id, (name, arguments) in zip(ids, step.tool_calls, strict=True)]


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


def _head(status: int, content_type: str, length: int | None, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _write(writer: asyncio.StreamWriter, answer: Answer, length: int | None = None) -> None:
    """`answer` on the connection: a body with its length, or a stream's frames as they go (no
    length: the stream ends when the connection closes); `length` declares one the body never reaches."""
    if not answer.streamed and length is None:
        length = sum(len(frame) for frame in answer.frames)
    writer.write(_head(answer.status, answer.content_type, length, answer.headers))
    for frame in answer.frames:
        writer.write(frame)
        await writer.drain()


@contextlib.asynccontextmanager
async def scripted_provider(wire: str = "openai", key: str | None = None) -> AsyncIterator[ScriptedProvider]:
    provider = ScriptedProvider(wire, key)
    await provider.start()
    try:
        yield provider
    finally:
        await provider.stop()
