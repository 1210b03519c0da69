"""Policy replicas killed around calls: policy decides, forwards the call to an executor that answers
ingress directly, and is out of the way; so a call already forwarded outlives every policy replica.
A replica holding a call (still deciding) that dies fails it with an honest -32070 within seconds
(`test_relay.py` and the last test here cover that mechanism); no policy ever is still an
immediate -32070 (one that answered a moment ago is waited for, `libs.common.bus.rejoin`), and a call
that outlives its timeout still a timeout.

Two policy replicas run as processes (SIGKILL, no goodbye on NATS); ingress and the executor
run in the test's event loop. A spy on the reply inboxes sees who acknowledged a call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from libs.common.bus.acknowledger import Acknowledger
from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import Caller, ToolCall
from libs.common.settings import IngressSettings
from services.ingress.sending.request_path import RequestPath
from tests.support.barrier import processed
from tests.support.gateway import ADMIN_KEY, default_config, running_gateway
from tests.support.inbox_spy import inbox_spy
from tests.support.polling import poll_until
from tests.support.replicas import PolicyProcess

pytestmark = pytest.mark.integration

CALL_TIMEOUT = 60.0
PROMPTLY = 15.0  # generous next to the ~1-3 s it takes, and far below CALL_TIMEOUT
ACK_AFTER = 2.0
"""Policy and executor acknowledge calls still running after 2 s (0.25 s by default). A fast call the
client saw answered within that time cannot have been acknowledged (the responder's clock starts
after the client's), so its assertion holds on however loaded a machine; one that took longer, it
does not judge."""
GRANT_TTL = "60"
"""Seconds a grant lasts (5 by default), counted from the tool's first call: the grant of the first
test's `echo__echo` must outlive 20 calls, a 3 s sleep and the kill on however loaded a machine, or
its last call goes to a policy there no longer is."""


def _echo_only() -> dict[str, Any]:
    """The default keys with echo alone: every call here is an echo tool's."""
    raw = default_config()
    del raw["mcpServers"]["notes"]
    return raw


def _text(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def _serving(nc, instance: str) -> bool:
    """A policy answers its liveness subject only once it takes calls (it subscribes to it last)."""
    try:
        await nc.request(subjects.policy_alive_subject(instance), b"", timeout=1)
    except (NoRespondersError, NatsTimeout):
        return False
    return True


def _acks(msg: Msg) -> list[tuple[str, str]]:
    """(acknowledgement header, instance) of an acknowledgement sent to ingress."""
    return [
        (header, msg.headers[header])
        for header in (subjects.POLICY_ACCEPTED_BY, subjects.EXEC_ACCEPTED_BY)
        if msg.headers and header in msg.headers
    ]


@pytest.fixture
async def gateway_with_two_policies(nats_url, redis_url, tmp_path):
    async with running_gateway(
        nats_url,
        redis_url,
        tmp_path,
        _echo_only(),
        policy=False,
        call_timeout=CALL_TIMEOUT,
        rejoin_wait=1.0,
        executor_options={"ack_after": ACK_AFTER},
    ) as gw:
        env = {"BASTION_ACK_AFTER": str(ACK_AFTER), "BASTION_GRANT_TTL": GRANT_TTL}
        policies = {name: PolicyProcess(nats_url, name, redis_url, env).start() for name in ("policy-a", "policy-b")}
        nc = await connect(nats_url, "test-probe")
        try:
            for name in policies:
                await poll_until(lambda name=name: _serving(nc, name), f"{name} to serve")
            yield gw, policies
        finally:
            await nc.close()
            for policy in policies.values():
                policy.stop()


async def test_a_forwarded_call_outlives_every_policy_replica(gateway_with_two_policies, nats_url):
    gw, policies = gateway_with_two_policies
    async with inbox_spy(nats_url, _acks) as acks, gw.client(ADMIN_KEY) as client:
        # fast calls: answered as before, and none answered within ACK_AFTER was acknowledged
        loop = asyncio.get_running_loop()
        for i in range(20):
            # a responder sends a call's acknowledgement before its reply, but the spy's connection may
            # lag the client's: caught up after each call (the spy opened caught up), the acks since the
            # last call's are this call's
            seen, started = len(acks), loop.time()
            assert _text(await client.call_tool("echo__echo", {"text": f"fast {i}"})) == f"fast {i}"
            took = loop.time() - started
            await acks.caught_up()
            assert took >= ACK_AFTER or len(acks) == seen, f"fast call {i} ({took:.2f} s) acknowledged: {acks[seen:]}"
        acks.clear()

        # a slow call: the executor holds it and says so to ingress; policy never did
        slow = asyncio.create_task(client.call_tool("echo__sleep", {"seconds": 3}))
        await poll_until(lambda: acks, "the executor to acknowledge the slow call")
        assert [header for header, _ in acks] == [subjects.EXEC_ACCEPTED_BY]
        for policy in policies.values():
            policy.kill()
        assert _text(await asyncio.wait_for(slow, CALL_TIMEOUT)).startswith("slept 3")

        # with no policy left, a tool policy allowed this key moments ago still runs on its grant
        assert _text(await client.call_tool("echo__echo", {"text": "granted"})) == "granted"
        # and one it never decided is refused once the rejoin wait (a second here) has passed: nothing decides it
        with pytest.raises(MCPError) as none:
            await client.call_tool("echo__add", {"a": 1, "b": 2})
        assert none.value.error.code == -32070


async def test_a_slow_call_on_live_replicas_times_out_and_is_never_lost(gateway_with_two_policies):
    """Acknowledged, probed for seconds, alive throughout: a timeout (the executor's or the
    gateway's, whichever tells first), never -32070."""
    gw, _ = gateway_with_two_policies
    async with gw.client(ADMIN_KEY, headers={"X-Bastion-Timeout": "5"}) as client:
        with pytest.raises(MCPError) as slow:
            await client.call_tool("echo__sleep", {"seconds": 30})
        assert slow.value.error.code in (-32061, -32071), slow.value.error


async def test_no_policy_at_all_is_still_an_immediate_gateway_unavailable(nats_url, redis_url, tmp_path):
    async with (
        running_gateway(nats_url, redis_url, tmp_path, _echo_only(), policy=False) as gw,
        gw.client(ADMIN_KEY) as client,
    ):
        with pytest.raises(MCPError) as none:
            await client.call_tool("echo__echo", {"text": "anyone?"})
    # "no responders", not a call lost after the acknowledgement grace
    assert none.value.error.code == -32070
    assert "no policy service is running" in none.value.error.message


async def test_a_live_policy_holding_a_call_past_its_timeout_is_a_gateway_timeout(nats_url):
    """Ingress's own deadline: a replica that acknowledged the call and stays alive, but never answers."""
    policy = await connect(nats_url, "silent-policy")
    ingress = await connect(nats_url, "ingress")
    try:
        acks = Acknowledger(policy, subjects.POLICY_HOLDERS, instance="silent", after=0.05)
        held: list[asyncio.Task[None]] = []

        async def hold(msg: Msg) -> None:
            held.append(task := asyncio.create_task(asyncio.Event().wait()))
            acks.watch(msg, task)

        await policy.subscribe(subjects.POLICY_CALL, queue=subjects.QUEUE_POLICY, cb=hold)
        await acks.start()
        await processed(policy)
        gateway = RequestPath(ingress, IngressSettings(nats_url=nats_url))
        await gateway.start()
        call = ToolCall(
            caller=Caller(key_id="k", key_name="k"), server="echo", tool="sleep", name="echo__sleep", timeout=2.0
        )
        outcome = await gateway.call(call)
        assert outcome.error is not None and outcome.error.kind == ErrorKind.GATEWAY_TIMEOUT, outcome
        for task in held:
            task.cancel()
    finally:
        await ingress.close()
        await policy.close()
