"""Policy service: decides every governed request on the request path.

Hot path (raw nats-py, no framework): a `ToolCall` arrives on `POLICY_CALL`; a denial is answered
at once; an allowed call is sent byte-for-byte to the executor as a NATS request and its outcome
relayed back. The relay costs one hop, but forwarding with the caller's inbox would lose NATS's
"no responders" signal (the server sends it only to the publisher), turning a missing executor
into a silent wait for the full timeout; and it lets policy see every outcome (refunds).
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from bastion_common import subjects
from bastion_common.errors import ErrorKind
from bastion_common.kvwatch import BucketWatch
from bastion_common.messages import CallOutcome, GatewayError, ToolCall, VisibleTools, VisibleToolsQuery
from bastion_common.nats import connect
from bastion_common.settings import PolicySettings

from .view import KeyView

__all__ = ["PolicyService"]

log = logging.getLogger(__name__)


class PolicyService:
    def __init__(self, settings: PolicySettings) -> None:
        self.settings = settings
        self.keys = KeyView()
        self._nc: NATS | None = None
        self._watch: BucketWatch | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._nc = nc = await connect(self.settings.nats_url, name=f"bastion-policy{self.settings.instance}")
        self._watch = BucketWatch(nc.jetstream(), subjects.KV_KEYS, self.keys.put, self.keys.delete)
        await self._watch.start()
        await nc.subscribe(subjects.POLICY_CALL, queue=subjects.QUEUE_POLICY, cb=self._on_call)
        await nc.subscribe(subjects.POLICY_LIST, queue=subjects.QUEUE_POLICY, cb=self._on_list)
        await nc.flush()
        log.info("policy ready")

    async def stop(self) -> None:
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=10)
        if self._watch:
            await self._watch.stop()
        if self._nc and not self._nc.is_closed:
            await self._nc.drain()

    async def _on_call(self, msg: Msg) -> None:
        # The decision runs inline in the subscription's task (a dict lookup and a regex match);
        # only the wait for the executor gets a task of its own.
        assert self._nc is not None
        if not msg.reply:
            return
        try:
            call = ToolCall.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("dropping malformed tool call: %s", exc.errors()[0]["msg"])
            return
        denial = self.keys.decide(call.caller, call.server, call.tool)
        if denial is None:
            task = asyncio.create_task(self._relay(msg, call))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            return
        await self._answer(msg.reply, CallOutcome(id=call.id, error=denial, decided_by="policy"))

    async def _relay(self, msg: Msg, call: ToolCall) -> None:
        assert self._nc is not None and msg.reply
        try:
            reply = await self._nc.request(subjects.EXEC_CALL, msg.data, timeout=max(call.timeout - 0.05, 0.05))
        except NoRespondersError:
            error = GatewayError(kind=ErrorKind.GATEWAY_UNAVAILABLE,
                                 message="no executor service is running behind this gateway; retry shortly")
        except NatsTimeout:
            error = GatewayError(kind=ErrorKind.GATEWAY_TIMEOUT,
                                 message=f"tool {call.name!r} did not answer within {call.timeout:g}s")
        else:
            await self._nc.publish(msg.reply, reply.data)
            return
        await self._answer(msg.reply, CallOutcome(id=call.id, error=error, decided_by="policy"))

    async def _answer(self, reply: str, outcome: CallOutcome) -> None:
        assert self._nc is not None
        await self._nc.publish(reply, outcome.model_dump_json().encode())

    async def _on_list(self, msg: Msg) -> None:
        assert self._nc is not None
        if not msg.reply:
            return
        try:
            query = VisibleToolsQuery.model_validate_json(msg.data)
        except ValidationError as exc:
            reply = VisibleTools(error=GatewayError(kind=ErrorKind.INTERNAL, message=str(exc.errors()[0]["msg"])))
        else:
            visible = self.keys.visible(query.caller, query.tools)
            reply = VisibleTools(error=visible) if isinstance(visible, GatewayError) else VisibleTools(allowed=visible)
        await self._nc.publish(msg.reply, reply.model_dump_json().encode())
