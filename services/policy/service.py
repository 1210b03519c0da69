"""Policy service: decides every governed request on the request path.

Hot path (raw nats-py, no framework): a `ToolCall` arrives on `POLICY_CALL`. The decision runs
inline: grants and header narrowing from the compiled in-memory view, then budgets and rate
limits in one Redis round trip when the call has any. A refusal is answered at once; an allowed
call is sent byte-for-byte to the executor as a NATS request and its outcome relayed back. The
relay costs one hop (`bastion_common.relay`, which also notices an executor replica dying
mid-call), but forwarding with the caller's inbox would lose NATS's "no responders" signal (the
server sends it only to the publisher), turning a missing executor into a silent wait for the
full timeout; and policy must see the outcome to refund a call that failed. Policy acknowledges
calls still running after a moment and answers its own liveness subject, so ingress notices this
replica dying mid-call in the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel, ConfigDict, ValidationError

from bastion_common import metrics, observability, permissions, subjects, tracing
from bastion_common.errors import ErrorKind
from bastion_common.kvwatch import BucketWatch
from bastion_common.messages import (
    CallOutcome,
    Execution,
    GatewayError,
    ToolCall,
    UpstreamRequest,
    VisibleTools,
    VisibleToolsQuery,
)
from bastion_common.nats import connect, processed
from bastion_common.relay import AckedRequester, Acknowledger, ResponderLost, too_late
from bastion_common.settings import PolicySettings
from bastion_common.signing import WorkSigner

from .charging import Charger
from .filters import Narrowing, narrowing, narrowing_problem
from .limits import LimitEngine
from .llm import LlmDecider
from .view import CompiledKey, PolicyView

__all__ = ["PolicyService"]

log = logging.getLogger(__name__)

_NOT_CHARGED = frozenset(
    {
        ErrorKind.UPSTREAM_UNAVAILABLE,
        ErrorKind.UPSTREAM_TIMEOUT,
        ErrorKind.UPSTREAM_ERROR,
        ErrorKind.INVALID_ARGUMENTS,
        ErrorKind.UNKNOWN_TOOL,
        ErrorKind.GATEWAY_UNAVAILABLE,
        ErrorKind.GATEWAY_TIMEOUT,
        ErrorKind.INTERNAL,
    }
)
"""Outcomes after which the call's charge is refunded: the tool did not run (or we cannot know it did).
A tool result with `isError` is a tool that ran, and stays charged."""


class _OutcomeError(BaseModel):
    """Only the error of an executor outcome: pydantic skips the (possibly large) result."""

    model_config = ConfigDict(extra="ignore")
    error: GatewayError | None = None


class PolicyService:
    def __init__(self, settings: PolicySettings) -> None:
        self.settings = settings
        self.instance = settings.instance or f"{socket.gethostname()}-{os.getpid()}"
        self.view = PolicyView()
        self._nc: NATS | None = None
        self._redis: aioredis.Redis | None = None
        self.charger: Charger | None = None
        self._watches: list[BucketWatch] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._executors: AckedRequester | None = None
        self._acks: Acknowledger | None = None
        self._llm: LlmDecider | None = None
        self.metrics_server: metrics.MetricsServer | None = None
        self._lag = metrics.StateCollector(
            lambda: metrics.subscription_lag("policy", self._nc) if self._nc else iter(())
        )

    async def start(self) -> None:
        self.metrics_server = observability.start("policy", self.settings)
        # no command retries (a charge retried after a lost reply would be charged twice)
        engine = LimitEngine.from_url(self.settings.redis_url.get_secret_value())
        self._redis = engine.redis
        self.charger = Charger(engine, self.view)
        self._nc = nc = await connect(
            self.settings.nats_url,
            name=f"bastion-policy-{self.instance}",
            role=permissions.POLICY,
            nkey_seed_file=self.settings.nats_nkey_seed_file,
        )
        view = self.view
        self._watches = [
            BucketWatch(nc, subjects.KV_KEYS, view.put_key, view.delete_key),
            BucketWatch(nc, subjects.KV_POLICY, view.put_entity, view.delete_entity),
            BucketWatch(nc, subjects.KV_SERVERS, view.put_server, view.delete_server),
        ]
        for watch in self._watches:
            await watch.start()
        self._executors = AckedRequester(
            nc,
            role="executor",
            accepted_by=subjects.EXEC_ACCEPTED_BY,
            alive_subject=subjects.executor_alive_subject,
            settings=self.settings,
            signer=WorkSigner(self.settings.bus_signing_key),  # executors run only what policy signed
        )
        await self._executors.start()
        self._acks = Acknowledger(
            nc,
            instance=self.instance,
            accepted_by=subjects.POLICY_ACCEPTED_BY,
            alive_subject=subjects.policy_alive_subject(self.instance),
            after=self.settings.ack_after,
            margin=self.settings.ack_margin,
        )
        await nc.subscribe(subjects.POLICY_CALL, queue=subjects.QUEUE_POLICY, cb=self._on_call)
        await nc.subscribe(subjects.POLICY_LIST, queue=subjects.QUEUE_POLICY, cb=self._on_list)
        await nc.subscribe(subjects.POLICY_REQUEST, queue=subjects.QUEUE_POLICY, cb=self._on_request)
        self._llm = LlmDecider(self.view, self.charger, self._executors, nc.publish)
        await nc.subscribe(subjects.POLICY_LLM, queue=subjects.QUEUE_POLICY, cb=self._on_llm)
        # after the calls (NATS keeps a connection's order), so answering it also means "taking calls"
        await self._acks.start()
        await processed(nc)
        self._lag.register()
        log.info("policy %s ready", self.instance)

    async def stop(self) -> None:
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=10)
        for watch in self._watches:
            await watch.stop()
        if self._nc and not self._nc.is_closed:
            await self._nc.drain()
        if self._redis is not None:
            await self._redis.aclose()
        self._lag.unregister()
        if self.metrics_server is not None:
            self.metrics_server.close()

    def _gauges(self) -> Iterator[metrics.Sample]:
        """This replica's NATS lag (messages waiting for a handler), as of the scrape."""
        if self._nc is not None:
            yield from metrics.subscription_lag("policy", self._nc)

    async def _on_call(self, msg: Msg) -> None:
        await self._decide(msg, ToolCall)

    async def _on_request(self, msg: Msg) -> None:
        """Prompts, resources and completions: allowed by grants on `server/<target>`, never charged."""
        await self._decide(msg, UpstreamRequest)

    async def _on_llm(self, msg: Msg) -> None:
        """A chat completion: refusals at once, the charge and the provider call in their own task."""
        assert self._acks is not None and self._llm is not None
        if not msg.reply or (request := self._llm.parse(msg)) is None:
            return
        refused = (
            self._llm.refusal(request)
            if self._acks.admit(msg)
            else GatewayError(kind=ErrorKind.GATEWAY_TIMEOUT, message="the request reached policy too late to run")
        )
        if refused is not None:
            await self._llm.refuse(msg.reply, request.id, refused)
            return
        task = asyncio.create_task(self._llm.charge_and_relay(msg, request))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        self._acks.watch(msg, task)

    async def _decide(self, msg: Msg, model: type[ToolCall] | type[UpstreamRequest]) -> None:
        """Grants and header narrowing inline; a refusal is answered at once, an allowed request
        goes on in its own task (limits need Redis, and the executor may take a while)."""
        assert self._acks is not None
        if not msg.reply:
            return
        started = time.perf_counter()
        try:
            message = model.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("dropping a malformed %s: %s", model.__name__, exc.errors()[0]["msg"])
            return
        if not self._acks.admit(msg) or _expired(message):
            # ingress has failed this request already (this replica was paused or overloaded):
            # deciding and forwarding it now would run what the agent was told had failed
            log.warning("%s %s arrived after ingress stopped waiting; not run", model.__name__, message.id)
            await self._answer(msg.reply, too_late(message.id, "policy"))
            return
        target = message.tool if isinstance(message, ToolCall) else message.target
        narrow = _narrowing(message.include_servers, message.include_tools)
        decision = (
            narrow
            if isinstance(narrow, GatewayError)
            else self.view.authorize(message.caller, message.server, target, narrow)
        )
        method = "tools/call" if isinstance(message, ToolCall) else message.method
        if isinstance(decision, GatewayError):
            _refused(method, decision, started)
            await self._answer(
                msg.reply, CallOutcome(id=message.id, error=decision, decided_by="policy", execution="not_run")
            )
            return
        work: Coroutine[Any, Any, object]
        if isinstance(message, ToolCall):
            work = self._charge_and_relay(msg, message, decision, started)
        else:
            metrics.observe("policy", method, "allowed", time.perf_counter() - started)
            work = self._relay(msg, subjects.EXEC_REQUEST, message, message.method)
        if tracing.enabled():  # the decision's span continues ingress's, from the request's headers
            work = tracing.traced(work, "policy", f"policy {method}", carrier=msg.headers)
        task = asyncio.create_task(work)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        self._acks.watch(msg, task)  # names this replica to ingress if the request is still running shortly

    async def _charge_and_relay(self, msg: Msg, call: ToolCall, key: CompiledKey, started: float) -> None:
        assert self.charger is not None and msg.reply
        charge = await self.charger.charge(key, call.server, call.tool, time.time())
        if isinstance(charge, GatewayError):
            _refused("tools/call", charge, started)
            await self._answer(
                msg.reply, CallOutcome(id=call.id, error=charge, decided_by="policy", execution="not_run")
            )
            return
        metrics.observe("policy", "tools/call", "allowed", time.perf_counter() - started)
        price = self.charger.price(call.server, call.tool)
        reply = await self._relay(msg, subjects.EXEC_CALL, call, f"tool {call.name!r}", price or None)
        if charge is None:
            return
        if reply is None or not _charged(reply):  # failed here, or upstream before it could run
            await self.charger.refund(charge)

    async def _relay(
        self,
        msg: Msg,
        subject: str,
        message: ToolCall | UpstreamRequest,
        what: str,
        price: float | None = None,
    ) -> bytes | None:
        """Send the request on to the executor (same bytes) and its answer back to ingress, with the
        call's `price` as its `CHARGED_USD` header (0 when the upstream never ran it: refunded); the
        executor's reply, or None when policy answered with an error of its own (and charged nothing).
        The price is the call's cost whether or not the key has a budget to charge it to."""
        assert self._nc is not None and self._executors is not None and msg.reply
        if _expired(message):  # charging took until past the deadline: ingress has given up
            await self._answer(msg.reply, too_late(message.id, "policy"))
            return None
        execution: Execution = "may_have_run"
        try:
            reply = await self._executors.request(subject, msg.data, within=max(message.timeout - 0.05, 0.05))
        except ResponderLost as exc:
            error = GatewayError(
                kind=ErrorKind.GATEWAY_UNAVAILABLE,
                message=f"{exc}; {what} may or may not have run; retry if it is safe to",
            )
        except NoRespondersError:
            error = GatewayError(
                kind=ErrorKind.GATEWAY_UNAVAILABLE,
                message="no executor service is running behind this gateway; retry shortly",
            )
            execution = "not_run"
        except NatsTimeout:
            error = GatewayError(
                kind=ErrorKind.GATEWAY_TIMEOUT, message=f"{what} did not answer within {message.timeout:g}s"
            )
        else:
            headers = None
            if price is not None:
                headers = {subjects.CHARGED_USD: repr(price if _charged(reply.data) else 0.0)}
            await self._nc.publish(msg.reply, reply.data, headers=headers)
            return reply.data
        await self._answer(msg.reply, CallOutcome(id=message.id, error=error, decided_by="policy", execution=execution))
        return None

    async def _on_list(self, msg: Msg) -> None:
        assert self._nc is not None
        if not msg.reply:
            return
        try:
            query = VisibleToolsQuery.model_validate_json(msg.data)
        except ValidationError as exc:
            reply = VisibleTools(error=GatewayError(kind=ErrorKind.INTERNAL, message=str(exc.errors()[0]["msg"])))
        else:
            narrow = _narrowing(query.include_servers, query.include_tools)
            visible = (
                narrow if isinstance(narrow, GatewayError) else self.view.visible(query.caller, query.tools, narrow)
            )
            reply = VisibleTools(error=visible) if isinstance(visible, GatewayError) else VisibleTools(allowed=visible)
        await self._nc.publish(msg.reply, reply.model_dump_json().encode())

    async def _answer(self, reply: str, outcome: CallOutcome) -> None:
        assert self._nc is not None
        await self._nc.publish(reply, outcome.model_dump_json().encode())


def _charged(reply: bytes) -> bool:
    """Whether the executor's outcome keeps its charge: refunded when the upstream never ran it."""
    try:
        outcome_error = _OutcomeError.model_validate_json(reply).error
    except ValidationError:
        return True
    return outcome_error is None or outcome_error.kind not in _NOT_CHARGED


def _refused(method: str, error: GatewayError, started: float) -> None:
    """Count a refusal by its reason (grants, budget, rate limit, ...) and the decision's time."""
    metrics.POLICY_REFUSALS.labels(error.kind.value).inc()
    metrics.observe("policy", method, error.kind.value, time.perf_counter() - started)


def _expired(message: ToolCall | UpstreamRequest) -> bool:
    return time.time() >= message.deadline


def _tuple(items: list[str] | None) -> tuple[str, ...] | None:
    return tuple(items) if items is not None else None


def _narrowing(servers: list[str] | None, tools: list[str] | None) -> Narrowing | GatewayError:
    if (problem := narrowing_problem(servers, tools)) is not None:
        return GatewayError(kind=ErrorKind.INVALID_ARGUMENTS, message=problem)
    return narrowing(_tuple(servers), _tuple(tools))
