"""A 2026-07-28 upstream's `input_required` answer, resolved for a handshake-era agent.

From 2026-07-28 on a server does not send requests to the client: `tools/call`, `prompts/get` and
`resources/read` may answer `{"resultType": "input_required", "inputRequests": {...},
"requestState": ...}`, and the client retries the same request with `inputResponses` and the echoed
`requestState`. A 2026-07-28 agent does that itself (the result passes through). A handshake-era
agent only understands requests sent to it mid-call, so the executor puts each input request to it
exactly like a handshake-era upstream's request (`AgentLink.answer`, on the call's stream) and
retries upstream itself, like the official client's driver (`mcp.client._input_required`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from pydantic import ValidationError

from ...error_mapping import InputUnanswered

__all__ = ["MAX_ROUNDS", "Ask", "needs_bridge", "resolve_input_required"]

MAX_ROUNDS = 10
"""Retries before giving up on a server that keeps asking (the official clients' default)."""

_STATE_ONLY_DELAYS = (0.05, 0.1, 0.2, 0.25)
"""Pause before retrying a round that carried only `requestState` (the server is still working),
as the official client does: 50 ms doubling to a 250 ms cap. Pacing a server that is still working,
not a backoff after a failure, so not tenacity (`reconnect` is the executor's backoff)."""

Ask = Callable[[types.InputRequest], Awaitable[Any]]
"""Puts one input request to the agent: its result model, or `ErrorData` when it cannot answer."""


def needs_bridge(result: dict[str, Any], client: list[str]) -> bool:
    return result.get("resultType") == "input_required" and "input_required" not in client


async def resolve_input_required(
    result: dict[str, Any],
    *,
    what: str,
    ask: Ask,
    resend: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Answer `result`'s input requests through `ask` and `resend` the request with the answers.

    (`resend` gets the extra params), until the upstream answers for good. Raises `InputUnanswered` when
    the agent cannot answer, like the official client when a callback declines: an input response cannot
    carry an error, and answering for the user would be a lie."""
    state_only = 0
    for _ in range(MAX_ROUNDS):
        try:
            parsed = types.InputRequiredResult.model_validate(result)
        except ValidationError:
            raise InputUnanswered(f"{what}: the server sent a malformed input_required result") from None
        extra: dict[str, Any] = {}
        if parsed.request_state is not None:
            extra["requestState"] = parsed.request_state  # opaque: echoed byte for byte
        if parsed.input_requests:
            state_only = 0
            keys = list(parsed.input_requests)
            answers = await asyncio.gather(*(ask(parsed.input_requests[key]) for key in keys))
            for key, answer in zip(keys, answers, strict=True):
                if isinstance(answer, types.ErrorData):
                    method = parsed.input_requests[key].method
                    raise InputUnanswered(
                        f"{what} needs the agent to answer {method}, and it could not: {answer.message}"
                    )
            extra["inputResponses"] = {
                key: answer.model_dump(by_alias=True, mode="json", exclude_none=True)
                for key, answer in zip(keys, answers, strict=True)
            }
        else:
            await asyncio.sleep(_STATE_ONLY_DELAYS[min(state_only, len(_STATE_ONLY_DELAYS) - 1)])
            state_only += 1
        result = await resend(extra)
        if result.get("resultType") != "input_required":
            return result
    raise InputUnanswered(f"{what}: the server still asked for input after {MAX_ROUNDS} rounds")
