"""The way back from an upstream to the agent whose call it is serving.

While a call runs, an upstream may send progress and log notifications, or ask the agent for
something (sampling, elicitation, roots). The agent's POST stays open as an SSE stream on some
ingress replica; the call carries that stream's NATS subject (`ToolCall.stream`), and what the
upstream sends goes there as `StreamEvent`s. Requests are NATS requests: the agent's answer comes
back on their reply subject, wherever the agent posts it.

Progress is matched to its call exactly (the SDK gives every request its own progress token).
Log messages and server requests carry no call id on the wire (not over stdio; the HTTP client
drops it), so they belong to a call only when exactly one call that could take them is in flight on
the session. Otherwise a log line stays in the executor log and a request is refused: guessing
would hand one agent's conversation to another.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel, ValidationError

from libs.common.contracts import subjects
from libs.common.contracts.messages import Caller, ClientReply, ResourceUpdated, StreamEvent

__all__ = ["ActiveCall", "AgentLink", "Guard"]

Guard = Callable[[str, str, dict[str, Any], Caller | None], Awaitable[dict[str, Any] | None]]
"""(server, channel, payload, the caller whose call it is) -> the payload to forward, or None to
withhold it."""

log = logging.getLogger(__name__)

_INTERNAL_ERROR = -32603


@dataclass(eq=False, slots=True)
class ActiveCall:
    id: str
    stream: str | None
    client: frozenset[str]
    deadline: float
    """`time.monotonic()` by which the call's answer is due."""
    events: int = 0
    """StreamEvents sent so far; the outcome reports it so ingress can wait for stragglers."""
    progress_token: Any = None
    caller: Caller | None = None
    """Whose call it is: a guardrail rule scoped to callers applies to what is sent to its agent."""
    extra: dict[str, Any] = field(default_factory=dict)


class _Running:
    """A class, not a `contextlib.contextmanager`: its generator cost ~1 µs per upstream call."""

    __slots__ = ("_active", "_call")

    def __init__(self, active: dict[str, ActiveCall], call: ActiveCall) -> None:
        self._active, self._call = active, call

    def __enter__(self) -> ActiveCall:
        self._active[self._call.id] = self._call
        return self._call

    def __exit__(self, *exc_info: object) -> None:
        self._active.pop(self._call.id, None)


class AgentLink:
    """One per upstream: the in-flight calls on its session, and how to reach their agents."""

    def __init__(self, nc: NATS | None, server: str, guard: Guard | None = None) -> None:
        self._nc = nc
        self.server = server
        self._guard = guard
        """The interceptors' `at_message` hooks (`InterceptorChain.outgoing`): everything sent to an
        agent passes them first (`interceptors.channels`)."""
        self._active: dict[str, ActiveCall] = {}
        self.calls = self._active
        """Call id -> the call in flight on this session; the call path enters and removes its own
        directly (`running` for a block)."""

    @property
    def in_flight(self) -> int:
        """Calls on this session now (`running`)."""
        return len(self._active)

    def running(self, call: ActiveCall) -> _Running:
        """`with link.running(call):` the call is in flight on this session for the block."""
        return _Running(self._active, call)

    async def notify(self, call: ActiveCall, method: str, params: dict[str, Any]) -> None:
        if call.stream is None or self._nc is None:
            return
        if self._guard is not None:
            checked = await self._guard(self.server, method, params, call.caller)
            if checked is None:
                return
            params = checked
        call.events += 1
        try:
            event = StreamEvent(method=method, params=params)
            await self._nc.publish(call.stream, event.model_dump_json().encode())
        except Exception as exc:  # the agent may be gone; the call goes on
            log.debug("upstream %s: cannot forward %s (%s)", self.server, method, exc)

    async def progress(self, call: ActiveCall, progress: float, total: float | None, message: str | None) -> None:
        params: dict[str, Any] = {"progressToken": call.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.notify(call, "notifications/progress", params)

    # ------------------------------------------------------------------ SDK session callbacks

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        owner = self._sole(None)
        if owner is None:
            log.debug("upstream %s: log message outside a single call, not forwarded", self.server)
            return
        wire = params.model_dump(by_alias=True, mode="json", exclude_none=True)
        await self.notify(owner, "notifications/message", wire)

    async def on_resource_updated(self, uri: str) -> None:
        if self._guard is not None:
            checked = await self._guard(self.server, "notifications/resources/updated", {"uri": uri}, None)
            if checked is None or not isinstance(checked.get("uri"), str):
                return
            uri = checked["uri"]
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.publish(
                    subjects.RESOURCE_UPDATED, ResourceUpdated(server=self.server, uri=uri).model_dump_json().encode()
                )

    async def sampling(self, context: Any, params: types.CreateMessageRequestParams) -> Any:
        return await self._ask("sampling", "sampling/createMessage", params, types.CreateMessageResult)

    async def elicitation(self, context: Any, params: types.ElicitRequestParams) -> Any:
        return await self._ask("elicitation", "elicitation/create", params, types.ElicitResult)

    async def roots(self, context: Any) -> Any:
        return await self._ask("roots", "roots/list", None, types.ListRootsResult)

    async def answer(self, call: ActiveCall, request: types.InputRequest) -> Any:
        """One input request of a 2026-07-28 `input_required` result, put to the agent of `call`.

        The result names its request, so there is no guessing which agent it is for."""
        match request:
            case types.CreateMessageRequest(params=params):
                return await self._ask("sampling", request.method, params, types.CreateMessageResult, call)
            case types.ElicitRequest(params=params):
                return await self._ask("elicitation", request.method, params, types.ElicitResult, call)
            case _:
                return await self._ask("roots", request.method, None, types.ListRootsResult, call)

    # ------------------------------------------------------------------ internals

    def _sole(self, capability: str | None) -> ActiveCall | None:
        """The one in-flight call with an agent stream (and `capability`), if there is exactly one."""
        found = None
        for call in self._active.values():
            if call.stream is None or (capability is not None and capability not in call.client):
                continue
            if found is not None:
                return None
            found = call
        return found

    async def _ask(
        self,
        capability: str,
        method: str,
        params: BaseModel | None,
        result: type[BaseModel],
        call: ActiveCall | None = None,
    ) -> Any:
        if call is None:
            candidates = [c for c in self._active.values() if c.stream is not None and capability in c.client]
        else:
            candidates = [call] if call.stream is not None and capability in call.client else []
        if len(candidates) != 1:
            if call is not None:
                why = (
                    f"the agent did not declare the {capability} capability"
                    if capability not in call.client
                    else "the agent's request has no response stream to ask it on"
                )
            elif not candidates:
                why = f"no agent that supports {capability} is waiting on a call to this server"
            else:
                why = f"{len(candidates)} calls to this server are in flight; Bastion cannot tell which one asked"
            log.info("upstream %s: refused %s: %s", self.server, method, why)
            return types.ErrorData(code=_INTERNAL_ERROR, message=f"Bastion gateway: {why}")
        call = candidates[0]
        assert call.stream is not None and self._nc is not None
        wire = params.model_dump(by_alias=True, mode="json", exclude_none=True) if params is not None else None
        if wire is not None and self._guard is not None:
            wire = await self._guard(self.server, method, wire, call.caller)
            if wire is None:
                log.info("upstream %s: %s withheld by the gateway's checks", self.server, method)
                return types.ErrorData(
                    code=_INTERNAL_ERROR, message=f"Bastion gateway: the {method} request was withheld"
                )
        call.events += 1
        try:
            event = StreamEvent(method=method, params=wire).model_dump_json().encode()
            reply = await self._nc.request(call.stream, event, timeout=max(call.deadline - time.monotonic(), 0.1))
            answer = ClientReply.model_validate_json(reply.data)
        except (NoRespondersError, NatsTimeout) as exc:
            kind = "did not answer in time" if isinstance(exc, NatsTimeout) else "is no longer connected"
            return types.ErrorData(code=_INTERNAL_ERROR, message=f"Bastion gateway: the agent {kind}")
        except ValidationError:
            return types.ErrorData(code=_INTERNAL_ERROR, message="Bastion gateway: malformed answer from the agent")
        if answer.error is not None:
            try:
                return types.ErrorData.model_validate(answer.error)
            except ValidationError:
                return types.ErrorData(code=_INTERNAL_ERROR, message="the agent answered with a malformed error")
        try:
            return result.model_validate(answer.result or {}, by_name=False)
        except ValidationError:
            message = f"the agent's answer to {method} does not follow the MCP schema"
            return types.ErrorData(code=_INTERNAL_ERROR, message=message)
