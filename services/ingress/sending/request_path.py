"""Ingress's side of the request path: NATS request/reply to the policy service, or straight to
the executors for a call policy has already allowed with nothing to count (`grant_cache`).

One persistent NATS connection; every in-flight call shares a single wildcard inbox
subscription, so a call costs one publish and one delivery, no per-call setup. Policy forwards an
allowed call to an executor, which answers here directly. Calls go through `libs.common.bus.relay`,
so a policy or executor replica killed while holding a call fails it within about a second instead
of after the full call timeout; a tool call this side fails that way (or by its timeout) is
refunded (`Refund`), since it may not have run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from libs.common.bus.blobs import Blobs, fits
from libs.common.bus.bus_client import BusStuck
from libs.common.bus.rejoin import Nobody, Rejoin
from libs.common.bus.relay import ResponderLost, call_outcome, routed_requester
from libs.common.bus.visible import ask_visible
from libs.common.contracts import subjects
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import LlmOutcome, LlmRequest
from libs.common.contracts.messages import (
    Caller,
    CallOutcome,
    CancelCall,
    CancelExecution,
    Execution,
    GatewayError,
    PairList,
    Refund,
    Routed,
    ToolCall,
    UpstreamRequest,
    VisibleTools,
)
from libs.common.settings import RequestPathSettings
from services.ingress.sending.grant_cache import GrantCache, Watched
from services.ingress.metrics import ROUTED_SENDS

__all__ = ["RequestPath"]

_SENT = {route: ROUTED_SENDS.labels(route) for route in ("policy", "granted", "stale", "again")}
"""Children resolved once: a label lookup per call costs more than the increment."""
_EXECUTORS = {subjects.POLICY_CALL: subjects.EXEC_CALL, subjects.POLICY_REQUEST: subjects.EXEC_REQUEST}
"""Where a routed request goes when ingress holds policy's grant for it."""


def encoded(message: Routed) -> bytes:
    """`message.model_dump_json().encode()`, the bytes straight from pydantic's serializer: no str
    made and encoded again, none of `model_dump_json`'s option handling (~0.7 µs a call)."""
    return message.__pydantic_serializer__.to_json(message)


def _reason(exc: PydanticSerializationError) -> str:
    text = str(exc).removeprefix("Error serializing to JSON: ")
    if "depth" in text:
        return "its parameters nest too deeply (about 250 levels at most)"
    return text[:200]


class RequestPath:
    """`await start()` before the first call."""

    def __init__(self, nc: NATS, settings: RequestPathSettings, grant_inputs: Sequence[Watched] = ()) -> None:
        """`grant_inputs`: the keys and policy watches, whose revisions say whether a reused decision holds."""
        self._nc = nc
        self._settings = settings
        self._blobs: Blobs | None = None
        self._policy = routed_requester(nc, settings)
        self._rejoin = Rejoin(settings.rejoin_wait)
        self.grants = GrantCache(grant_inputs)
        """Policy's reusable decisions."""

    async def start(self) -> None:
        self._blobs = await Blobs.open(self._nc)
        await self._policy.start()

    async def _send(self, subject: str, data: bytes, timeout: float) -> Msg:  # noqa: ASYNC109 - a NATS deadline, not a scope
        """A request to the policy queue group; raises NoRespondersError, nats TimeoutError, or
        ResponderLost when the replica holding it dies (it may have acted on the request).

        The policy handler of `subject` must acknowledge requests still running after a moment
        (`libs.common.bus.relay.Acknowledger`): one that does not fails after `ack_grace` seconds."""
        return await self._policy.request(subject, data, within=timeout)

    async def call(self, call: ToolCall) -> CallOutcome:
        return await self._routed(subjects.POLICY_CALL, call, f"tool {call.name!r}")

    async def request(self, request: UpstreamRequest) -> CallOutcome:
        """Any other request routed to one upstream (prompts/get, resources/read, ...)."""
        return await self._routed(subjects.POLICY_REQUEST, request, request.method)

    async def llm(self, request: LlmRequest) -> LlmOutcome:
        """A chat completion through policy (key, budgets) to the executor (the provider call); policy
        waits for an executor rejoining, ingress for a policy replica."""

        def failed(kind: ErrorKind, text: str) -> LlmOutcome:
            return LlmOutcome(id=request.id, error=GatewayError(kind=kind, message=text))

        async def send() -> Msg | Nobody:
            sent_at = time.monotonic()
            try:
                reply = await self._send(subjects.POLICY_LLM, data, request.timeout)
            except NoRespondersError:
                return Nobody("policy")
            self._rejoin.heard("policy", sent_at)
            return reply

        data = request.model_dump_json().encode()
        try:
            reply = await self._rejoin.sending(
                send, request.deadline, lambda why: failed(ErrorKind.GATEWAY_UNAVAILABLE, why)
            )
        except ResponderLost as exc:
            return failed(ErrorKind.GATEWAY_UNAVAILABLE, f"{exc}; the completion may or may not have run")
        except NatsTimeout:
            return failed(ErrorKind.GATEWAY_TIMEOUT, f"the provider did not answer within {request.timeout:g}s")
        if isinstance(reply, LlmOutcome):
            return reply
        try:
            return LlmOutcome.model_validate_json(reply.data)
        except ValidationError:
            return failed(ErrorKind.INTERNAL, "the gateway received a malformed reply from its executor")

    async def _routed(self, subject: str, message: Routed, what: str, *, ask_policy: bool = False) -> CallOutcome:
        """`message` to policy on `subject`, or straight to the executors with policy's grant for
        it (`grants`) unless `ask_policy`; sent again while the replica it needs is rejoining."""

        def given_up(why: str) -> CallOutcome:
            error = GatewayError(kind=ErrorKind.GATEWAY_UNAVAILABLE, message=why)
            return CallOutcome(id=message.id, error=error, decided_by="executor", execution="not_run")

        return await self._rejoin.sending(
            lambda: self._routed_once(subject, message, what, ask_policy=ask_policy),
            message.deadline,
            given_up,
            _SENT["again"].inc,
        )

    async def _routed_once(self, subject: str, message: Routed, what: str, *, ask_policy: bool) -> CallOutcome | Nobody:

        def failed(kind: ErrorKind, text: str, execution: Execution = "may_have_run") -> CallOutcome:
            error = GatewayError(kind=kind, message=text)
            return CallOutcome(id=message.id, error=error, decided_by="executor", execution=execution)

        try:
            data = encoded(message)
        except PydanticSerializationError as exc:  # e.g. arguments nested deeper than JSON serializers go
            return failed(ErrorKind.INVALID_ARGUMENTS, f"{what} cannot be forwarded: {_reason(exc)}", "not_run")
        if not fits(self._nc, len(data)):
            shrunk = await self._shrunk(message, len(data))
            if isinstance(shrunk, GatewayError):
                return CallOutcome(id=message.id, error=shrunk, decided_by="executor", execution="not_run")
            data = shrunk
        executors = _EXECUTORS[subject]
        held = None if ask_policy else self.grants.find(executors, message)
        seen = self.grants.seen() if held is None else ()  # what a grant in the answer is kept against
        _SENT["policy" if held is None else "granted"].inc()
        sent_at = time.monotonic()
        try:
            if held is None:
                reply = await self._send(subject, data, message.timeout)
            else:
                reply = await self._policy.request(
                    executors, data, within=message.timeout, extra=held.headers, role="executor"
                )
        except ResponderLost as exc:
            await self._refund(message)
            return failed(
                ErrorKind.GATEWAY_UNAVAILABLE, f"{exc}; {what} may or may not have run; retry if it is safe to"
            )
        except NoRespondersError:
            return Nobody("policy" if held is None else "executor")
        except BusStuck as exc:  # the bus, not the tool, went silent
            await self._refund(message)
            return failed(ErrorKind.GATEWAY_UNAVAILABLE, f"{exc}; {what} may or may not have run")
        except NatsTimeout:
            await self._refund(message)
            return failed(
                ErrorKind.GATEWAY_TIMEOUT,
                f"{what} did not answer within {message.timeout:g}s (gateway limit); it may still complete upstream",
            )
        headers = reply.headers or {}
        if held is None:
            self._rejoin.heard("policy", sent_at)  # it answered or forwarded the call since
        if subjects.NO_EXECUTOR in headers:  # policy allowed it and found no executor subscribed
            return Nobody("executor")
        if held is not None and subjects.GRANT_STALE in headers:  # expired on the executor's clock: nothing ran
            self._rejoin.heard("executor")
            self.grants.drop(executors, message)
            _SENT["stale"].inc()
            return await self._routed_once(subject, message, what, ask_policy=True)
        if held is None and (grant := headers.get(subjects.GRANT)) is not None:
            self.grants.keep(executors, message, grant, seen)
        try:
            outcome = call_outcome(reply)
        except ValidationError:
            return failed(ErrorKind.INTERNAL, "the gateway received a malformed reply from its executor")
        if outcome.decided_by == "executor":
            self._rejoin.heard("executor")
        if outcome.result_blob is not None:
            return await self._with_result(outcome)
        return outcome

    async def _refund(self, message: Routed) -> None:
        """This side failed a tool call that policy may have charged: give the charge back, as the
        executor would have for a call that did not run (policy holds no charge otherwise)."""
        if message.refunded_when_lost:
            await self._nc.publish(subjects.POLICY_REFUND, Refund(id=message.id).model_dump_json().encode())

    async def _shrunk(self, message: Routed, size: int) -> bytes | GatewayError:
        """A request too large for one NATS message, its arguments moved to the object store; or
        why it cannot be sent."""
        if message.offloadable and self._blobs is not None:
            try:
                name = await self._blobs.put(orjson.dumps(message.payload), what="arguments")
            except Exception as exc:
                return GatewayError(
                    kind=ErrorKind.GATEWAY_UNAVAILABLE,
                    message=f"the call's arguments ({size:,} bytes) could not be stored for transfer: {exc!r}",
                )
            data = message.offloaded(name).model_dump_json().encode()
            if fits(self._nc, len(data)):
                return data
        return GatewayError(
            kind=ErrorKind.INVALID_ARGUMENTS,
            message=f"the request is {size:,} bytes once encoded, more than the gateway's message bus carries "
            f"({self._nc.max_payload:,} bytes)",
        )

    async def _with_result(self, outcome: CallOutcome) -> CallOutcome:
        """The outcome with its result fetched from the object store (where it was too large to travel)."""
        assert self._blobs is not None
        return await self._blobs.with_result(outcome, self._settings.max_result_bytes)

    async def cancel(self, call: CancelCall) -> None:
        """An agent cancelled a request: tell the ingress replica running it, whichever it is."""
        await self._nc.publish(subjects.CALL_CANCEL, call.model_dump_json().encode())

    async def abandon(self, call_id: str) -> None:
        """Tell the executors to abandon a call this replica is running."""
        await self._nc.publish(subjects.EXEC_CANCEL, CancelExecution(id=call_id).model_dump_json().encode())

    async def visible(
        self,
        caller: Caller,
        tools: PairList,
        include_servers: tuple[str, ...] | None = None,
        include_tools: tuple[str, ...] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a NATS deadline, not a scope
    ) -> VisibleTools:
        """Which of the (server, tool) pairs of `tools` the caller may use, as policy decides
        (`allowed`), and the revisions it decided at; or why there is no answer (`error`)."""
        servers = list(include_servers) if include_servers is not None else None
        names = list(include_tools) if include_tools is not None else None
        return await ask_visible(self._nc, caller, tools, servers, names, timeout)
