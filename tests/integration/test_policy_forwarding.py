"""Policy decides, then gets out of the way, against a real NATS and Valkey: an allowed call is
forwarded to the executors signed and naming the requester's inbox, where the executor answers;
"no executor at all" is answered by policy itself and the charge given back; a `Refund` naming a
charged call gives its budget back, once. The executor here is a plain NATS subscriber, so the test
sees exactly what policy sends it."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from cli.apply import apply_config
from libs.common.bus.nats import connect
from libs.common.bus.relay import AckedRequester, routed_requester
from libs.common.bus.work_signing import WorkSigner
from libs.common.contracts import subjects
from libs.common.contracts.entities import Budget
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.keys import key_id
from libs.common.contracts.messages import Caller, CallOutcome, Refund, ToolCall, decode_outcome
from libs.common.settings import IngressSettings, PolicySettings
from libs.common.settings.config_file import parse_config
from services.policy.service import PolicyService
from tests.support.barrier import processed
from tests.support.gateway import SERVERS
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

SIGNING_KEY = "test-signing-key"
METERED = "bk_test_forwarding_metered_0000"
BUDGET = Budget(limit_usd=0.05, period="day")
CALLER = Caller(key_id=key_id(METERED), key_name="forwarding")


@pytest.fixture
async def policy(nats_url: str, redis_url: str) -> AsyncIterator[PolicyService]:
    config = parse_config(
        {
            "mcpServers": {
                "priced": {"command": sys.executable, "args": [str(SERVERS / "echo_server.py")], "prices": {"*": 0.02}}
            },
            "keys": [
                {"name": "forwarding", "key": METERED, "tools": ["priced/*"], "budget": BUDGET.model_dump()},
            ],
        }
    )
    nc = await connect(nats_url, "test-setup")
    await apply_config(nc, config)
    await nc.close()
    service = PolicyService(PolicySettings(nats_url=nats_url, redis_url=redis_url, bus_signing_key=SIGNING_KEY))
    await service.start()
    await poll_until(lambda: CALLER.key_id in service.view.keys and "priced" in service.view.servers, "policy's view")
    assert service.charger is not None
    for stale in await service.charger.engine.redis.keys(f"bastion:budget:key:{CALLER.key_name}:*"):
        await service.charger.engine.redis.delete(stale)  # spend of an earlier test of this module
    yield service
    await service.stop()


@pytest.fixture
async def requester(nats_url: str) -> AsyncIterator[tuple[NATS, AckedRequester]]:
    nc = await connect(nats_url, "test-ingress")
    relay = routed_requester(nc, IngressSettings(nats_url=nats_url))
    await relay.start()
    yield nc, relay
    await nc.close()


async def call(relay: AckedRequester) -> CallOutcome:
    message = ToolCall(caller=CALLER, server="priced", tool="echo", name="priced__echo", timeout=10.0)
    reply = await relay.request(subjects.POLICY_CALL, message.model_dump_json().encode(), within=10.0)
    outcome = decode_outcome(reply.data)
    assert outcome.id == message.id
    return outcome


async def spent(policy: PolicyService) -> int:
    assert policy.charger is not None
    return await policy.charger.engine.spent(f"key:{CALLER.key_name}", BUDGET, time.time())


async def test_no_executor_at_all_is_answered_by_policy_and_costs_nothing(policy, requester):
    _, relay = requester
    for _ in range(4):  # 4 x $0.02 > the $0.05 budget: each charge came back, or the third is refused
        outcome = await call(relay)
        assert outcome.error is not None and outcome.error.kind is ErrorKind.GATEWAY_UNAVAILABLE, outcome
        assert outcome.decided_by == "policy" and outcome.execution == "not_run"
        assert "no executor" in outcome.error.message
    await poll_until(lambda: not len(policy.charges), "the last charge to be given back")
    assert await spent(policy) == 0


async def test_the_executor_answers_the_requester_and_a_refund_gives_the_charge_back_once(policy, requester, nats_url):
    nc, relay = requester
    executor = await connect(nats_url, "test-executor")
    received: list[Msg] = []

    async def execute(msg: Msg) -> None:
        received.append(msg)
        reply = (msg.headers or {})[subjects.REPLY_TO]
        call_id = ToolCall.model_validate_json(msg.data).id
        outcome = CallOutcome(id=call_id, result={"content": []}, decided_by="executor", execution="ran")
        await executor.publish(reply, outcome.model_dump_json().encode())

    await executor.subscribe(subjects.EXEC_CALL, queue=subjects.QUEUE_EXECUTOR, cb=execute)
    await processed(executor)
    try:
        first, second = await call(relay), await call(relay)
        assert first.decided_by == second.decided_by == "executor" and first.error is None
        forwarded = received[0]
        headers = forwarded.headers or {}
        # answered straight to the requester's inbox, which policy's signature covers; policy's own
        # inbox is the message's reply subject (where only "no responders" would come)
        assert headers[subjects.REPLY_TO].startswith(subjects.INBOX)
        assert forwarded.reply != headers[subjects.REPLY_TO]
        assert WorkSigner(SIGNING_KEY).verify(subjects.EXEC_CALL, headers[subjects.REPLY_TO], headers, forwarded.data)
        assert not WorkSigner(SIGNING_KEY).verify(subjects.EXEC_CALL, forwarded.reply, headers, forwarded.data)
        assert headers[subjects.CHARGED] == "1" and subjects.WANT_ACK in headers
        assert await spent(policy) == 40_000

        refused = await call(relay)  # $0.06 would exceed $0.05
        assert refused.error is not None and refused.error.kind is ErrorKind.BUDGET_EXCEEDED

        refund = Refund(id=ToolCall.model_validate_json(forwarded.data).id).model_dump_json().encode()
        await nc.publish(subjects.POLICY_REFUND, refund)
        await poll_until(_spent_is(policy, 20_000), "the refund to give $0.02 back")
        await nc.publish(subjects.POLICY_REFUND, refund)  # the same refund again: nothing more comes back
        third = await call(relay)
        assert third.error is None, third.error
        assert await spent(policy) == 40_000
    finally:
        await executor.close()


def _spent_is(policy: PolicyService, amount: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await spent(policy) == amount

    return check
