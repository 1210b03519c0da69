"""How much of one upstream answer the executor reads.

The result limit (`BASTION_MAX_RESULT_BYTES`) plus room for the envelope, and the error an answer past it
raises."""

from __future__ import annotations

from mcp.client.streamable_http import DEFAULT_MAX_SSE_EVENT_SIZE

__all__ = ["ANSWER_ENVELOPE", "AnswerTooLarge", "answer_cutoff", "sse_event_limit"]

ANSWER_ENVELOPE = 64 * 1024
"""Bytes an upstream's answer may hold besides its result (the JSON-RPC envelope, `_meta`)."""


def answer_cutoff(max_result: int) -> int:
    """Bytes of one answer a lean call reads at most, for results of up to `max_result` bytes."""
    return max_result + ANSWER_ENVELOPE


def sse_event_limit(max_result: int | None) -> int:
    """Bytes one server-sent event may hold: as many as a whole JSON answer (`answer_cutoff`).

    The SDK's own default (1 MiB) when no result limit is set."""
    return answer_cutoff(max_result) if max_result is not None else DEFAULT_MAX_SSE_EVENT_SIZE


class AnswerTooLarge(Exception):
    """The server's answer to a call is larger than `BASTION_MAX_RESULT_BYTES` allows (`answer_cutoff`).

    It was not read past that point. The call did run. `size` when the server said it (`content-length`)."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        super().__init__(f"the answer is larger than {limit:,} bytes")
        self.limit, self.size = limit, size
