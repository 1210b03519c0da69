"""The codemode service's side of the request path.

Policy's list of what a key may use, and the tool calls of scripts, sent to policy exactly as ingress
sends an agent's (same subject, same `ToolCall`, same acknowledged request), so grants, budgets and rate
limits apply unchanged."""

from __future__ import annotations

import time

from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from libs.common.bus.blobs import Blobs
from libs.common.bus.rejoin import Nobody, Rejoin
from libs.common.bus.relay import ResponderLost, call_outcome, routed_requester
from libs.common.bus.visible import ask_visible
from libs.common.contracts import subjects
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import (
    Caller,
    CallOutcome,
    CancelExecution,
    GatewayError,
    PairList,
    Refund,
    ToolCall,
)
from libs.common.settings import RequestPathSettings

from .metrics import CODEMODE_CALLS_SENT_AGAIN

__all__ = ["PolicyGateway"]


class PolicyGateway:
    """`await start()` before the first call."""

    def __init__(self, nc: NATS, settings: RequestPathSettings, blobs: Blobs) -> None:
        self._nc = nc
        self._blobs = blobs
        self._max_result_bytes = settings.max_result_bytes
        self._policy = routed_requester(nc, settings)
        self._rejoin = Rejoin(settings.rejoin_wait)

    async def start(self) -> None:
        await self._policy.start()

    async def visible(
        self,
        caller: Caller,
        tools: PairList,
        include_servers: list[str] | None,
        include_tools: list[str] | None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a NATS deadline, not a scope
    ) -> list[int] | GatewayError:
        """Indexes of the (server, tool) pairs of `tools` the caller may use, as policy decides.

        Or why there is no answer."""
        answer = await ask_visible(self._nc, caller, tools, include_servers, include_tools, timeout)
        return answer.error if answer.error else answer.allowed

    async def call(self, call: ToolCall) -> CallOutcome:
        """The call's outcome; sent again while the replica it needs is rejoining (`libs.common.bus.rejoin`)."""
        tries = 0
        while isinstance(answer := await self._call_once(call), Nobody):
            why = await self._rejoin.wait(answer, call.deadline, tries)
            if why is not None:
                error = GatewayError(kind=ErrorKind.GATEWAY_UNAVAILABLE, message=why)
                return CallOutcome(id=call.id, error=error, decided_by="executor", execution="not_run")
            tries += 1
            CODEMODE_CALLS_SENT_AGAIN.inc()
        return answer

    async def _call_once(self, call: ToolCall) -> CallOutcome | Nobody:
        def failed(kind: ErrorKind, text: str) -> CallOutcome:
            return CallOutcome(id=call.id, error=GatewayError(kind=kind, message=text), decided_by="executor")

        sent_at = time.monotonic()
        try:
            reply = await self._policy.request(subjects.POLICY_CALL, call.model_dump_json().encode(), call.timeout)
        except MaxPayloadError:
            return failed(ErrorKind.INVALID_ARGUMENTS, "the call's arguments are larger than a NATS message may be")
        except ResponderLost as exc:
            await self._refund(call)
            return failed(ErrorKind.GATEWAY_UNAVAILABLE, f"{exc}; the tool may or may not have run")
        except NoRespondersError:
            return Nobody("policy")
        except NatsTimeout:
            await self._refund(call)
            return failed(ErrorKind.GATEWAY_TIMEOUT, f"the tool did not answer within {call.timeout:g}s")
        self._rejoin.heard("policy", sent_at)  # it answered or forwarded the call since
        if subjects.NO_EXECUTOR in (reply.headers or {}):
            return Nobody("executor")
        try:
            outcome = call_outcome(reply)
        except ValidationError:
            return failed(ErrorKind.INTERNAL, "malformed reply from the executor")
        if outcome.decided_by == "executor":
            self._rejoin.heard("executor")
        # a result too large for one NATS message waits in the object store, as it does for ingress
        outcome = await self._blobs.with_result(outcome, self._max_result_bytes)
        outcome.result_value()  # a script reads the result: parsed here, once
        return outcome

    async def _refund(self, call: ToolCall) -> None:
        """A call this side failed may not have run: policy gives its charge back, if it took one."""
        await self._nc.publish(subjects.POLICY_REFUND, Refund(id=call.id).model_dump_json().encode())

    async def abandon(self, call_id: str) -> None:
        """Tell the executors to abandon a tool call whose run stopped (the SDK tells the upstream)."""
        await self._nc.publish(subjects.EXEC_CANCEL, CancelExecution(id=call_id).model_dump_json().encode())
