"""What Bastion adds to a chat completion: latency and CPU, against the same fake provider directly, in one run.

    .venv/bin/python bench/llm_overhead.py                        # 1,000 completions per path and phase, c=16
    .venv/bin/python bench/llm_overhead.py --calls 2000 --rounds 4 --json out.json
    .venv/bin/python bench/llm_overhead.py --baseline main                # main's services first, same run
    .venv/bin/python bench/llm_overhead.py --profile ttft --calls 1000   # cProfile of each process instead

The provider is `llm_fake_provider.py` (OpenAI's wire, keep-alive connections, answering at once) in
a process of its own; the gateway is `bastion up` (every service its own process) on an embedded
NATS and Valkey; the load generator is this process, a minimal keep-alive HTTP client per worker
(llhttp, `services.executor.upstreams.mcp.http1`), so its own cost blurs little on a 2-core machine.
Phases, each run `--rounds` times alternating direct and through Bastion so drift hits both alike:

  completion   non-streaming: latency (p50, p99), from which the added latency
  ttft         streaming: time to the first chunk with text, and to the stream's end
  routed       non-streaming through a routed model (one weighted route over two deployments of
               the fake): the routing decision's own cost

During the gateway's share of each phase it reads the CPU time of every Bastion process from /proc
(µs per completion, by role: ingress, policy, executor, audit, nats-server, valkey) and the fake's
own CPU, which is the yardstick: on a shared machine CPU figures drift by more than the changes
measured, and the gateway's cost as a multiple of the provider's mostly cancels that out. This is a
script, not a test; compare only numbers from one run.

`--profile PHASE` measures nothing: it runs the phase's completions through Bastion with every
service under a deterministic profile (`hop_profile.py`'s, between two SIGUSR1s) and prints, per
process, the function calls, encodes and decodes per completion and where the own time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway_stack import (
    KEY,
    Gateway,
    costs_between,
    export_baseline,
    launch,
    process_ticks,
    snapshot,
    start_server,
    ticks_to_us,
)
from hop_profile import SITE, _report, _services

from services.executor.upstreams.mcp.http1 import HttpPool

__all__ = ["FAKE", "Load", "Provider", "start_provider", "summary", "until_served"]

FAKE = Path(__file__).resolve().parent / "llm_fake_provider.py"
BODY = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32}
HEADERS = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
_TEXT = b'"content":"'
_EMPTY = b'"content":""'


@dataclass
class Provider:
    """A fake provider process and its `base_url`."""

    proc: Any
    base_url: str

    def ticks(self) -> int:
        return process_ticks(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def start_provider() -> Provider:
    proc, url = start_server(str(FAKE))
    return Provider(proc, url)


@dataclass
class Load:
    """`calls` requests over `concurrency` keep-alive connections to one URL."""

    url: str
    calls: int
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)
    """Streaming: time to the stream's end."""
    failed: int = 0

    async def run(self, one: Callable[[HttpPool, int], Awaitable[tuple[float, float]]]) -> Load:
        queue = iter(range(self.calls))

        async def worker() -> None:
            pool = HttpPool(self.url, limit=1)
            try:
                for i in queue:
                    try:
                        first, total = await one(pool, i)
                    except (OSError, AssertionError, ValueError, TimeoutError):
                        self.failed += 1
                        continue
                    self.latencies.append(first)
                    self.totals.append(total)
            finally:
                await pool.close()

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return self


def completion(model: str) -> Callable[[HttpPool, int], Awaitable[tuple[float, float]]]:
    payload = json.dumps({**BODY, "model": model}).encode()

    async def one(pool: HttpPool, _i: int) -> tuple[float, float]:
        started = time.perf_counter()
        async with asyncio.timeout(60), pool.post(payload, HEADERS) as response:
            body = await response.read()
        assert response.status == 200, body[:200]
        ms = (time.perf_counter() - started) * 1000
        return ms, ms

    return one


def first_token(model: str) -> Callable[[HttpPool, int], Awaitable[tuple[float, float]]]:
    payload = json.dumps({**BODY, "model": model, "stream": True}).encode()

    async def one(pool: HttpPool, _i: int) -> tuple[float, float]:
        started = time.perf_counter()
        first = None
        seen = b""
        async with asyncio.timeout(60), pool.post(payload, HEADERS) as response:
            assert response.status == 200
            async for piece in response.iter_any():
                seen += piece
                if first is None and seen.count(_TEXT) > seen.count(_EMPTY):
                    first = (time.perf_counter() - started) * 1000
        assert seen.rstrip().endswith(b"data: [DONE]"), seen[-200:]
        assert first is not None
        return first, (time.perf_counter() - started) * 1000

    return one


def summary(values: list[float], failed: int = 0) -> dict[str, float]:
    ordered = sorted(values) or [0.0]
    return {
        "ok": len(values),
        "failed": failed,
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
    }


def config(provider: Provider) -> dict[str, Any]:
    pair = {
        "strategy": "weighted",
        "deployments": [{"provider": "y", "model": "pair-a"}, {"provider": "y", "model": "pair-b"}],
    }
    return {
        "keys": [{"name": "bench", "key": KEY, "tools": []}],
        "llm": {
            "providers": {"y": {"base_url": provider.base_url, "models": ["y-direct"], "retries": 0}},
            "models": {"gpt-routed": pair},
        },
    }


PHASES: dict[str, tuple[Callable[[str], Callable[[HttpPool, int], Awaitable[tuple[float, float]]]], str]] = {
    "completion": (completion, "y-direct"),
    "ttft": (first_token, "y-direct"),
    "routed": (completion, "gpt-routed"),
}


async def phase(name: str, gateway: Gateway, provider: Provider, args: argparse.Namespace) -> dict[str, Any]:
    """One phase, direct and through Bastion in alternating rounds; latencies and CPU per completion."""
    factory, model = PHASES[name]
    through = gateway.url.removesuffix("/mcp") + "/v1/chat/completions"
    direct = f"{provider.base_url}/chat/completions"
    each = args.calls // args.rounds
    loads: dict[str, list[Load]] = {"direct": [], "bastion": []}
    cpu: dict[str, int] = {}
    fake = {"direct": 0, "bastion": 0}
    client = {"direct": 0.0, "bastion": 0.0}
    for _ in range(args.rounds):
        for path, url in (("direct", direct), ("bastion", through)):
            before, fake_before, client_before = snapshot(gateway), provider.ticks(), time.process_time()
            loads[path].append(await Load(url, each, args.concurrency).run(factory(model)))
            fake[path] += provider.ticks() - fake_before
            client[path] += time.process_time() - client_before
            if path == "bastion":
                for role, us in costs_between(before, snapshot(gateway), 1).cpu_us.items():
                    cpu[role] = cpu.get(role, 0) + us
    calls = each * args.rounds
    result: dict[str, Any] = {}
    for path, runs in loads.items():
        first = [v for run in runs for v in run.latencies]
        total = [v for run in runs for v in run.totals]
        result[path] = {
            **summary(first, sum(run.failed for run in runs)),
            **({"end_p50_ms": summary(total)["p50_ms"]} if name == "ttft" else {}),
            "provider_cpu_us": round(ticks_to_us(fake[path], calls), 1),
            "client_cpu_us": round(client[path] * 1e6 / calls, 1),
        }
    result["bastion"]["cpu_us"] = {
        role: round(us / calls, 1) for role, us in sorted(cpu.items(), key=lambda kv: -kv[1])
    }
    result["bastion"]["cpu_us_total"] = round(sum(cpu.values()) / calls, 1)
    result["added_p50_ms"] = round(result["bastion"]["p50_ms"] - result["direct"]["p50_ms"], 3)
    result["added_p99_ms"] = round(result["bastion"]["p99_ms"] - result["direct"]["p99_ms"], 3)
    return result


def report(results: dict[str, Any]) -> None:
    print(f"\n=== build: {results['build']}")
    print(f"c={results['concurrency']}, {results['calls']} completions per path and phase")
    print(f"{'phase':11} {'path':8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6} {'provider µs':>11}  Bastion CPU µs")
    for name in PHASES:
        for path in ("direct", "bastion"):
            row = results[name][path]
            parts = ", ".join(f"{role} {us:,.0f}" for role, us in row.get("cpu_us", {}).items())
            cpu = f"{row['cpu_us_total']:,.0f} ({parts})" if path == "bastion" else ""
            line = f"{name:11} {path:8} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['failed']:6}"
            print(f"{line} {row['provider_cpu_us']:11,.0f}  {cpu}")
        print(f"{'':11} added p50 {results[name]['added_p50_ms']:+.2f} ms, p99 {results[name]['added_p99_ms']:+.2f} ms")
    print("load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


async def until_served(gateway: Gateway, model: str) -> None:
    """Until `/v1/models` lists `model` (the providers reached ingress through KV)."""
    base = gateway.url.removesuffix("/mcp")
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(600):
            response = await http.get(f"{base}/v1/models", headers={"authorization": f"Bearer {KEY}"})
            if response.status_code == 200 and model in response.text:
                return
            await asyncio.sleep(0.1)
    raise SystemExit(f"the gateway never served {model}")


async def measure(gateway: Gateway, provider: Provider, args: argparse.Namespace) -> dict[str, Any]:
    await until_served(gateway, "gpt-routed")
    through = gateway.url.removesuffix("/mcp") + "/v1/chat/completions"
    for factory, model in PHASES.values():  # warm every path (imports, pools, caches) before measuring
        await Load(through, args.warmup, args.concurrency).run(factory(model))
    results: dict[str, Any] = {"calls": args.calls, "concurrency": args.concurrency}
    for name in PHASES:
        results[name] = await phase(name, gateway, provider, args)
    return results


async def profiled(gateway: Gateway, provider: Provider, args: argparse.Namespace, out: Path) -> None:
    """`args.profile`'s completions through Bastion, every service profiled (`hop_profile_site`)."""
    await until_served(gateway, "gpt-routed")
    factory, model = PHASES[args.profile]
    through = gateway.url.removesuffix("/mcp") + "/v1/chat/completions"
    await Load(through, args.warmup, args.concurrency).run(factory(model))
    services = _services(gateway.proc.pid)
    _signal(services)
    await asyncio.sleep(0.2)
    await Load(through, args.calls, args.concurrency).run(factory(model))
    await asyncio.sleep(2.5)  # the audit batches of these completions reach the audit service
    _signal(services)
    await asyncio.sleep(1.0)


def _signal(pids: Iterable[int]) -> None:
    """SIGUSR1 to each service: a process that has ended since it was listed (a helper child) is skipped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)


def profile(provider: Provider, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profiles"
        out.mkdir()
        env = {"PYTHONPATH": str(SITE), "BENCH_PROFILE_DIR": str(out), "BASTION_CONFINE": "false"}
        gateway = launch(config(provider), Path(tmp), {"BASTION_NATS_MONITOR": "1", **env}, 0)
        try:
            asyncio.run(profiled(gateway, provider, args, out))
        finally:
            gateway.stop()
        print(f"profile of {args.profile}: {args.calls} completions at c={args.concurrency}")
        for path in sorted(out.glob("*.prof")):
            _report(path, args.calls, args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="completions per path and phase")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of direct and Bastion per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--baseline", action="append", default=[], help="a git ref: measure its services first, in the same run"
    )
    parser.add_argument("--profile", choices=sorted(PHASES), help="profile this phase's completions instead")
    parser.add_argument("--top", type=int, default=25, help="with --profile: functions shown per process")
    args = parser.parse_args()
    print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    provider = start_provider()
    try:
        if args.profile:
            profile(provider, args)
            return
        runs = []
        with tempfile.TemporaryDirectory() as tmp:
            builds = [(ref, export_baseline(ref, Path(tmp) / f"b{n}")) for n, ref in enumerate(args.baseline)]
            for build, env in [*builds, ("this checkout", {})]:
                with tempfile.TemporaryDirectory() as work:
                    gateway = launch(config(provider), Path(work), {"BASTION_NATS_MONITOR": "1", **env}, 0)
                    try:
                        results = asyncio.run(measure(gateway, provider, args))
                    finally:
                        gateway.stop()
                results["build"] = build
                report(results)
                runs.append(results)
    finally:
        provider.stop()
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
