"""Isolation under failure: a healthy server's tools/call latency through Bastion while another
upstream behind the same gateway hangs and fails, against the same gateway with that upstream idle.

    .venv/bin/python bench/bench_isolation.py                 # 1000 calls per phase, 32 hung callers
    .venv/bin/python bench/bench_isolation.py --calls 500 --hung 64

One `bastion up` gateway (every service its own process) with two upstreams over streamable HTTP,
each its own echo_server process: `echo` (healthy) and `hang` (timeout 5 s, and a circuit breaker
that never opens, so hung calls stay hung instead of being refused fast). Phases, in order
(the healthy client measures `echo__echo` in each, sequentially):
  quiet      nothing else
  hung       --hung clients keep `hang__sleep(3600)` in flight (each ends at the 5 s upstream
             timeout and is sent again)
  failing    one client calls `hang__fail` (an isError result) back to back
  control    one client calls `echo__add` back to back
  hung + failing, then recovered (nothing else again: shows nothing lingers)
A `control` phase loads the healthy server at the rate the failing loop loads the hanging one,
to separate "a failing neighbour hurts" from "any busy neighbour shares the CPU".
The healthy path must not care: a hung upstream holds only its own calls, not a shared worker,
lock or connection. This is a script, not a test: numbers are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_stack import KEY, start_gateway, start_upstream
from mcp_clients import McpClient, Result, print_results, sequential, summarize

HANG_TIMEOUT = 5.0
ERROR_BACKOFF = 0.2


async def _loop(url: str, stop: asyncio.Event, name: str, arguments: dict, answers: Counter[str]) -> None:
    """One client calling `name` back to back until `stop` (a hung call ends at the upstream
    timeout). After a JSON-RPC error it waits ERROR_BACKOFF, as an agent would, so a timed-out
    hung caller does not turn into a tight loop that only measures CPU contention."""
    client = await McpClient(url, KEY, timeout=None).open()
    try:
        while not stop.is_set():
            answer = await client.request("tools/call", {"name": name, "arguments": arguments})
            if "error" in answer:
                answers[f"{name}: error {answer['error'].get('code')}"] += 1
                await asyncio.sleep(ERROR_BACKOFF)
            else:
                answers[f"{name}: {'isError' if answer['result'].get('isError') else 'ok'}"] += 1
    finally:
        await client.close()


async def _phase(url: str, healthy: McpClient, label: str, calls: int, noise: list[tuple[str, dict]]) -> Result:
    """Healthy sequential calls while `noise` clients run, then stop them and let hung calls expire."""
    stop, answers = asyncio.Event(), Counter[str]()
    tasks = [asyncio.create_task(_loop(url, stop, name, arguments, answers)) for name, arguments in noise]
    if noise:
        await asyncio.sleep(1.0)  # let the noise reach a steady state (hung calls pile up)
    call = {"name": "echo__echo", "arguments": {"text": "hello"}}
    result = summarize(label, await sequential(healthy, "tools/call", call, calls, "result"))
    stop.set()
    if any(name == "hang__sleep" for name, _ in noise):
        await asyncio.sleep(HANG_TIMEOUT + 1)  # every hung call has hit its timeout
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if answers:
        print(f"{label}: background answers {dict(answers)}")
    return result


async def measure(args: argparse.Namespace, url: str) -> list[Result]:
    healthy = await McpClient(url, KEY).open()
    warm = {"name": "echo__echo", "arguments": {"text": "hello"}}
    await sequential(healthy, "tools/call", warm, args.warmup, "result")
    hung = [("hang__sleep", {"seconds": 3600})] * args.hung
    phases = [
        ("quiet: nothing else", []),
        (f"hung: {args.hung} calls stuck on `hang`", hung),
        ("failing: 1 client looping hang__fail", [("hang__fail", {"message": "boom"})]),
        ("control: 1 client looping echo__add", [("echo__add", {"a": 1, "b": 2})]),
        ("hung + failing", [*hung, ("hang__fail", {"message": "boom"})]),
        ("recovered: nothing else", []),
    ]
    results = [await _phase(url, healthy, label, args.calls, noise) for label, noise in phases]
    await healthy.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="sequential healthy calls per phase")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--hung", type=int, default=32, help="clients keeping a hung call in flight")
    parser.add_argument("--era", choices=["legacy", "modern"], default="modern")
    args = parser.parse_args()
    McpClient.era = args.era
    healthy, healthy_url = start_upstream()
    hanging, hanging_url = start_upstream()
    with tempfile.TemporaryDirectory() as tmp:
        # a breaker that never opens keeps every hung call hung: the worst case for isolation
        extra = {"hang": {"url": hanging_url, "timeout": HANG_TIMEOUT, "circuit_breaker": {"failure_threshold": 1000}}}
        gateway = start_gateway({"echo": {"url": healthy_url}, **extra}, Path(tmp))
        url = gateway.url
        try:
            results = asyncio.run(measure(args, url))
        finally:
            gateway.stop()
            for proc in (healthy, hanging):
                proc.terminate()
                proc.wait(10)
    print(f"\nclient protocol: {args.era}; {args.calls} sequential calls per phase")
    print_results(results, "phase", 48)


if __name__ == "__main__":
    main()
