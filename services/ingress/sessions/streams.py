"""Call streams: what an upstream sends while a call runs, on its way to the agent's open POST.

Each request that may stream gets a subject under this replica's one wildcard subscription
(opening one costs a dict insert, no NATS round trip). Executors publish `StreamEvent`s there;
each becomes a JSON-RPC message on the agent's SSE response. An event that is a NATS request
(sampling, elicitation, roots) goes to the agent with an id naming the executor's reply subject
(`SessionCodec.reply_id`); the agent's answer may reach any replica, which delivers it
(`deliver_reply`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError

from libs.common.contracts.messages import ClientReply, StreamEvent
from services.ingress.protocol import encode_json
from services.ingress.sessions.session_ids import SessionCodec

__all__ = ["LOG_LEVELS", "CallStream", "CallStreams"]

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], Awaitable[None]]

LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_RANK = {level: rank for rank, level in enumerate(LOG_LEVELS)}


class _Counted(Protocol):
    """An answer that says how many stream events its producer sent before it."""

    @property
    def events(self) -> int: ...


Answer = TypeVar("Answer", bound=_Counted)

_SETTLE_WAIT = 2.0
"""Seconds the answer waits for stream events the executor reported sending but that have not arrived."""


class CallStream:
    __slots__ = ("_changed", "_emit", "_min_rank", "key_id", "received", "subject", "token")

    def __init__(self, subject: str, token: str, key_id: str, emit: Emit, log_level: str | None) -> None:
        self.subject, self.token, self.key_id = subject, token, key_id
        self._emit = emit
        self._min_rank = _RANK.get(log_level, 0) if log_level else 0
        self.received = 0
        self._changed: asyncio.Event | None = None
        """Made by `settle`, the rare wait: most calls send no event, or all of them before their answer."""

    def wants(self, event: StreamEvent) -> bool:
        if event.method != "notifications/message" or not event.params:
            return True
        return _RANK.get(str(event.params.get("level")), len(LOG_LEVELS)) >= self._min_rank

    async def deliver(self, message: dict[str, Any]) -> None:
        try:
            await self._emit(message)
        finally:
            self.skip()

    def skip(self) -> None:
        self.received += 1
        if self._changed is not None:
            self._changed.set()

    async def settle(self, expected: int) -> None:
        """Wait (briefly) until `expected` events went out, so none arrives after the answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SETTLE_WAIT
        changed = self._changed = self._changed or asyncio.Event()
        while self.received < expected and loop.time() < deadline:
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), deadline - loop.time())
            except TimeoutError:
                break


class CallStreams:
    def __init__(self, nc: NATS, codec: SessionCodec) -> None:
        self._nc = nc
        self._codec = codec
        self._prefix = nc.new_inbox()
        self._opened = 0
        """Streams opened so far: the next one's token (counted here, not by a `next` call a stream)."""
        self._open: dict[str, CallStream] = {}

    async def start(self) -> None:
        await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_event)

    def open(self, key_id: str, emit: Emit, log_level: str | None = None) -> CallStream:
        self._opened += 1
        token = str(self._opened)
        stream = self._open[token] = CallStream(f"{self._prefix}.{token}", token, key_id, emit, log_level)
        return stream

    def close(self, stream: CallStream) -> None:
        self._open.pop(stream.token, None)

    async def relay(self, stream: CallStream, call: Awaitable[Answer]) -> Answer:
        """Await `call` while `stream` is open, settle the events its answer counts, then close `stream`.

        The one protocol of a streamed call, `/mcp` tool calls and `/v1` completions alike: no event
        may reach the agent after the answer, and the stream closes whatever happens."""
        try:
            answer = await call
            if answer.events > stream.received:
                await stream.settle(answer.events)
            return answer
        finally:
            self.close(stream)

    async def _on_event(self, msg: Msg) -> None:
        stream = self._open.get(msg.subject.rpartition(".")[2])
        try:
            event = StreamEvent.model_validate_json(msg.data)
        except ValidationError:
            log.warning("dropping a malformed stream event")
            if stream is not None:
                stream.skip()
            return
        if stream is None:
            if msg.reply:  # the call ended (or its agent left) before the upstream asked
                await self._answer(msg.reply, error={"code": -32603, "message": "the agent's call has already ended"})
            return
        if not stream.wants(event):
            stream.skip()
            return
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": event.method}
        if msg.reply:
            message["id"] = self._codec.reply_id(msg.reply, stream.key_id)
        if event.params is not None:
            message["params"] = event.params
        try:
            await stream.deliver(message)
        except Exception as exc:  # the agent hung up: tell an upstream that asked
            log.info("agent stream closed while forwarding %s (%s)", event.method, type(exc).__name__)
            if msg.reply:
                await self._answer(msg.reply, error={"code": -32603, "message": "the agent disconnected"})

    async def deliver_reply(self, key_id: str, message: dict[str, Any]) -> bool:
        """Forward an agent's JSON-RPC response to the upstream request it answers.

        False if its id is not a live request Bastion sent this key."""
        subject = self._codec.reply_subject(message.get("id"), key_id)
        if subject is None:
            return False
        result, error = message.get("result"), message.get("error")
        await self._answer(
            subject,
            result=result if isinstance(result, dict) else None,
            error=error if isinstance(error, dict) else None,
        )
        return True

    async def _answer(self, subject: str, **reply: Any) -> None:
        try:
            await self._nc.publish(subject, ClientReply(**reply).model_dump_json().encode())
        except Exception as exc:
            log.warning("cannot deliver an agent's answer (%s)", exc)


def sse_event(message: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + encode_json(message) + b"\n\n"
