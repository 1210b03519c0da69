"""Policy service: decides every governed request on the request path.

Hot path (raw nats-py, no framework): a `ToolCall` arrives on `POLICY_CALL`. The decision runs
inline: grants and header narrowing from the compiled in-memory view, then budgets and rate
limits in one Redis round trip when the call has any. A refusal is answered at once; an allowed
call is forwarded byte for byte to the executors with the requester's reply subject
(`forwarding.py`): the executor answers ingress directly and policy is done with the call. Only
"no executor at all" comes back to policy (NATS's "no responders"), which it answers itself. A call
that did not run is refunded when a `Refund` names it (`POLICY_REFUND`, from the executor or the
requester). Policy acknowledges calls it still holds after a moment (a slow Redis) and answers its
own liveness subject, so ingress notices this replica dying mid-decision; once it forwards such a
call, it tells ingress it handed it over.

Chat completions (`POLICY_LLM`) are still relayed (`llm_decisions.py`): policy settles their actual cost
from the outcome.
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
from pydantic import ValidationError

from libs.common.bus import permissions
from libs.common.bus.acknowledger import Acknowledger, too_late
from libs.common.bus.kvwatch import BucketWatch
from libs.common.bus.nats import connect_service, drain_or_close, kv_bucket, processed
from libs.common.bus.rejoin import Rejoin
from libs.common.bus.relay import AckedRequester
from libs.common.bus.stores import declare_owned
from libs.common.bus.work_signing import WorkSigner
from libs.common.contracts import subjects
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import (
    CallOutcome,
    GatewayError,
    Grant,
    PolicyCondition,
    Refund,
    RoutedHead,
    VisibleTools,
    VisibleToolsQuery,
)
from libs.common.runtime import metrics, observability, tracing
from libs.common.runtime.probes import Probes, start_probes
from libs.common.settings import PolicySettings

from .approval_desk import ApprovalDesk
from .cedar_gate import Ask, Gate, Park, Refuse, Resume
from .charging import Charger
from .filters import Narrowing, narrowing, narrowing_problem
from .forwarding import Charges, Forwarded, Forwarder
from .llm_decisions import LlmDecider
from .metrics import POLICY_REFUSALS
from .quotas import Charged, LimitEngine, LimitPlan
from .user_confirm import CONFIRMED, UserConfirmation
from .view import CompiledKey, PolicyView

__all__ = ["PolicyService"]

log = logging.getLogger(__name__)

_ROUTED = {
    subjects.POLICY_CALL: (subjects.EXEC_CALL, True, "tools/call"),
    subjects.POLICY_REQUEST: (subjects.EXEC_REQUEST, False, "upstream/request"),
}
"""What an allowed routed request becomes: the executors' subject it is forwarded to, whether it is
charged (tool calls are; prompts, resources and completions are allowed by grants alone), and its
`method` label in the metrics (policy reads only the request's head, which names no method)."""
_PASSED_ON = (subjects.WANT_ACK, subjects.ACCEPT_BY)
"""Headers of a request that travel on with it to the executor."""
_CHARGE_KEPT = 30.0
"""Seconds past a call's deadline its charge stays refundable (a refund sent as the deadline struck)."""
_NO_EXECUTOR = "no executor service is running behind this gateway; retry shortly"


class PolicyService:
    def __init__(self, settings: PolicySettings) -> None:
        self.settings = settings
        self.instance = settings.instance or f"{socket.gethostname()}-{os.getpid()}"
        self.view = PolicyView()
        self.gate = Gate()
        self._desk: ApprovalDesk | None = None
        self._confirm: UserConfirmation | None = None
        self._nc: NATS | None = None
        self._redis: aioredis.Redis | None = None
        self.charger: Charger | None = None
        self._watches: list[BucketWatch] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._executors: AckedRequester | None = None
        self._forwarder: Forwarder | None = None
        self.charges = Charges()
        """Charges of forwarded calls, until a `Refund` names them or their deadline passes."""
        self._acks: Acknowledger | None = None
        self._llm: LlmDecider | None = None
        self.metrics_server: metrics.MetricsServer | None = None
        self.probes: Probes | None = None
        self._lag = metrics.StateCollector(self._gauges)
        self._signer = WorkSigner(settings.bus_signing_key)

    async def start(self) -> None:
        self.metrics_server = observability.start("policy", self.settings)
        # no command retries (a charge retried after a lost reply would be charged twice)
        engine = LimitEngine.from_url(self.settings.redis_url.get_secret_value())
        self._redis = engine.redis
        self.charger = Charger(engine, self.view)
        self._nc = nc = await connect_service(
            self.settings, role=permissions.POLICY, name=f"bastion-policy-{self.instance}"
        )
        self.probes = await start_probes(
            "policy", self.settings, nc, valkey=self._valkey_answers, policies=self._policies_loaded
        )
        view = self.view
        await declare_owned(nc.jetstream(), permissions.POLICY, self.settings)  # the approvals bucket
        self._watches = [
            BucketWatch(nc, subjects.KV_KEYS, self._put_key, self._delete_key),
            BucketWatch(nc, subjects.KV_POLICY, self._put_policy, self._delete_policy),
            BucketWatch(nc, subjects.KV_SERVERS, view.put_server, view.delete_server),
            BucketWatch(nc, subjects.KV_CATALOG, self.gate.put_catalog, self.gate.delete_catalog),
        ]
        for watch in self._watches:
            await watch.start()
        self._executors = AckedRequester(
            nc,
            subjects.EXEC_HOLDERS,
            settings=self.settings,
            signer=self._signer,  # executors run only what policy signed
        )
        await self._executors.start()
        self._desk = ApprovalDesk(
            await kv_bucket(nc.jetstream(), subjects.KV_APPROVALS), self._executors, self.settings
        )
        self._confirm = UserConfirmation(nc, self._executors)
        self._forwarder = Forwarder(nc, self._signer, self._no_executor)
        await self._forwarder.start()
        await nc.subscribe(subjects.POLICY_REFUND, cb=self._on_refund)
        self._acks = Acknowledger.of(nc, subjects.POLICY_HOLDERS, self.instance, self.settings)
        for routed in _ROUTED:  # tool calls; prompts, resources and completions: one decision path
            await nc.subscribe(routed, queue=subjects.QUEUE_POLICY, cb=self._decide)
        await nc.subscribe(subjects.POLICY_LIST, queue=subjects.QUEUE_POLICY, cb=self._on_list)
        rejoin = Rejoin(self.settings.rejoin_wait)
        self._llm = LlmDecider(self.view, self.charger, self._executors, nc.publish, rejoin)
        await nc.subscribe(subjects.POLICY_LLM, queue=subjects.QUEUE_POLICY, cb=self._on_llm)
        # after the calls (NATS keeps a connection's order), so answering it also means "taking calls"
        await self._acks.start()
        await processed(nc)
        self._lag.register()
        log.info("policy %s ready", self.instance)
        if self.probes is not None:
            self.probes.started("policy")

    async def stop(self) -> None:
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=10)
        for watch in self._watches:
            await watch.stop()
        if self._forwarder is not None:
            await self._forwarder.stop()
        if self._desk is not None:
            await self._desk.stop()
        if self._nc is not None:
            await drain_or_close(self._nc)
        if self._redis is not None:
            await self._redis.aclose()
        self._lag.unregister()
        await observability.stop(self.metrics_server, self.probes)

    # the Cedar decisions depend on keys and the directory too: a change of either forgets them
    def _put_key(self, key_id: str, value: bytes, revision: int = 0) -> None:
        self.view.put_key(key_id, value, revision)
        self.gate.cedar.forget()

    def _delete_key(self, key_id: str) -> None:
        self.view.delete_key(key_id)
        self.gate.cedar.forget()

    def _put_policy(self, kv_key: str, value: bytes, revision: int = 0) -> None:
        if not self.gate.put_policy(kv_key, value):
            self.view.put_entity(kv_key, value, revision)
            self.gate.cedar.forget()

    def _delete_policy(self, kv_key: str) -> None:
        if not self.gate.delete_policy(kv_key):
            self.view.delete_entity(kv_key)
            self.gate.cedar.forget()

    async def _policies_loaded(self) -> str | None:
        """Readiness: the active Cedar policy version is loaded (else tool calls are refused, saying why)."""
        return self.gate.unavailable

    async def _valkey_answers(self) -> str | None:
        """Readiness: Valkey, which holds the limits' counters, answers a PING."""
        try:
            await self._redis.ping()  # type: ignore[union-attr]  # set before the probes start
        except Exception as exc:
            return f"Valkey does not answer ({type(exc).__name__})"  # its text may carry the URL's password
        return None

    def _gauges(self) -> Iterator[metrics.Sample]:
        """This replica's NATS lag (messages waiting for a handler), as of the scrape."""
        if self._nc is not None:
            yield from metrics.subscription_lag("policy", self._nc)

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

    async def _decide(self, msg: Msg) -> None:
        """Grants and header narrowing inline.

        A refusal is answered at once, an allowed request is forwarded at once, or from its own task when
        budgets or rate limits need Redis first."""
        assert self._acks is not None
        if not msg.reply:
            return
        started = time.perf_counter()
        subject, charged, method = _ROUTED[msg.subject]
        try:
            message = RoutedHead.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("dropping a malformed request on %s: %s", msg.subject, exc.errors()[0]["msg"])
            return
        if not self._acks.admit(msg) or _expired(message):
            # ingress has failed this request already (this replica was paused or overloaded):
            # deciding and forwarding it now would run what the agent was told had failed
            log.warning("request %s arrived after ingress stopped waiting; not run", message.id)
            await self._answer(msg.reply, too_late(message.id, "policy"))
            return
        target = message.granted_as
        narrow = _narrowing(message.include_servers, message.include_tools)
        decision = (
            narrow
            if isinstance(narrow, GatewayError)
            else self.view.authorize(message.caller, message.server, target, narrow)
        )
        if isinstance(decision, GatewayError):
            _refused(method, decision, started)
            await self._answer(
                msg.reply, CallOutcome(id=message.id, error=decision, decided_by="policy", execution="not_run")
            )
            return
        reusable, condition = True, None
        if charged and message.tool is not None:  # tool calls meet the Cedar policies
            gate = self.gate.check(decision, message.server, message.tool, msg.data)
            if isinstance(gate, Refuse):
                _refused(method, gate.error, started)
                outcome = CallOutcome(
                    id=message.id, error=gate.error, decided_by="policy", execution="not_run", policy_id=gate.policy
                )
                await self._answer(msg.reply, outcome)
                return
            if isinstance(gate, Park | Resume):
                self._held(msg, self._approval(msg.reply, gate))
                return
            if isinstance(gate, Ask):
                self._held(msg, self._user_confirms(msg, gate, decision, target))
                return
            reusable, condition = gate.reusable, gate.condition
        assert self.charger is not None
        plan = self.charger.plan(decision, message.server, target) if charged else None
        price = self.charger.price(message.server, target) if charged else 0.0
        if not plan:  # nothing to count or charge: no Redis, no task
            metrics.observe("policy", method, "allowed", time.perf_counter() - started)
            await self._forward(msg, subject, message, None, price, method, reusable=reusable, condition=condition)
            return
        self._held(msg, self._charge_and_forward(msg, subject, message, plan, price, (method, started)))

    def _held(self, msg: Msg, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` for a request policy holds on to (charging, an approval's KV round trips)."""
        assert self._acks is not None
        task = asyncio.create_task(work)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        self._acks.watch(msg, task)  # names this replica to ingress if the request is still here shortly

    async def _approval(self, reply: str, gate: Park | Resume) -> None:
        """Park a call a policy wants a person to approve, or answer a call naming an approval."""
        assert self._desk is not None and self._nc is not None
        try:
            if isinstance(gate, Park):
                await self._nc.publish(reply, await self._desk.park(gate.call, gate.verdict))
            else:
                await self._nc.publish(reply, await self._desk.resume(gate.call, gate.approval_id))
        except Exception as exc:  # the approvals bucket unreachable: nothing was parked or run
            log.warning("approval of call %s failed: %s", gate.call.id, type(exc).__name__)
            message = "the approvals store is unreachable; the call did not run, retry shortly"
            error = GatewayError(kind=ErrorKind.GATEWAY_UNAVAILABLE, message=message)
            await self._answer(
                reply, CallOutcome(id=gate.call.id, error=error, decided_by="policy", execution="not_run")
            )

    async def _user_confirms(self, msg: Msg, gate: Ask, key: CompiledKey, target: str) -> None:
        """Ask the agent's own user to confirm a call a `@confirm` policy holds.

        Once they do, charge it like any call and run it once (the refund of a call that did not run as
        for any)."""
        assert self._confirm is not None and self._nc is not None and self.charger is not None and msg.reply
        call = gate.call
        refusal = await self._confirm.ask(call, gate.verdict)
        if refusal is not None:
            await self._nc.publish(msg.reply, refusal)
            return
        headers: dict[str, str] = {}
        charge = await self.charger.charge_plan(self.charger.plan(key, call.server, target), time.time())
        if isinstance(charge, GatewayError):
            outcome = CallOutcome(
                id=call.id, error=charge, decided_by="policy", execution="not_run", policy_id=gate.verdict.policy
            )
            outcome.approval_id = CONFIRMED
            await self._answer(msg.reply, outcome)
            return
        if charge is not None:
            headers[subjects.CHARGED] = "1"
            self.charges.hold(call.id, charge, call.deadline + _CHARGE_KEPT)
        if price := self.charger.price(call.server, target):
            headers[subjects.CHARGED_USD] = repr(price)
        data, answered = await self._confirm.run(call, gate.verdict, msg.data, headers)
        await self._nc.publish(msg.reply, data, headers=answered)

    async def _charge_and_forward(
        self,
        msg: Msg,
        subject: str,
        call: RoutedHead,
        plan: LimitPlan,
        price: float,
        timed: tuple[str, float],
    ) -> None:
        assert self.charger is not None and msg.reply
        method, started = timed
        charge = await self.charger.charge_plan(plan, time.time())
        if isinstance(charge, GatewayError):
            _refused(method, charge, started)
            await self._answer(
                msg.reply, CallOutcome(id=call.id, error=charge, decided_by="policy", execution="not_run")
            )
            return
        metrics.observe("policy", method, "allowed", time.perf_counter() - started)
        await self._forward(msg, subject, call, charge, price, method)

    async def _forward(
        self,
        msg: Msg,
        subject: str,
        message: RoutedHead,
        charge: Charged | None,
        price: float,
        method: str,
        *,
        reusable: bool = False,
        condition: PolicyCondition | None = None,
    ) -> None:
        """Hand the request to the executors (same bytes); they answer the requester directly.

        A priced call carries its price (`CHARGED_USD`), which the executor echoes to the requester (0
        when the call did not run) for the audit event's `cost_usd`, whether or not a budget was charged.
        A `reusable` decision (nothing was counted) also carries a `GRANT` the executor hands back, with
        which the requester sends the caller's next such calls straight to the executors (each passing
        `condition`, the per-call policies, in the executor)."""
        assert self._forwarder is not None and self._acks is not None and msg.reply
        if _expired(message):  # charging took until past the deadline: ingress has given up
            await self._answer(msg.reply, too_late(message.id, "policy"))
            if charge is not None:
                await self._refund(charge)
            return
        given = msg.headers or {}
        headers: dict[str, str] = {name: given[name] for name in _PASSED_ON if name in given}
        if await self._acks.hand_over(msg.reply):
            # ingress was told this replica held the call: the executor's acknowledgement is due anew
            headers[subjects.ACCEPT_BY] = f"{time.time() + self.settings.ack_grace:.6f}"
        if price:
            headers[subjects.CHARGED_USD] = repr(price)
        if tracing.enabled():  # policy's span continues the requester's; the executor's continues policy's
            with tracing.server_span("policy", f"policy {method}", carrier=msg.headers):
                tracing.inject(headers)
        if charge is not None:
            headers[subjects.CHARGED] = "1"
            self.charges.hold(message.id, charge, message.deadline + _CHARGE_KEPT)
        elif reusable and self.settings.grant_ttl > 0:
            headers[subjects.GRANT] = self._grant(subject, message, price or None, condition).model_dump_json()
        forwarded = Forwarded(id=message.id, reply=msg.reply)
        await self._forwarder.forward(subject, msg.data, headers, forwarded)

    def _grant(
        self, subject: str, message: RoutedHead, price: float | None, condition: PolicyCondition | None
    ) -> Grant:
        expires = round(time.time() + self.settings.grant_ttl, 3)
        revisions = {watch.bucket: watch.revision for watch in self._watches}
        mac = self._signer.grant_mac(subject, message, expires, price, revisions, condition)
        return Grant(expires=expires, price=price, revisions=revisions, mac=mac, condition=condition)

    async def _no_executor(self, forwarded: Forwarded) -> None:
        """NATS found no executor subscribed: nothing ran; answer for it and give the charge back."""
        error = GatewayError(kind=ErrorKind.GATEWAY_UNAVAILABLE, message=_NO_EXECUTOR)
        await self._answer(
            forwarded.reply,
            CallOutcome(id=forwarded.id, error=error, decided_by="policy", execution="not_run"),
            {subjects.NO_EXECUTOR: "1"},  # the requester may send it again (`libs.common.bus.rejoin`)
        )
        if (charge := self.charges.take(forwarded.id)) is not None:
            await self._refund(charge)

    async def _on_refund(self, msg: Msg) -> None:
        """Every replica hears a refund; the one that charged the call gives its budgets back."""
        try:
            call_id = Refund.model_validate_json(msg.data).id
        except ValidationError:
            log.warning("dropping a malformed Refund")
            return
        if (charge := self.charges.take(call_id)) is not None:
            task = asyncio.create_task(self._refund(charge))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _refund(self, charge: Charged) -> None:
        assert self.charger is not None
        await self.charger.refund(charge)

    async def _on_list(self, msg: Msg) -> None:
        assert self._nc is not None
        if not msg.reply:
            return
        await self._nc.publish(msg.reply, self._visible(msg.data).model_dump_json().encode())

    def _visible(self, data: bytes) -> VisibleTools:
        try:
            query = VisibleToolsQuery.model_validate_json(data)
        except ValidationError as exc:
            return VisibleTools(error=GatewayError(kind=ErrorKind.INTERNAL, message=str(exc.errors()[0]["msg"])))
        narrow = _narrowing(query.include_servers, query.include_tools)
        if isinstance(narrow, GatewayError):
            return VisibleTools(error=narrow)
        digest = query.tools_digest
        if query.tools is not None:
            digest = self.view.visibility.learn(query.tools)
        elif not self.view.visibility.knows(digest):
            return VisibleTools(unknown_list=True)
        visible = self.view.visible(query.caller, digest, narrow)
        if isinstance(visible, GatewayError):
            return VisibleTools(error=visible)
        return VisibleTools(allowed=visible, revisions={watch.bucket: watch.revision for watch in self._watches})

    async def _answer(self, reply: str, outcome: CallOutcome, headers: dict[str, str] | None = None) -> None:
        assert self._nc is not None
        await self._nc.publish(reply, outcome.model_dump_json().encode(), headers=headers)


def _refused(method: str, error: GatewayError, started: float) -> None:
    """Count a refusal by its reason (grants, budget, rate limit, ...) and the decision's time."""
    metrics.child(POLICY_REFUSALS, error.kind.value).inc()
    metrics.observe("policy", method, error.kind.value, time.perf_counter() - started)


def _expired(message: RoutedHead) -> bool:
    return time.time() >= message.deadline


def _tuple(items: list[str] | None) -> tuple[str, ...] | None:
    return tuple(items) if items is not None else None


def _narrowing(servers: list[str] | None, tools: list[str] | None) -> Narrowing | GatewayError:
    if (problem := narrowing_problem(servers, tools)) is not None:
        return GatewayError(kind=ErrorKind.INVALID_ARGUMENTS, message=problem)
    return narrowing(_tuple(servers), _tuple(tools))
