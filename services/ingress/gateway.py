"""Ingress's side of the request path: NATS request/reply to the policy service.

One persistent NATS connection; `nc.request` multiplexes every in-flight call over a single
inbox subscription, so a call costs one publish and one delivery, no per-call setup.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from bastion_common import subjects
from bastion_common.errors import ErrorKind
from bastion_common.messages import (
    Caller,
    CallOutcome,
    CancelCall,
    CancelExecution,
    GatewayError,
    ToolCall,
    UpstreamRequest,
    VisibleTools,
    VisibleToolsQuery,
)

__all__ = ["Gateway"]

_NO_SERVICE = "no {what} service is running behind this gateway; retry shortly or check `bastion up`"


class Gateway:
    def __init__(self, nc: NATS) -> None:
        self._nc = nc

    async def call(self, call: ToolCall) -> CallOutcome:
        def failed(kind: ErrorKind, message: str) -> CallOutcome:
            return CallOutcome(id=call.id, error=GatewayError(kind=kind, message=message), decided_by="executor")

        try:
            reply = await self._nc.request(subjects.POLICY_CALL, call.model_dump_json().encode(), timeout=call.timeout)
        except NoRespondersError:
            # policy answers NATS "no responders" itself when no executor is subscribed
            return failed(ErrorKind.GATEWAY_UNAVAILABLE, _NO_SERVICE.format(what="policy or executor"))
        except NatsTimeout:
            return failed(
                ErrorKind.GATEWAY_TIMEOUT,
                f"tool {call.name!r} did not answer within {call.timeout:g}s (gateway limit); the call may still complete upstream",
            )
        try:
            return CallOutcome.model_validate_json(reply.data)
        except ValidationError:
            return failed(ErrorKind.INTERNAL, "the gateway received a malformed reply from its executor")

    async def request(self, request: UpstreamRequest) -> CallOutcome:
        """Any other request routed to one upstream (prompts/get, resources/read, ...)."""
        def failed(kind: ErrorKind, message: str) -> CallOutcome:
            return CallOutcome(id=request.id, error=GatewayError(kind=kind, message=message), decided_by="executor")

        try:
            reply = await self._nc.request(subjects.POLICY_REQUEST, request.model_dump_json().encode(),
                                           timeout=request.timeout)
        except NoRespondersError:
            return failed(ErrorKind.GATEWAY_UNAVAILABLE, _NO_SERVICE.format(what="policy or executor"))
        except NatsTimeout:
            return failed(ErrorKind.GATEWAY_TIMEOUT, f"{request.method} did not answer within {request.timeout:g}s")
        try:
            return CallOutcome.model_validate_json(reply.data)
        except ValidationError:
            return failed(ErrorKind.INTERNAL, "the gateway received a malformed reply from its executor")

    async def cancel(self, call: CancelCall) -> None:
        """An agent cancelled a request: tell the ingress replica running it, whichever it is."""
        await self._nc.publish(subjects.CALL_CANCEL, call.model_dump_json().encode())

    async def abandon(self, call_id: str) -> None:
        """Tell the executors to abandon a call this replica is running."""
        await self._nc.publish(subjects.EXEC_CANCEL, CancelExecution(id=call_id).model_dump_json().encode())

    async def visible(
        self,
        caller: Caller,
        tools: list[tuple[str, str]],
        include_servers: tuple[str, ...] | None = None,
        include_tools: tuple[str, ...] | None = None,
        timeout: float = 5.0,
    ) -> list[int] | GatewayError:
        query = VisibleToolsQuery(
            caller=caller,
            tools=tools,
            include_servers=list(include_servers) if include_servers is not None else None,
            include_tools=list(include_tools) if include_tools is not None else None,
        )
        try:
            reply = await self._nc.request(subjects.POLICY_LIST, query.model_dump_json().encode(), timeout=timeout)
        except NoRespondersError:
            return GatewayError(kind=ErrorKind.GATEWAY_UNAVAILABLE, message=_NO_SERVICE.format(what="policy"))
        except NatsTimeout:
            return GatewayError(kind=ErrorKind.GATEWAY_TIMEOUT, message=f"the policy service did not answer within {timeout:g}s")
        answer = VisibleTools.model_validate_json(reply.data)
        return answer.error if answer.error else answer.allowed
