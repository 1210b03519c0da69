"""Whole-stack cost per tool call with Cedar policies: none, one that does not read the arguments
(the fast path), and one that does (decided per call). docs/benchmarks.md, docs/policy.md.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_policy_stack.py [--calls 300] [--rounds 3]

Every service runs in this process (tests.support.gateway: real NATS, Valkey, ClickHouse engine,
the refund upstream over stdio in its own process), the official MCP client calls
`billing__refund {"amount": 50}` back to back on one session. Per mode: median latency, and this
process's CPU per call (the gateway's services plus the client, whose share is the same in every
mode; the upstream's process is not counted). Modes alternate within each round, each round starting
with the next mode (the audit store grows as the run goes on).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.gateway import Gateway, gateway_on_own_servers

ROOT = Path(__file__).resolve().parents[1]
KEY = "bk_bench_policy_key_0000000000"
MODES = {
    "no policies": None,
    "static policy (fast path)": '@id("no-delete")\nforbid (principal, action, resource in Server::"billing")\n'
    'when { resource.tool like "delete_*" };',
    "argument policy (per call)": '@id("refund-above-100")\n@approval("finance")\nforbid (principal, action, '
    'resource == Tool::"billing/refund")\nwhen { context.arguments.amount > 100 };',
}


async def _mode(gw: Gateway, admin: httpx.AsyncClient, text: str | None) -> None:
    if text is None:
        (await admin.post("/policies/0/activate")).raise_for_status()
    else:
        (await admin.post("/policies", json={"text": text})).raise_for_status()
    await asyncio.sleep(1.0)  # every replica applies it and ingress drops its reused decisions


async def _calls(gw: Gateway, calls: int) -> tuple[float, float]:
    async with gw.client(KEY) as client:
        for _ in range(20):  # warm: sessions, grants, caches
            await client.call_tool("billing__refund", {"order": "w", "amount": 50})
        latencies = []
        cpu = time.process_time()
        for i in range(calls):
            started = time.perf_counter()
            await client.call_tool("billing__refund", {"order": f"o{i}", "amount": 50})
            latencies.append(time.perf_counter() - started)
        used = time.process_time() - cpu
    return statistics.median(latencies) * 1000, used / calls * 1e6


async def main(calls: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        billing = {
            "command": sys.executable,
            "args": [str(ROOT / "tests" / "support" / "refund_server.py")],
            "env": {"LEDGER_FILE": str(work / "ledger.txt")},
            "sandbox": {"write": [str(work)]},
        }
        config = {"mcpServers": {"billing": billing}, "keys": [{"name": "bench", "key": KEY, "tools": ["billing/*"]}]}
        async with gateway_on_own_servers(work, config, admin=True) as gw:
            async with httpx.AsyncClient(base_url=gw.admin_api, headers=gw.admin_headers, timeout=10) as admin:
                results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
                order = list(MODES.items())
                for round_ in range(rounds):  # each round starts with another mode: no mode always goes last
                    for mode, text in order[round_ % len(order) :] + order[: round_ % len(order)]:
                        await _mode(gw, admin, text)
                        results[mode].append(await _calls(gw, calls))
    print(f"{'mode':<28} {'p50 ms':>8} {'CPU µs/call':>12}   ({rounds} rounds x {calls} calls, medians)")
    for mode, rows in results.items():
        p50 = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        print(f"{mode:<28} {p50:>8.2f} {cpu:>12.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
