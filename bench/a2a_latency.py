"""A2A messages straight to an agent and through Bastion's `/a2a/<server>` front, in one run (docs/a2a.md).

    .venv/bin/python bench/a2a_latency.py                  # 300 messages per phase, concurrency 8
    .venv/bin/python bench/a2a_latency.py --messages 1000 --concurrency 16 --json out.json

The agent is the tests' own, built on the official `a2a-sdk` (tests/support/a2a_agent.py, its own
process, answering a message at once); the gateway is `bastion up` (every service its own process)
with the agent as a server of `type: a2a`. Each phase sends `--messages` JSON-RPC `SendMessage`
requests of the `shout` skill at `--concurrency`:

  direct    to the agent's own endpoint
  gateway   to `/a2a/agent` with a Bastion key: the skill's tools/call through policy and the
            executor, which sends the same `SendMessage` to the agent; the gateway's CPU per
            message from /proc (every Bastion process), as bench_tools_call.py reads it

The added latency is the gateway's median minus direct's. This is a script, not a test: on a
shared machine the figures are noisy; compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway_stack import KEY, Gateway, costs_between, launch, snapshot


def _message(skill: str | None) -> bytes:
    message: dict[str, Any] = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"text": "hello"}]}
    if skill is not None:
        message["metadata"] = {"skillId": skill}
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}
    return json.dumps(body).encode()


def _sender(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> Callable[[], Awaitable[float]]:
    async def one() -> float:
        started = time.perf_counter()
        response = await http.post(url, content=_message("shout"), headers=headers)
        answer = response.json()
        assert response.status_code == 200 and "result" in answer, response.text[:200]
        return (time.perf_counter() - started) * 1000

    return one


async def _load(messages: int, concurrency: int, one: Callable[[], Awaitable[float]]) -> list[float]:
    latencies: list[float] = []
    queue = iter(range(messages))

    async def worker() -> None:
        for _ in queue:
            latencies.append(await one())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def _summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "messages": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
    }


async def _phases(gateway: Gateway, agent: str, args: argparse.Namespace) -> dict[str, Any]:
    through = gateway.url.removesuffix("/mcp") + "/a2a/agent"
    bastion = {"authorization": f"Bearer {KEY}", "A2A-Version": "1.0"}
    direct = {"A2A-Version": "1.0"}
    limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        for _ in range(300):  # until the gateway serves the agent's card
            if (await http.get(f"{through}/.well-known/agent-card.json", headers=bastion)).status_code == 200:
                break
            await asyncio.sleep(0.1)
        await _load(50, args.concurrency, _sender(http, through, bastion))  # warm-up
        results = {"direct": _summary(await _load(args.messages, args.concurrency, _sender(http, agent, direct)))}
        before = snapshot(gateway)
        measured = await _load(args.messages, args.concurrency, _sender(http, through, bastion))
        costs = costs_between(before, snapshot(gateway), args.messages)
        results["gateway"] = {
            **_summary(measured),
            "cpu_us_per_message": {k: round(v, 1) for k, v in costs.cpu_us.items()},
            "cpu_us_total": round(sum(costs.cpu_us.values()), 1),
        }
    results["added_p50_ms"] = round(results["gateway"]["p50_ms"] - results["direct"]["p50_ms"], 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    agent = subprocess.Popen(
        [sys.executable, "-m", "tests.support.a2a_agent"], stdout=subprocess.PIPE, text=True, cwd=root
    )
    try:
        assert agent.stdout is not None
        url = agent.stdout.readline().split()[1]
        config = {
            "mcpServers": {"agent": {"type": "a2a", "url": url}},
            "keys": [{"name": "bench", "key": KEY, "tools": ["agent/*"]}],
        }
        with tempfile.TemporaryDirectory() as tmp:
            gateway = launch(config, Path(tmp), {"BASTION_NATS_MONITOR": "1"}, 0)
            try:
                results = asyncio.run(_phases(gateway, url + "/", args))
            finally:
                gateway.stop()
    finally:
        agent.terminate()
        agent.wait(10)
    results["concurrency"] = args.concurrency
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
