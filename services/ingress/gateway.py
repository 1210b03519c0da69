"""Ingress's side of the request path: NATS request/reply to the policy service.

One persistent NATS connection; every in-flight call shares a single wildcard inbox
subscription, so a call costs one publish and one delivery, no per-call setup. Calls go through
`bastion_common.relay`, so a policy replica killed mid-call fails its calls within about a
second instead of after the full call timeout.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
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
from bastion_common.relay import AckedRequester, ResponderLost
from bastion_common.settings import RequestPathSettings

__all__ = ["Gateway"]

_NO_SERVICE = "no {what} service is running behind this gateway; retry shortly or check `bastion up`"


class Gateway:
    """`await start()` before the first call."""

    def __init__(self, nc: NATS, settings: RequestPathSettings) -> None:
        self._nc = nc
        self._policy = AckedRequester(nc, role="policy", accepted_by=subjects.POLICY_ACCEPTED_BY,
                                      alive_subject=subjects.policy_alive_subject, settings=settings)

    async def start(self) -> None:
        await self._policy.start()

    async def _send(self, subject: str, data: bytes, timeout: float) -> Msg:  # noqa: ASYNC109 - a NATS deadline, not a scope
        """A request to the policy queue group; raises NoRespondersError, nats TimeoutError, or
        ResponderLost when the replica holding it dies (it may have acted on the request).

        The policy handler of `subject` must acknowledge requests still running after a moment
        (`bastion_common.relay.Acknowledger`): one that does not fails after `ack_grace` seconds."""
        return await self._policy.request(subject, data, within=timeout)

    async def call(self, call: ToolCall) -> CallOutcome:
        return await self._routed(subjects.POLICY_CALL, call, f"tool {call.name!r}")

    async def request(self, request: UpstreamRequest) -> CallOutcome:
        """Any other request routed to one upstream (prompts/get, resources/read, ...)."""
        return await self._routed(subjects.POLICY_REQUEST, request, request.method)

    async def _routed(self, subject: str, message: ToolCall | UpstreamRequest, what: str) -> CallOutcome:
        def failed(kind: ErrorKind, text: str) -> CallOutcome:
            return CallOutcome(id=message.id, error=GatewayError(kind=kind, message=text), decided_by="executor")

        try:
            reply = await self._send(subject, message.model_dump_json().encode(), message.timeout)
        except ResponderLost as exc:
            return failed(ErrorKind.GATEWAY_UNAVAILABLE, f"{exc}; {what} may or may not have run; retry if it is safe to")
        except NoRespondersError:
            # policy answers NATS "no responders" itself when no executor is subscribed
            return failed(ErrorKind.GATEWAY_UNAVAILABLE, _NO_SERVICE.format(what="policy or executor"))
        except NatsTimeout:
            return failed(
                ErrorKind.GATEWAY_TIMEOUT,
                f"{what} did not answer within {message.timeout:g}s (gateway limit); it may still complete upstream",
            )
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
