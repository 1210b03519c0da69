"""Chat completions through Bastion against the fake provider directly, and one of two deployments
killed under load (docs/llm-routing.md, docs/benchmarks.md).

    .venv/bin/python bench/llm_failover.py                       # 600 completions per phase, concurrency 16
    .venv/bin/python bench/llm_failover.py --calls 2000 --concurrency 16 --json out.json

The gateway is `bastion up` (every service its own process) on an embedded NATS and Valkey; the
providers are the OpenAI-compatible fake of the tests (tests/support/llm_provider.py) in this
process, answering at once. Phases, each `--calls` completions at `--concurrency`:

  direct / gateway        non-streaming: latency, and the gateway's CPU per completion (every
                          Bastion process, from /proc, as bench_tools_call.py reads it)
  direct / gateway TTFT   streaming: time to the first chunk with content
  failover                model `gpt-pair` (weights 1:1 over providers x and y): x is killed
                          (listening socket closed, open connections broken) after a third of
                          the completions; every completion must still succeed

The added latency is the gateway's median minus direct's; "failover" reports failed completions
(the target is 0), the latency of the completions that were in flight at the kill or started in
the second after it, and how many were answered after a failed attempt on x. This is a script,
not a test: on a shared machine the figures are noisy; compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway_stack import KEY, Gateway, costs_between, launch, snapshot

from tests.support.llm_provider import Reply, ScriptedProvider

BODY = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32}


def _config(x: ScriptedProvider, y: ScriptedProvider) -> dict[str, Any]:
    providers = {
        name: {"base_url": fake.base_url, "models": [f"{name}-direct"], "retries": 0}
        for name, fake in (("x", x), ("y", y))
    }
    pair = {
        "strategy": "weighted",
        "deployments": [{"provider": "x", "model": "pair-x"}, {"provider": "y", "model": "pair-y"}],
    }
    return {
        "keys": [{"name": "bench", "key": KEY, "tools": []}],
        "llm": {"providers": providers, "models": {"gpt-pair": pair}},
    }


async def _load(calls: int, concurrency: int, one: Callable[[int], Awaitable[float]]) -> tuple[list[float], int]:
    """Latencies (ms) of the completions that succeeded, and how many failed."""
    latencies: list[float] = []
    failed = 0
    queue = iter(range(calls))

    async def worker() -> None:
        nonlocal failed
        for i in queue:
            try:
                latencies.append(await one(i))
            except (httpx.HTTPError, AssertionError):
                failed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, failed


def _completion(http: httpx.AsyncClient, url: str, model: str) -> Callable[[int], Awaitable[float]]:
    async def one(_i: int) -> float:
        started = time.perf_counter()
        response = await http.post(url, json={**BODY, "model": model}, headers={"authorization": f"Bearer {KEY}"})
        assert response.status_code == 200, response.text[:200]
        return (time.perf_counter() - started) * 1000

    return one


def _first_token(http: httpx.AsyncClient, url: str, model: str) -> Callable[[int], Awaitable[float]]:
    async def one(_i: int) -> float:
        started = time.perf_counter()
        body = {**BODY, "model": model, "stream": True}
        async with http.stream("POST", url, json=body, headers={"authorization": f"Bearer {KEY}"}) as response:
            assert response.status_code == 200
            first = None
            async for line in response.aiter_lines():
                if first is None and '"content":"' in line and '"content":""' not in line:
                    first = (time.perf_counter() - started) * 1000
            assert first is not None
            return first

    return one


def _summary(latencies: list[float], failed: int) -> dict[str, float]:
    ordered = sorted(latencies) or [0.0]
    return {
        "ok": len(latencies),
        "failed": failed,
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "max_ms": round(ordered[-1], 3),
    }


async def _failover(
    http: httpx.AsyncClient, url: str, x: ScriptedProvider, calls: int, concurrency: int
) -> dict[str, Any]:
    """`gpt-pair` under load, x killed after a third of the completions were sent."""
    kill_at = calls // 3
    killed: list[float] = []
    around: list[float] = []
    base = _completion(http, url, "gpt-pair")

    async def one(i: int) -> float:
        if i == kill_at:
            await x.kill()
            killed.append(time.perf_counter())
        started = time.perf_counter()
        latency = await base(i)
        if killed and started <= killed[0] + 1.0 and started + latency / 1000 >= killed[0]:
            around.append(latency)
        return latency

    latencies, failed = await _load(calls, concurrency, one)
    return {
        **_summary(latencies, failed),
        "around_kill": _summary(around, 0),
        "x_requests_before_kill": len(x.received),
    }


async def _phases(
    gateway: Gateway, x: ScriptedProvider, y: ScriptedProvider, args: argparse.Namespace
) -> dict[str, Any]:
    base = gateway.url.removesuffix("/mcp")
    limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        direct = f"{y.base_url}/chat/completions"
        through = f"{base}/v1/chat/completions"
        await _load(50, args.concurrency, _completion(http, through, "y-direct"))  # warm-up
        for name, factory in (("completion", _completion), ("ttft", _first_token)):
            results[f"direct_{name}"] = _summary(*await _load(args.calls, args.concurrency, factory(http, direct, "y")))
            before = snapshot(gateway)
            measured = await _load(args.calls, args.concurrency, factory(http, through, "y-direct"))
            costs = costs_between(before, snapshot(gateway), args.calls)
            results[f"gateway_{name}"] = {
                **_summary(*measured),
                "cpu_us_per_completion": {k: round(v, 1) for k, v in costs.cpu_us.items()},
                "cpu_us_total": round(sum(costs.cpu_us.values()), 1),
            }
        results["failover"] = await _failover(http, through, x, args.calls, args.concurrency)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    x, y = ScriptedProvider(), ScriptedProvider()
    for fake in (x, y):
        fake.always = Reply("Hello! How can I help?", usage=(12, 7))
        await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        gateway = await asyncio.to_thread(launch, _config(x, y), Path(tmp), {"BASTION_NATS_MONITOR": "1"}, 0)
        try:
            await _until_served(gateway)
            results = await _phases(gateway, x, y, args)
        finally:
            gateway.stop()
            await y.stop()
    results["calls"], results["concurrency"] = args.calls, args.concurrency
    results["added_p50_ms"] = round(results["gateway_completion"]["p50_ms"] - results["direct_completion"]["p50_ms"], 3)
    results["added_ttft_p50_ms"] = round(results["gateway_ttft"]["p50_ms"] - results["direct_ttft"]["p50_ms"], 3)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if results["failover"]["failed"]:
        raise SystemExit(1)


async def _until_served(gateway: Gateway) -> None:
    """Until `/v1/models` lists the route (the providers reached ingress through KV)."""
    base = gateway.url.removesuffix("/mcp")
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(600):
            response = await http.get(f"{base}/v1/models", headers={"authorization": f"Bearer {KEY}"})
            if response.status_code == 200 and "gpt-pair" in response.text:
                return
            await asyncio.sleep(0.1)
    raise SystemExit("the gateway never served gpt-pair")


if __name__ == "__main__":
    asyncio.run(main())
