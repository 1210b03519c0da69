"""Ingress's side of the request path.

NATS request/reply to the policy service, or straight to the executors for a call policy has already
allowed with nothing to count (`grant_cache`).

One persistent NATS connection; every in-flight call shares a single wildcard inbox
subscription, so a call costs one publish and one delivery, no per-call setup. Policy forwards an
allowed call to an executor, which answers here directly. Calls go through `libs.common.bus.relay`,
so a policy or executor replica killed while holding a call fails it within about a second instead
of after the full call timeout; a tool call this side fails that way (or by its timeout) is
refunded (`Refund`), since it may not have run.

A routed request goes through one loop of named steps (`RequestPath.routed`), each a method:

  encode   its bytes; arguments too large for one bus message go through the object store
  route    policy's grant held here sends it straight to the executors, else it goes to policy
  send     the request and its reply; a send failed on this side ends here (refunded)
  wait     nobody of the role it needed was subscribed (nothing ran): while a replica of that role
           answered within `BASTION_REJOIN_WAIT` seconds, a pause and the loop again (`libs.common.bus.rejoin`)
  retry    a grant the executor found stale (nothing ran) is dropped and the loop asks policy
  read     the reply as the outcome; a grant policy gave with it kept, a large result fetched

No step calls another; the loop alone decides what comes next.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType

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
from libs.common.contracts.carried import carrying
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
from services.ingress.metrics import ROUTED_SENDS
from services.ingress.sending.grant_cache import GrantCache, Held, Watched

__all__ = ["RequestPath"]

_SENT = {route: ROUTED_SENDS.labels(route) for route in ("policy", "granted", "stale", "again")}
"""Children resolved once: a label lookup per call costs more than the increment."""
_SUBJECTS: dict[type[Routed], tuple[str, str]] = {
    ToolCall: (subjects.POLICY_CALL, subjects.EXEC_CALL),
    UpstreamRequest: (subjects.POLICY_REQUEST, subjects.EXEC_REQUEST),
}
"""Where a routed request goes: to policy, or to the executors when ingress holds policy's grant for it."""
_NO_POLICY, _NO_EXECUTOR = Nobody("policy"), Nobody("executor")
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
_MALFORMED = "the gateway received a malformed reply from its executor"


def _reason(exc: PydanticSerializationError) -> str:
    text = str(exc).removeprefix("Error serializing to JSON: ")
    if "depth" in text:
        return "its parameters nest too deeply (about 250 levels at most)"
    return text[:200]


def _failed(message: Routed, kind: ErrorKind, text: str, execution: Execution = "may_have_run") -> CallOutcome:
    return CallOutcome(
        id=message.id, error=GatewayError(kind=kind, message=text), decided_by="executor", execution=execution
    )


def _lost(message: Routed, exc: ResponderLost | NatsTimeout) -> CallOutcome:
    """A send this side failed after the request left (it may have run).

    The replica holding it died, the bus went silent, or the call's time ran out."""
    what = message.describe()
    if isinstance(exc, ResponderLost):
        return _failed(
            message, ErrorKind.GATEWAY_UNAVAILABLE, f"{exc}; {what} may or may not have run; retry if it is safe to"
        )
    if isinstance(exc, BusStuck):  # the bus, not the tool, went silent
        return _failed(message, ErrorKind.GATEWAY_UNAVAILABLE, f"{exc}; {what} may or may not have run")
    return _failed(
        message,
        ErrorKind.GATEWAY_TIMEOUT,
        f"{what} did not answer within {message.timeout:g}s (gateway limit); it may still complete upstream",
    )


def _llm_failed(request: LlmRequest, kind: ErrorKind, text: str) -> LlmOutcome:
    return LlmOutcome(id=request.id, error=GatewayError(kind=kind, message=text))


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
        """A request to the policy queue group.

        Raises NoRespondersError, nats TimeoutError, or ResponderLost when the replica holding it dies
        (it may have acted on the request).

        The policy handler of `subject` must acknowledge requests still running after a moment
        (`libs.common.bus.acknowledger.Acknowledger`): one that does not fails after `ack_grace` seconds."""
        return await self._policy.request(subject, data, within=timeout)

    async def call(self, call: ToolCall) -> CallOutcome:
        return await self.routed(call)

    async def request(self, request: UpstreamRequest) -> CallOutcome:
        """Any other request routed to one upstream (prompts/get, resources/read, ...)."""
        return await self.routed(request)

    async def llm(self, request: LlmRequest) -> LlmOutcome:
        """A chat completion through policy (key, budgets) to the executor (the provider call).

        Policy waits for an executor rejoining, ingress for a policy replica (the same wait step as
        `routed`)."""
        data = request.model_dump_json().encode()
        tries = 0
        while True:
            sent_at = time.monotonic()
            try:
                reply = await self._send(subjects.POLICY_LLM, data, request.timeout)
            except NoRespondersError:
                why = await self._rejoin.wait(_NO_POLICY, request.deadline, tries)
                if why is not None:
                    return _llm_failed(request, ErrorKind.GATEWAY_UNAVAILABLE, why)
                tries += 1
                continue
            except ResponderLost as exc:
                return _llm_failed(
                    request, ErrorKind.GATEWAY_UNAVAILABLE, f"{exc}; the completion may or may not have run"
                )
            except NatsTimeout:
                text = f"the provider did not answer within {request.timeout:g}s"
                return _llm_failed(request, ErrorKind.GATEWAY_TIMEOUT, text)
            self._rejoin.heard("policy", sent_at)
            try:
                return LlmOutcome.model_validate_json(reply.data)
            except ValidationError:
                return _llm_failed(request, ErrorKind.INTERNAL, _MALFORMED)

    async def routed(self, message: Routed) -> CallOutcome:
        """`message` to its upstream, through the send loop (one step a line, as the module says).

        Encode, route, send, wait (nobody subscribed: a replica may be rejoining), retry (a grant the
        executor found stale goes to policy instead), read."""
        subject, executors = _SUBJECTS[type(message)]
        tries = 0  # sends that found nobody of the role they needed
        ask_policy = False
        while True:
            # each step's answer told apart by a class pattern or exact type, not by an isinstance call
            data = self._encode(message)
            if isinstance(data, bytes) and not fits(self._nc, len(data)):  # a `Carried` too (co-located)
                data = await self._offload(message, len(data))
            match data:
                case CallOutcome():  # why it cannot be sent
                    return data
            held = self._route(executors, message, ask_policy)
            seen = self.grants.seen() if held is None else ()  # what a grant in the answer is kept against
            reply = await self._sent(subject, executors, data, message, held)
            match reply:
                case Nobody():
                    why = await self._rejoin.wait(reply, message.deadline, tries)
                    if why is not None:
                        return _failed(message, ErrorKind.GATEWAY_UNAVAILABLE, why, "not_run")
                    tries += 1
                    ask_policy = False
                    _SENT["again"].inc()
                case CallOutcome():
                    return reply
                case _ if held is not None and subjects.GRANT_STALE in (reply.headers or _NO_HEADERS):
                    self._stale(executors, message)
                    ask_policy = True
                case _:
                    outcome = self._read(reply, executors, message, held, seen)
                    return outcome if outcome.result_blob is None else await self._with_result(outcome)

    def _encode(self, message: Routed) -> bytes | CallOutcome:
        """Step encode: the message's bytes; or why it cannot be sent (it did not run)."""
        try:
            return carrying(message)
        except PydanticSerializationError as exc:  # e.g. arguments nested deeper than JSON serializers go
            text = f"{message.describe()} cannot be forwarded: {_reason(exc)}"
            return _failed(message, ErrorKind.INVALID_ARGUMENTS, text, "not_run")

    async def _offload(self, message: Routed, size: int) -> bytes | CallOutcome:
        """Step encode, for bytes too large for one bus message: its arguments moved to the object store.

        Or why it cannot be sent (it did not run)."""
        shrunk = await self._shrunk(message, size)
        if isinstance(shrunk, GatewayError):
            return CallOutcome(id=message.id, error=shrunk, decided_by="executor", execution="not_run")
        return shrunk

    def _route(self, executors: str, message: Routed, ask_policy: bool) -> Held | None:
        """Step route: policy's grant for the message, which sends it straight to the executors.

        None (or `ask_policy`) sends it to policy."""
        held = None if ask_policy else self.grants.find(executors, message)
        _SENT["policy" if held is None else "granted"].inc()
        return held

    async def _sent(
        self, subject: str, executors: str, data: bytes, message: Routed, held: Held | None
    ) -> Msg | Nobody | CallOutcome:
        """Step send: the reply; `Nobody` when no replica of the role it needed was subscribed (it did not run).

        Or the outcome of a send that failed on this side (refunded: it may have run)."""
        sent_at = time.monotonic()
        try:
            if held is None:
                reply = await self._send(subject, data, message.timeout)
            else:
                reply = await self._policy.request(
                    executors, data, within=message.timeout, extra=held.headers, role="executor"
                )
        except NoRespondersError:
            return _NO_POLICY if held is None else _NO_EXECUTOR
        except (ResponderLost, BusStuck, NatsTimeout) as exc:
            await self._refund(message)
            return _lost(message, exc)
        if held is None:
            self._rejoin.heard("policy", sent_at)  # it answered or forwarded the call since
        if subjects.NO_EXECUTOR in (reply.headers or _NO_HEADERS):  # policy allowed it and found no executor
            return _NO_EXECUTOR
        return reply

    def _stale(self, executors: str, message: Routed) -> None:
        """Step retry: the grant expired on the executor's clock (nothing ran); dropped, the next try asks policy."""
        self._rejoin.heard("executor")
        self.grants.drop(executors, message)
        _SENT["stale"].inc()

    def _read(
        self, reply: Msg, executors: str, message: Routed, held: Held | None, seen: tuple[int, ...]
    ) -> CallOutcome:
        """Step read: the reply as the outcome.

        (A result too large for one message still in the object store: `_with_result`), a grant policy
        gave with it kept."""
        if held is None and reply.headers and (grant := reply.headers.get(subjects.GRANT)) is not None:
            self.grants.keep(executors, message, grant, seen)
        try:
            outcome = call_outcome(reply)
        except ValidationError:
            return _failed(message, ErrorKind.INTERNAL, _MALFORMED)
        if outcome.decided_by == "executor":
            self._rejoin.heard("executor")
        return outcome

    async def _refund(self, message: Routed) -> None:
        """This side failed a tool call that policy may have charged.

        Give the charge back, as the executor would have for a call that did not run (policy holds no
        charge otherwise)."""
        if message.refunded_when_lost:
            await self._nc.publish(subjects.POLICY_REFUND, Refund(id=message.id).model_dump_json().encode())

    async def _shrunk(self, message: Routed, size: int) -> bytes | GatewayError:
        """A request too large for one NATS message, its arguments moved to the object store.

        Or why it cannot be sent."""
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
        """Which of the (server, tool) pairs of `tools` the caller may use.

        As policy decides (`allowed`), and the revisions it decided at; or why there is no answer
        (`error`)."""
        servers = list(include_servers) if include_servers is not None else None
        names = list(include_tools) if include_tools is not None else None
        return await ask_visible(self._nc, caller, tools, servers, names, timeout)
