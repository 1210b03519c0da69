"""One of two deployments killed under load: every completion must still succeed (docs/llm-routing.md).

    .venv/bin/python bench/llm_failover.py                       # 600 completions, concurrency 16
    .venv/bin/python bench/llm_failover.py --calls 2000 --concurrency 16 --json out.json

The gateway is `bastion up` (every service its own process) on an embedded NATS and Valkey; the
providers are two `llm_fake_provider.py` processes, x and y, answering at once. Model `gpt-pair`
(weights 1:1 over x and y) takes `--calls` completions at `--concurrency`; after a third of them
were sent, x is SIGKILLed (its listening socket gone, its open connections broken, as a crashed
provider's). What Bastion adds to a completion, direct against the same fake, is `llm_overhead.py`.

It reports failed completions (the target is 0), the latency of the completions that were in flight
at the kill or started in the second after it, and the completions overall. This is a script, not
a test: on a shared machine the figures are noisy; compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_stack import KEY, Gateway, launch
from llm_overhead import Load, Provider, completion, start_provider, summary, until_served

from services.executor.upstreams.mcp.http1 import HttpPool


def _config(x: Provider, y: Provider) -> dict[str, Any]:
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


async def _failover(gateway: Gateway, x: Provider, calls: int, concurrency: int) -> dict[str, Any]:
    """`gpt-pair` under load, x killed after a third of the completions were sent."""
    kill_at = calls // 3
    killed: list[float] = []
    around: list[float] = []
    base = completion("gpt-pair")

    async def one(pool: HttpPool, i: int) -> tuple[float, float]:
        if i == kill_at:
            x.stop()
            killed.append(time.perf_counter())
        started = time.perf_counter()
        latency, _ = await base(pool, i)
        if killed and started <= killed[0] + 1.0 and started + latency / 1000 >= killed[0]:
            around.append(latency)
        return latency, latency

    url = gateway.url.removesuffix("/mcp") + "/v1/chat/completions"
    await Load(url, 50, concurrency).run(base)  # warm-up, both deployments up
    load = await Load(url, calls, concurrency).run(one)
    return {**summary(load.latencies, load.failed), "around_kill": summary(around)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    x, y = start_provider(), start_provider()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            gateway = await asyncio.to_thread(launch, _config(x, y), Path(tmp), {"BASTION_NATS_MONITOR": "1"}, 0)
            try:
                await until_served(gateway, "gpt-pair")
                results = await _failover(gateway, x, args.calls, args.concurrency)
            finally:
                gateway.stop()
    finally:
        x.stop()
        y.stop()
    results["calls"], results["concurrency"] = args.calls, args.concurrency
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if results["failed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
