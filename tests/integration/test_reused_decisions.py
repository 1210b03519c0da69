"""Policy's reusable decisions (`messages.Grant`): a caller's repeat calls of a tool policy allowed
with nothing to count go from ingress straight to an executor; a change to keys or policy stops
that at once, calls with a budget or a rate limit are decided every time, a grant the executor
finds expired sends the call to policy, and every call keeps its audit row and its price. Real
NATS, policy, executor, ingress and audit, with policy's signing key on."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from mcp.shared.exceptions import MCPError
from nats.aio.msg import Msg

from libs.common.bus.nats import connect, kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.entities import RateLimit
from libs.common.contracts.keys import key_id
from libs.common.contracts.messages import AuditEvent, AuditQuery, AuditRows, KeyRecord, ServerRecord
from services.executor.service import ExecutorService
from services.ingress.sending import grant_cache
from services.policy.service import PolicyService
from tests.support.executor_away import answered_by_a_new_executor, counted
from tests.support.gateway import SERVERS, running_gateway
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

PLAIN = "bk_test_grant_plain_key_00000000"
LIMITED = "bk_test_grant_limited_key_000000"
METERED = "bk_test_grant_metered_key_000000"
SIGNING = {"bus_signing_key": "bus-signing-key-of-the-grant-tests"}


def _config() -> dict:
    echo = {"command": sys.executable, "args": [str(SERVERS / "echo_server.py")], "prices": {"add": 0.003}}
    return {
        "mcpServers": {"echo": echo},
        "keys": [
            {"name": "plain", "key": PLAIN, "tools": ["echo/echo", "echo/add"]},
            {"name": "limited", "key": LIMITED, "tools": ["echo/*"], "rate_limit": {"requests": 1000, "per": "hour"}},
            {"name": "metered", "key": METERED, "tools": ["echo/*"], "budget": {"limit_usd": 5.0, "period": "day"}},
        ],
    }


@contextlib.asynccontextmanager
async def _gateway(nats_url: str, redis_url: str, tmp_path, ttl: float = 60.0, **ingress: Any) -> AsyncIterator:
    async with running_gateway(
        nats_url,
        redis_url,
        tmp_path,
        _config(),
        policy_options={**SIGNING, "grant_ttl": ttl},
        executor_options=SIGNING,
        **ingress,
    ) as gw:
        yield gw


@contextlib.asynccontextmanager
async def _listening(nats_url: str, subject: str) -> AsyncIterator[list[Msg]]:
    """Every message on `subject` (heard, not answered)."""
    nc = await connect(nats_url, "test-listener")
    heard: list[Msg] = []

    async def on_msg(msg: Msg) -> None:
        heard.append(msg)

    try:
        await nc.subscribe(subject, cb=on_msg)
        await nc.flush()
        yield heard
    finally:
        await nc.close()


def _decisions(nats_url: str) -> contextlib.AbstractAsyncContextManager[list[Msg]]:
    """Every call policy is asked to decide."""
    return _listening(nats_url, subjects.POLICY_CALL)


async def _heard(nats_url: str, decisions: list[Msg]) -> int:
    nc = await connect(nats_url, "test-flush")
    await nc.flush()  # NATS keeps order per connection: what ingress published before has arrived
    await nc.close()
    return len(decisions)


def _text(result) -> str:
    return result.content[0].text


async def _rows(nats_url: str, count: int) -> list[AuditEvent]:
    nc = await connect(nats_url, "test-audit")
    query = AuditQuery(limit=500).model_dump_json().encode()
    try:

        async def enough() -> list[AuditEvent] | None:
            rows = AuditRows.model_validate_json((await nc.request(subjects.AUDIT_QUERY, query, timeout=5)).data).rows
            return rows if len(rows) >= count else None

        return await poll_until(enough, f"{count} audit rows")
    finally:
        await nc.close()


async def test_repeat_calls_go_straight_to_an_executor_and_keep_their_audit_rows_and_price(
    nats_url, redis_url, tmp_path
):
    async with _gateway(nats_url, redis_url, tmp_path) as gw, _decisions(nats_url) as decisions:
        async with gw.client(PLAIN) as client:
            for i in range(5):
                assert _text(await client.call_tool("echo__echo", {"text": f"call {i}"})) == f"call {i}"
            for _ in range(3):
                assert _text(await client.call_tool("echo__add", {"a": 2, "b": 3})) == "5"
        # one decision per tool: every later call ran on policy's grant
        assert await _heard(nats_url, decisions) == 2
        assert sorted(orjson.loads(m.data)["tool"] for m in decisions) == ["add", "echo"]
        assert len(gw.ingress.handlers.gateway.grants) == 2
        rows = [row for row in await _rows(nats_url, 8) if row.kind == "tool_call"]
        assert sorted((row.tool, row.status, row.cost_usd) for row in rows) == [
            *[("add", "ok", 0.003)] * 3,  # the price travels with the grant
            *[("echo", "ok", None)] * 5,
        ]


async def test_a_change_to_the_key_stops_its_grants_at_once(nats_url, redis_url, tmp_path):
    """The grants last a minute here: the refusal comes from ingress seeing the change, not expiry."""
    async with _gateway(nats_url, redis_url, tmp_path) as gw, gw.client(PLAIN) as client:
        assert _text(await client.call_tool("echo__add", {"a": 1, "b": 1})) == "2"
        assert _text(await client.call_tool("echo__add", {"a": 1, "b": 2})) == "3"
        nc = await connect(nats_url, "test-admin")
        try:
            keys = await kv_bucket(nc.jetstream(), subjects.KV_KEYS)
            record = KeyRecord.model_validate_json((await keys.get(key_id(PLAIN))).value)
            narrowed = record.model_copy(update={"grants": ["echo/echo"]})
            written = await keys.put(record.id, narrowed.model_dump_json().encode())
        finally:
            await nc.close()
        watches = gw.ingress.handlers.policy_inputs
        await poll_until(lambda: all(w.revision >= written for w in watches if w.bucket == subjects.KV_KEYS), "seen")
        with pytest.raises(MCPError) as refused:
            await client.call_tool("echo__add", {"a": 1, "b": 3})
        assert "not allowed" in refused.value.error.message


async def test_calls_with_a_rate_limit_or_a_budget_are_decided_every_time(nats_url, redis_url, tmp_path):
    """A rate limit counts every call; a budget counts priced ones (`add`): a free call of the
    metered key has nothing to count, and is granted."""
    async with _gateway(nats_url, redis_url, tmp_path) as gw, _decisions(nats_url) as decisions:
        async with gw.client(LIMITED) as client:
            for i in range(3):
                assert _text(await client.call_tool("echo__echo", {"text": f"{i}"})) == f"{i}"
        async with gw.client(METERED) as client:
            for i in range(3):
                assert _text(await client.call_tool("echo__add", {"a": i, "b": 1})) == f"{i + 1}"
            assert await _heard(nats_url, decisions) == 6
            assert len(gw.ingress.handlers.gateway.grants) == 0
            for i in range(3):
                assert _text(await client.call_tool("echo__echo", {"text": f"{i}"})) == f"{i}"
        assert await _heard(nats_url, decisions) == 7
        assert len(gw.ingress.handlers.gateway.grants) == 1


async def test_a_grant_the_executor_finds_expired_sends_the_call_to_policy(nats_url, redis_url, tmp_path, monkeypatch):
    """Ingress's clock behind the executor's: it still trusts a grant the executor holds expired.
    Nothing runs on it; the call is decided by policy and answered as usual."""
    monkeypatch.setattr(grant_cache, "_MARGIN", -3600.0)
    async with (
        _gateway(nats_url, redis_url, tmp_path, ttl=0.05) as gw,
        _decisions(nats_url) as decisions,
        _listening(nats_url, subjects.EXEC_CALL) as executed,
    ):
        async with gw.client(PLAIN) as client:
            assert _text(await client.call_tool("echo__echo", {"text": "first"})) == "first"
            assert len(gw.ingress.handlers.gateway.grants) == 1
            await asyncio.sleep(0.3)  # the grant's 50 ms pass
            assert _text(await client.call_tool("echo__echo", {"text": "second"})) == "second"
        assert await _heard(nats_url, decisions) == 2
        # policy's forward, ingress's own send on the expired grant, policy's forward again
        sent_by_ingress = [subjects.REPLY_TO not in (m.headers or {}) for m in executed]
        assert sent_by_ingress == [False, True, False]


async def test_a_granted_call_with_no_executor_left_is_sent_again_for_the_rejoin_wait_then_refused(
    nats_url, redis_url, tmp_path
):
    """An executor answered a moment ago: it may be leaving a NATS member that stopped answering, or
    restarting, so the call is sent again for `rejoin_wait` seconds (`libs.common.bus.rejoin`; 5 here,
    counted from the executor's last answer: its stop alone can take over a second on a loaded machine);
    a restart that outlasts the window has the call refused, not run, saying when an executor last
    answered. Policy is never asked: the grant holds. The executor back, calls run again."""
    async with (
        _gateway(nats_url, redis_url, tmp_path, rejoin_wait=5.0) as gw,
        _decisions(nats_url) as decisions,
        gw.client(PLAIN) as client,
    ):
        assert _text(await client.call_tool("echo__echo", {"text": "first"})) == "first"
        executor = next(s for s in gw.services if isinstance(s, ExecutorService))
        await executor.stop()
        sent_again = _sent_again()
        with pytest.raises(MCPError) as none:
            await client.call_tool("echo__echo", {"text": "anyone?"})
        assert _sent_again() > sent_again
        replacement = ExecutorService(executor.settings)
        await replacement.start()
        try:
            assert _text(await client.call_tool("echo__echo", {"text": "back"})) == "back"
        finally:
            await replacement.stop()
    assert none.value.error.code == -32070
    assert "no executor replica has been subscribed since one answered" in none.value.error.message
    assert "NATS member that stopped answering" in none.value.error.message
    assert await _heard(nats_url, decisions) == 1  # sent on the grant each time: NATS itself said nobody listens


def _resends_past(seconds: float) -> int:
    """How many times a call is sent again before its pauses (0.05 s doubling to 0.5 s) add up past `seconds`."""
    tries, waited = 0, 0.0
    while waited <= seconds:
        waited += min(0.05 * 2**tries, 0.5)
        tries += 1
    return tries


async def test_by_default_a_call_waits_for_an_executor_restart_slower_than_a_few_seconds(nats_url, redis_url, tmp_path):
    """A restart on a loaded machine takes longer than the few seconds a call once waited: by default
    (`BASTION_REJOIN_WAIT`) the call is still sent again after more pauses than fit in 6 s, and runs
    on the executor that comes back."""
    async with _gateway(nats_url, redis_url, tmp_path) as gw, gw.client(PLAIN) as client:
        assert _text(await client.call_tool("echo__echo", {"text": "first"})) == "first"
        later = answered_by_a_new_executor(
            gw, lambda: client.call_tool("echo__echo", {"text": "later"}), _sent_again, resends=_resends_past(6.0)
        )
        assert _text(await later) == "later"


def _sent_again() -> float:
    """Calls ingress sent again because no replica was subscribed (its Prometheus counter)."""
    return counted("bastion_ingress_routed_sends", {"route": "again"})


@pytest.mark.parametrize(
    ("key", "tool", "answer"),
    [(PLAIN, "echo__echo", "back"), (METERED, "echo__add", "5")],
    ids=["on-the-grant", "decided-by-policy"],
)
async def test_a_call_that_finds_no_executor_runs_on_one_that_subscribes_within_the_rejoin_wait(
    nats_url, redis_url, tmp_path, key: str, tool: str, answer: str
):
    """The executor is away (stopped here; moving between NATS members in `test_nats_member_hang`):
    the call waits for the one that takes its place instead of failing, runs once, and keeps one
    audit row and its price. On a grant NATS says nobody listens; with a budget, policy charges,
    finds no executor, refunds and says so (`NO_EXECUTOR`), and ingress asks it again."""
    async with _gateway(nats_url, redis_url, tmp_path) as gw, gw.client(key) as client:
        arguments = {"text": answer} if tool == "echo__echo" else {"a": 2, "b": 3}
        assert _text(await client.call_tool(tool, arguments)) == answer
        again = answered_by_a_new_executor(gw, lambda: client.call_tool(tool, arguments), _sent_again)
        assert _text(await again) == answer
        rows = [row for row in await _rows(nats_url, 2) if row.kind == "tool_call"]
        price = 0.003 if key == METERED else None
        assert [(row.status, row.execution, row.cost_usd) for row in rows] == [("ok", "ran", price)] * 2


async def test_a_tool_rate_limit_added_to_the_server_is_counted_from_the_next_call(nats_url, redis_url, tmp_path):
    """Ingress does not watch the servers' configuration; the executor does, and holds a grant
    decided before a servers change stale, so the next call is decided (and counted) by policy."""
    async with _gateway(nats_url, redis_url, tmp_path) as gw, _decisions(nats_url) as decisions:
        async with gw.client(PLAIN) as client:
            for i in range(2):
                assert _text(await client.call_tool("echo__echo", {"text": f"{i}"})) == f"{i}"
            assert await _heard(nats_url, decisions) == 1
            nc = await connect(nats_url, "test-admin")
            try:  # only the servers bucket changes: ingress sees nothing
                servers = await kv_bucket(nc.jetstream(), subjects.KV_SERVERS)
                record = ServerRecord.model_validate_json((await servers.get("echo")).value)
                limits = {"echo": RateLimit(requests=2, per="hour")}
                limited_config = record.config.model_copy(update={"rate_limits": limits})
                written = await servers.put(
                    "echo", record.model_copy(update={"config": limited_config}).model_dump_json().encode()
                )
            finally:
                await nc.close()
            executor = next(s for s in gw.services if isinstance(s, ExecutorService))
            policy = next(s for s in gw.services if isinstance(s, PolicyService))
            await poll_until(
                lambda: executor._servers_revision() >= written and policy.view.servers["echo"].rate_limits,
                "policy and the executor to apply the change",
            )
            assert len(gw.ingress.handlers.gateway.grants) == 1  # ingress still holds its grant
            for i in range(2):  # the limit's two requests, each decided by policy
                assert _text(await client.call_tool("echo__echo", {"text": f"{i}"})) == f"{i}"
            with pytest.raises(MCPError) as limited:
                await client.call_tool("echo__echo", {"text": "third"})
        assert limited.value.error.code == -32052
        assert await _heard(nats_url, decisions) == 4


ARGUMENT_POLICY = """
@id("no-secrets")
@reason("secrets are not echoed")
forbid (principal, action, resource == Tool::"echo/echo") when { context.arguments.text == "secret" };
"""


async def test_calls_an_argument_policy_governs_are_decided_by_the_executor_on_their_arguments(
    nats_url, redis_url, tmp_path
):
    """Policy decides the first call and grants the pair with its per-call policy as the condition;
    the executor then decides each call's arguments with it. A call it does not allow goes to
    policy, which refuses it naming the policy, and the next allowed call is granted again."""
    config = {**_config(), "policies": ARGUMENT_POLICY}
    async with (
        running_gateway(
            nats_url,
            redis_url,
            tmp_path,
            config,
            policy_options={**SIGNING, "grant_ttl": 60.0},
            executor_options=SIGNING,
        ) as gw,
        _decisions(nats_url) as decisions,
        gw.client(PLAIN) as client,
    ):
        for text in ("a", "b", "c"):
            assert _text(await client.call_tool("echo__echo", {"text": text})) == text
        assert await _heard(nats_url, decisions) == 1
        with pytest.raises(MCPError) as refused:
            await client.call_tool("echo__echo", {"text": "secret"})
        assert "refused by policy 'no-secrets': secrets are not echoed" in refused.value.error.message
        assert await _heard(nats_url, decisions) == 2
        for text in ("d", "e"):
            assert _text(await client.call_tool("echo__echo", {"text": text})) == text
        assert await _heard(nats_url, decisions) == 3
        rows = [row for row in await _rows(nats_url, 6) if row.kind == "tool_call"]
        assert sorted((row.status, row.policy_id or "") for row in rows) == [
            ("denied", "no-secrets"),
            *[("ok", "")] * 5,
        ]
