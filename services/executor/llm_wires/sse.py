"""Server-sent events, parsed incrementally from a response body's bytes (the WHATWG framing)."""

from __future__ import annotations

import codecs
from abc import ABC, abstractmethod
from typing import Any

import orjson

from libs.common.contracts.errors import ErrorKind

from .base import MAX_EVENT_BYTES, ChunkMaker, WireFailure

__all__ = ["JsonEventDecoder", "SseParser"]


class SseParser:
    """Events `(name, data)` as their blank line completes them; `name` is `message` when none was given."""

    def __init__(self) -> None:
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        self._pending = ""

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        self._pending += self._decode(data).replace("\r\n", "\n").replace("\r", "\n")
        *blocks, self._pending = self._pending.split("\n\n")
        if len(self._pending) > MAX_EVENT_BYTES:
            raise WireFailure(ErrorKind.UPSTREAM_ERROR, f"a streamed event exceeded {MAX_EVENT_BYTES} bytes")
        events = []
        for block in blocks:
            name, lines = "message", []
            for line in block.split("\n"):
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "data":
                    lines.append(value)
            if lines:
                events.append((name, "\n".join(lines)))
        return events


class JsonEventDecoder(ABC):
    """A stream whose events each hold one JSON object (Anthropic, Gemini), as OpenAI chunks.

    `feed` hands each object, with its event's name, to `_event` until `_failure` finds the provider's
    error in one; an event that is not an object says nothing and is skipped."""

    def __init__(self, model: str) -> None:
        self._sse = SseParser()
        self._chunks = ChunkMaker("", model)
        self.finished = False
        self.failure: WireFailure | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name, text in self._sse.feed(data):
            event = orjson.loads(text)
            if not isinstance(event, dict):
                continue
            self.failure = self._failure(name, event)
            if self.failure is not None:
                break
            out += self._event(name, event)
        return out

    @abstractmethod
    def _failure(self, name: str, event: dict[str, Any]) -> WireFailure | None:
        """The provider's error this event reports, if it is one."""

    @abstractmethod
    def _event(self, name: str, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks of one event that is not an error."""
