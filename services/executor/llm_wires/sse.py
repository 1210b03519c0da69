"""Server-sent events, parsed incrementally from a response body's bytes (the WHATWG framing)."""

from __future__ import annotations

import codecs

from libs.common.contracts.errors import ErrorKind

from .base import MAX_EVENT_BYTES, WireFailure

__all__ = ["SseParser"]


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
