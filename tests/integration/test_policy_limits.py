"""Budgets and rate limits against a real Valkey: exact exhaustion, hierarchy, windows, refunds,
period rollover (injected clock, no waiting), and two replica processes racing for one budget.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from cli.stack import EmbeddedValkey
from libs.common.contracts.entities import Budget, RateLimit
from libs.common.contracts.errors import ErrorKind
from services.policy.quotas import Charged, LimitEngine, LimitPlan, Refused, plan_for
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

HAMMER = Path(__file__).resolve().parents[1] / "support" / "limits_hammer.py"
WAIT = 60.0


def at(*when: int) -> float:
    return float(calendar.timegm((*when, 0, 0, 0)[:6]))


NOW = at(2026, 3, 18, 12, 30, 15)  # a Wednesday


@pytest.fixture(scope="module")
def shared_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    valkey = EmbeddedValkey(tmp_path_factory.mktemp("limits") / "valkey").start()
    yield valkey
    valkey.stop()


@pytest.fixture
async def redis_url(shared_valkey: EmbeddedValkey) -> str:
    """The module's Valkey, emptied of keys and of loaded scripts: what a fresh server holds, which
    the exact counts and the script-loading test here rely on."""
    client = Redis.from_url(shared_valkey.url)
    try:
        await client.flushall()
        await client.script_flush()
    finally:
        await client.aclose()
    return shared_valkey.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def engine(redis: Redis) -> LimitEngine:
    return LimitEngine(redis)


async def charge_until_refused(engine: LimitEngine, plan: LimitPlan, now: float) -> tuple[int, Refused]:
    for allowed in range(1000):
        result = await engine.check_and_charge(plan, now)
        if isinstance(result, Refused):
            return allowed, result
    raise AssertionError("still allowed after 1000 calls")


# --------------------------------------------------------------------------- budgets


async def test_budget_allows_until_exhausted_then_names_scope_and_reset(engine: LimitEngine) -> None:
    day = Budget(limit_usd=1.00, period="day")
    plan = plan_for(0.25, [("key:ci", day)])
    allowed, refused = await charge_until_refused(engine, plan, NOW)
    assert allowed == 4  # 4 x $0.25 is exactly the limit: allowed
    assert refused.kind == "budget" and refused.scope == "key:ci" and refused.limit == "$1.00 per day"
    assert refused.resets_at == at(2026, 3, 19)
    assert refused.retry_after == at(2026, 3, 19) - NOW
    assert await engine.spent("key:ci", day, NOW) == 1_000_000
    error = refused.error()
    assert error.kind is ErrorKind.BUDGET_EXCEEDED
    assert "key:ci" in error.message and "2026-03-19T00:00:00Z" in error.message


async def test_budget_never_overspent_by_a_partial_call(engine: LimitEngine) -> None:
    plan = plan_for(0.30, [("key:ci", Budget(limit_usd=1.00, period="month"))])
    allowed, refused = await charge_until_refused(engine, plan, NOW)
    assert allowed == 3 and refused.resets_at == at(2026, 4, 1)
    assert await engine.spent("key:ci", Budget(limit_usd=1.00, period="month"), NOW) == 900_000


async def test_hierarchy_refusal_names_the_exhausted_customer_and_charges_nothing(engine: LimitEngine) -> None:
    customer, team = Budget(limit_usd=1.0), Budget(limit_usd=5.0, period="week")
    key = Budget(limit_usd=10.0, period="day")
    chain = [("customer:acme", customer), ("team:payments", team), ("key:ci", key)]
    allowed, refused = await charge_until_refused(engine, plan_for(0.40, chain), NOW)
    assert allowed == 2
    assert refused.scope == "customer:acme" and refused.resets_at == at(2026, 4, 1)
    # all-or-nothing: the refused call charged neither the team nor the key
    assert await engine.spent("team:payments", team, NOW) == 800_000
    assert await engine.spent("key:ci", key, NOW) == 800_000
    # the customer budget is shared: another key of the same customer is refused too
    other = plan_for(0.01, [("customer:acme", customer), ("key:other", Budget(limit_usd=10.0))])
    assert isinstance(await engine.check_and_charge(other, NOW), Charged)  # $0.81 + $0.01 fits
    result = await engine.check_and_charge(plan_for(0.40, [("customer:acme", customer), ("key:other", key)]), NOW)
    assert isinstance(result, Refused) and result.scope == "customer:acme"


async def test_hierarchy_refusal_names_the_key_when_the_key_runs_out_first(engine: LimitEngine) -> None:
    chain = [("customer:acme", Budget(limit_usd=100.0)), ("key:ci", Budget(limit_usd=0.5, period="hour"))]
    allowed, refused = await charge_until_refused(engine, plan_for(0.2, chain), NOW)
    assert allowed == 2 and refused.scope == "key:ci" and refused.resets_at == at(2026, 3, 18, 13)
    assert refused.limit == "$0.50 per hour"


async def test_a_call_dearer_than_the_whole_budget_is_refused(engine: LimitEngine) -> None:
    result = await engine.check_and_charge(plan_for(2.0, [("key:ci", Budget(limit_usd=1.0))]), NOW)
    assert isinstance(result, Refused) and result.kind == "budget"


async def test_free_call_and_empty_plan_cost_no_round_trip() -> None:
    # a client that can reach nothing: any command would raise
    dead = LimitEngine(Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5))
    assert plan_for(0.0, [("key:ci", Budget(limit_usd=0.0))]) == LimitPlan()
    result = await dead.check_and_charge(plan_for(0.0, [("key:ci", Budget(limit_usd=0.0))]), NOW)
    assert isinstance(result, Charged) and result.budget_keys == ()
    assert await dead.refund(result) == 0
    await dead.redis.aclose()


async def test_one_round_trip_per_decision(engine: LimitEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    original = engine.redis.execute_command

    async def counting(*args, **kwargs):
        sent.append(str(args[0]))
        return await original(*args, **kwargs)

    monkeypatch.setattr(engine.redis, "execute_command", counting)
    plan = plan_for(
        0.01,
        [
            ("customer:acme", Budget(limit_usd=10.0)),
            ("team:t", Budget(limit_usd=10.0, period="week")),
            ("key:ci", Budget(limit_usd=10.0, period="day")),
        ],
        [
            ("key:ci", RateLimit(requests=100)),
            ("user:bob", RateLimit(requests=100, per="second")),
            ("tool:github/search", RateLimit(requests=100, per="hour")),
        ],
    )
    await engine.check_and_charge(plan, NOW)  # first ever call: EVALSHA misses, EVAL loads the script
    assert sent == ["EVALSHA", "EVAL"]
    sent.clear()
    for _ in range(5):
        assert isinstance(await engine.check_and_charge(plan, NOW), Charged)
    assert sent == ["EVALSHA"] * 5


async def test_script_flushed_on_the_server_is_reloaded(engine: LimitEngine, redis: Redis) -> None:
    plan = plan_for(0.1, [("key:ci", Budget(limit_usd=1.0))])
    assert isinstance(await engine.check_and_charge(plan, NOW), Charged)
    await redis.script_flush()
    assert isinstance(await engine.check_and_charge(plan, NOW), Charged)
    assert await engine.spent("key:ci", Budget(limit_usd=1.0), NOW) == 200_000


async def test_counters_expire_after_their_period(engine: LimitEngine, redis: Redis) -> None:
    await engine.check_and_charge(
        plan_for(0.1, [("key:ci", Budget(limit_usd=1.0, period="day"))], [("key:ci", RateLimit(requests=5))]), NOW
    )
    budget_ttl = await redis.ttl(engine.budget_key("key:ci", "day", "2026-03-18"))
    rate_ttl = await redis.ttl(engine.rate_key("key:ci", "minute", str(int(NOW) // 60)))
    assert at(2026, 3, 19) - NOW < budget_ttl <= at(2026, 3, 19) - NOW + 7200
    assert 0 < rate_ttl <= 45 + 2


async def test_from_url_engine_absorbs_a_burst_beyond_the_pool(redis_url: str) -> None:
    engine = LimitEngine.from_url(redis_url, max_connections=8)
    budget = Budget(limit_usd=1.0)
    try:
        results = await asyncio.gather(
            *(engine.check_and_charge(plan_for(0.01, [("key:ci", budget)]), NOW) for _ in range(300))
        )
        assert sum(isinstance(r, Charged) for r in results) == 100
        assert await engine.spent("key:ci", budget, NOW) == 1_000_000
    finally:
        await engine.redis.aclose()


# --------------------------------------------------------------------------- rate limits


async def test_key_rate_limit_per_minute_then_next_window(engine: LimitEngine) -> None:
    plan = plan_for(0.0, rates=[("key:ci", RateLimit(requests=3, per="minute"))])
    allowed, refused = await charge_until_refused(engine, plan, NOW)
    assert allowed == 3
    assert refused.kind == "rate_limit" and refused.scope == "key:ci" and refused.limit == "3 requests per minute"
    assert refused.resets_at == at(2026, 3, 18, 12, 31) and refused.retry_after == 45
    assert refused.error().kind is ErrorKind.RATE_LIMITED
    allowed, _ = await charge_until_refused(engine, plan, at(2026, 3, 18, 12, 31))
    assert allowed == 3


async def test_user_limit_is_shared_by_the_users_keys(engine: LimitEngine) -> None:
    user = ("user:bob", RateLimit(requests=4, per="second"))
    key_a = plan_for(0.0, rates=[("key:a", RateLimit(requests=100, per="second")), user])
    key_b = plan_for(0.0, rates=[("key:b", RateLimit(requests=100, per="second")), user])
    results = [await engine.check_and_charge(p, NOW) for p in (key_a, key_b, key_a, key_b, key_a)]
    assert [isinstance(r, Charged) for r in results] == [True] * 4 + [False]
    assert results[-1].scope == "user:bob" and results[-1].resets_at == NOW + 1
    assert isinstance(await engine.check_and_charge(key_a, NOW + 1), Charged)


async def test_tool_limit_counts_every_caller(engine: LimitEngine) -> None:
    tool = ("tool:github/search", RateLimit(requests=2, per="hour"))
    plans = [plan_for(0.0, rates=[(f"key:{k}", RateLimit(requests=10)), tool]) for k in "abc"]
    results = [await engine.check_and_charge(p, NOW) for p in plans]
    assert isinstance(results[0], Charged) and isinstance(results[1], Charged)
    assert isinstance(results[2], Refused) and results[2].scope == "tool:github/search"
    assert results[2].resets_at == at(2026, 3, 18, 13) and results[2].limit == "2 requests per hour"


async def test_refused_call_consumes_no_rate_slot(engine: LimitEngine) -> None:
    rate = ("key:ci", RateLimit(requests=2, per="day"))
    broke = plan_for(5.0, [("key:ci", Budget(limit_usd=1.0))], [rate])
    for _ in range(5):
        refused = await engine.check_and_charge(broke, NOW)
        assert isinstance(refused, Refused) and refused.kind == "budget"
    free = plan_for(0.0, rates=[rate])
    allowed, refused = await charge_until_refused(engine, free, NOW)
    assert allowed == 2 and refused.resets_at == at(2026, 3, 19)


async def test_rate_limits_are_checked_before_budgets(engine: LimitEngine) -> None:
    plan = plan_for(1.0, [("key:ci", Budget(limit_usd=1.0))], [("key:ci", RateLimit(requests=1))])
    assert isinstance(await engine.check_and_charge(plan, NOW), Charged)
    refused = await engine.check_and_charge(plan, NOW)  # both exhausted now
    assert isinstance(refused, Refused) and refused.kind == "rate_limit"


async def test_same_scope_listed_twice_counts_twice(engine: LimitEngine) -> None:
    budget = Budget(limit_usd=1.0)
    plan = plan_for(0.3, [("key:ci", budget), ("key:ci", budget)])
    allowed, _ = await charge_until_refused(engine, plan, NOW)
    assert allowed == 1 and await engine.spent("key:ci", budget, NOW) == 600_000


# --------------------------------------------------------------------------- refunds


async def test_refund_restores_budget_once(engine: LimitEngine) -> None:
    budget = Budget(limit_usd=1.0, period="day")
    plan = plan_for(0.5, [("customer:acme", Budget(limit_usd=50.0)), ("key:ci", budget)])
    first = await engine.check_and_charge(plan, NOW)
    assert isinstance(first, Charged) and first.cost_micro_usd == 500_000
    assert isinstance(await engine.check_and_charge(plan, NOW), Charged)
    assert isinstance(await engine.check_and_charge(plan, NOW), Refused)
    assert await engine.refund(first) == 1_000_000  # $0.50 back to each of the two budgets
    assert await engine.spent("key:ci", budget, NOW) == 500_000
    assert await engine.spent("customer:acme", Budget(limit_usd=50.0), NOW) == 500_000
    assert await engine.refund(first) == -1  # a second refund of the same charge changes nothing
    assert await engine.spent("key:ci", budget, NOW) == 500_000
    assert isinstance(await engine.check_and_charge(plan, NOW), Charged)
    assert isinstance(await engine.check_and_charge(plan, NOW), Refused)


async def test_concurrent_refunds_of_one_charge_restore_it_once(engine: LimitEngine) -> None:
    budget = Budget(limit_usd=1.0)
    charged = await engine.check_and_charge(plan_for(0.25, [("key:ci", budget)]), NOW)
    assert isinstance(charged, Charged)
    results = await asyncio.gather(*(engine.refund(charged) for _ in range(20)))
    assert sorted(results) == [-1] * 19 + [250_000]
    assert await engine.spent("key:ci", budget, NOW) == 0


async def test_refund_leaves_rate_counts(engine: LimitEngine) -> None:
    plan = plan_for(0.1, [("key:ci", Budget(limit_usd=10.0))], [("key:ci", RateLimit(requests=1))])
    charged = await engine.check_and_charge(plan, NOW)
    assert isinstance(charged, Charged)
    await engine.refund(charged)
    refused = await engine.check_and_charge(plan, NOW)
    assert isinstance(refused, Refused) and refused.kind == "rate_limit"


async def test_refund_never_goes_negative_nor_resurrects_an_expired_counter(engine: LimitEngine, redis: Redis) -> None:
    budget = Budget(limit_usd=1.0, period="day")
    charged = await engine.check_and_charge(plan_for(0.4, [("key:ci", budget)]), NOW)
    assert isinstance(charged, Charged)
    key = charged.budget_keys[0]
    await redis.set(key, 100_000, keepttl=True)  # e.g. an operator reset the counter meanwhile
    assert await engine.refund(charged) == 100_000 and await engine.spent("key:ci", budget, NOW) == 0
    gone = await engine.check_and_charge(plan_for(0.4, [("key:other", budget)]), NOW)
    assert isinstance(gone, Charged)
    await redis.delete(gone.budget_keys[0])  # the counter expired before the refund arrived
    assert await engine.refund(gone) == 0
    assert not await redis.exists(gone.budget_keys[0])


async def test_rates_only_charge_needs_no_refund_trip() -> None:
    dead = LimitEngine(Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5))
    assert await dead.refund(Charged()) == 0
    await dead.redis.aclose()


# --------------------------------------------------------------------------- period rollover


@pytest.mark.parametrize(
    ("period", "last_moment", "first_moment", "label"),
    [
        ("minute", at(2026, 3, 18, 12, 30, 59) + 0.999, at(2026, 3, 18, 12, 31), "2026-03-18T1231"),
        ("hour", at(2026, 3, 18, 12, 59, 59), at(2026, 3, 18, 13), "2026-03-18T13"),
        ("day", at(2026, 12, 31, 23, 59, 59), at(2027, 1, 1), "2027-01-01"),
        ("week", at(2026, 3, 22, 23, 59, 59), at(2026, 3, 23), "2026-W13"),  # Sunday -> Monday
        ("month", at(2025, 12, 31, 23, 59, 59), at(2026, 1, 1), "2026-01"),
        ("month", at(2028, 2, 29, 23, 59, 59), at(2028, 3, 1), "2028-03"),  # leap February
    ],
)
async def test_new_period_starts_at_zero(engine, redis, period, last_moment, first_moment, label) -> None:
    budget = Budget(limit_usd=1.0, period=period)
    plan = plan_for(0.5, [("team:t", budget)])
    allowed, refused = await charge_until_refused(engine, plan, last_moment)
    assert allowed == 2 and refused.resets_at == first_moment
    assert refused.retry_after == pytest.approx(first_moment - last_moment)
    assert await engine.spent("team:t", budget, first_moment) == 0
    charged = await engine.check_and_charge(plan, first_moment)
    assert isinstance(charged, Charged) and charged.budget_keys == (f"bastion:budget:team:t:{period}:{label}",)
    assert await redis.get(charged.budget_keys[0]) == b"500000"
    assert isinstance(await engine.check_and_charge(plan, last_moment), Refused)  # the old period stays spent


async def test_refund_after_rollover_goes_to_the_period_that_was_charged(engine: LimitEngine) -> None:
    budget = Budget(limit_usd=1.0, period="month")
    before, after = at(2026, 3, 31, 23, 59, 59), at(2026, 4, 1, 0, 0, 1)
    charged = await engine.check_and_charge(plan_for(0.5, [("key:ci", budget)]), before)
    assert isinstance(await engine.check_and_charge(plan_for(0.5, [("key:ci", budget)]), after), Charged)
    assert await engine.refund(charged) == 500_000
    assert await engine.spent("key:ci", budget, before) == 0
    assert await engine.spent("key:ci", budget, after) == 500_000


async def test_key_prefix_isolates_deployments(redis: Redis) -> None:
    budget = Budget(limit_usd=0.5)
    plan = plan_for(0.5, [("key:ci", budget)])
    a, b = LimitEngine(redis, prefix="{tenant-a}"), LimitEngine(redis, prefix="{tenant-b}")
    assert isinstance(await a.check_and_charge(plan, NOW), Charged)
    assert isinstance(await b.check_and_charge(plan, NOW), Charged)
    assert isinstance(await a.check_and_charge(plan, NOW), Refused)
    assert await redis.exists("{tenant-a}:budget:key:ci:month:2026-03")


# --------------------------------------------------------------------------- replicas racing


async def race(
    redis_url: str,
    redis: Redis,
    spec: dict,
    *,
    replicas: int = 2,
    tasks: int = 32,
    calls: int = 20,
    refund_every: int = 0,
) -> list[dict]:
    """Run `replicas` hammer processes released at the same instant; their JSON reports."""
    run = f"race-{uuid.uuid4().hex}"
    argv = [
        sys.executable,
        str(HAMMER),
        redis_url,
        json.dumps(spec),
        "--tasks",
        str(tasks),
        "--calls",
        str(calls),
        "--now",
        str(NOW),
        "--run",
        run,
        "--refund-every",
        str(refund_every),
    ]
    procs = [await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE) for _ in range(replicas)]
    try:

        async def all_ready() -> bool:
            if any(p.returncode is not None for p in procs):
                raise AssertionError("a hammer process exited before the start signal")
            return int(await redis.get(f"{run}:ready") or 0) == replicas

        await poll_until(all_ready, "every replica to be connected and waiting")
        await redis.rpush(f"{run}:go", *["go"] * replicas)
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), WAIT)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    assert all(p.returncode == 0 for p in procs)
    return [json.loads(out) for out, _ in outputs]


async def test_two_replicas_never_overspend_a_shared_budget(redis_url: str, redis: Redis, engine: LimitEngine) -> None:
    customer = {"limit_usd": 10.0, "period": "month"}
    key = {"limit_usd": 100.0, "period": "day"}
    spec = {"cost_usd": 0.03, "budgets": [["customer:acme", customer], ["key:ci", key]]}
    reports = await race(redis_url, redis, spec)  # 2 x 32 x 20 = 1280 attempts for 333 slots
    assert sum(r["allowed"] for r in reports) == 333, reports  # floor(10.00 / 0.03)
    assert sum(r["allowed"] + r["refused"] for r in reports) == 1280
    assert await engine.spent("customer:acme", Budget.model_validate(customer), NOW) == 333 * 30_000 <= 10_000_000
    assert await engine.spent("key:ci", Budget(limit_usd=100.0, period="day"), NOW) == 333 * 30_000


async def test_two_replicas_allow_exactly_n_per_rate_window(redis_url: str, redis: Redis) -> None:
    spec = {
        "cost_usd": 0.0,
        "rates": [
            ["key:ci", {"requests": 1000, "per": "minute"}],
            ["tool:github/search", {"requests": 57, "per": "minute"}],
        ],
    }
    reports = await race(redis_url, redis, spec, tasks=16, calls=10)
    assert sum(r["allowed"] for r in reports) == 57, reports
    assert int(await redis.get(f"bastion:rate:key:ci:minute:{int(NOW) // 60}")) == 57  # refusals counted nothing


async def test_two_replicas_charging_and_refunding_keep_the_books_exact(redis_url, redis, engine) -> None:
    budget = {"limit_usd": 5.0, "period": "day"}
    spec = {"cost_usd": 0.01, "budgets": [["key:ci", budget]]}
    reports = await race(redis_url, redis, spec, calls=20, refund_every=3)
    allowed, refunded = sum(r["allowed"] for r in reports), sum(r["refunded_micro"] for r in reports)
    spent = await engine.spent("key:ci", Budget.model_validate(budget), NOW)
    assert spent == allowed * 10_000 - refunded <= 5_000_000
    assert refunded == sum(r["allowed"] // 3 for r in reports) * 10_000
