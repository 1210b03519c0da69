"""Code Mode latency: an `execute_code` run with three tool calls vs three direct `tools/call`s,
and `parallel(...)` vs sequential calls inside a run.

    .venv/bin/python bench/bench_code_mode.py                 # 200 rounds
    .venv/bin/python bench/bench_code_mode.py --rounds 50 --json out.json

Starts the echo upstream over streamable HTTP and `bastion up` in front of it (every service its
own process, codemode included), like `./run bench`. The same key is used in both modes: the
Code Mode client sends `X-Bastion-Code-Mode: on`. Every variant runs once per round, interleaved,
so drift hits all alike. A script, not a test: numbers are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_stack import KEY, start_gateway, start_upstream
from mcp_clients import McpClient, Result, print_results, summarize

SLEEP = 0.05
"""Seconds each `echo.sleep` call takes upstream in the fan-out variants."""

SCRIPTS = {
    "run: empty script": "result = 1",
    "run: 3 calls, sequential": (
        'a = echo.echo(text="1")\nb = echo.echo(text="2")\nc = echo.echo(text="3")\nresult = [a, b, c]'
    ),
    "run: 3 calls, parallel": (
        'result = parallel([("echo.echo", {"text": "1"}), ("echo.echo", {"text": "2"}), ("echo.echo", {"text": "3"})])'
    ),
    f"run: 3 x sleep {SLEEP}s, sequential": "\n".join(f"s{i} = echo.sleep(seconds={SLEEP})" for i in range(3)),
    f"run: 3 x sleep {SLEEP}s, parallel": f'parallel([("echo.sleep", {{"seconds": {SLEEP}}})] * 3)',
}


async def _timed(coro) -> tuple[float, dict]:
    start = time.perf_counter()
    answer = await coro
    return (time.perf_counter() - start) * 1000, answer


async def _direct(client: McpClient, tool: str, arguments: dict, times: int) -> float:
    start = time.perf_counter()
    for _ in range(times):
        answer = await client.request("tools/call", {"name": tool, "arguments": arguments})
        if "result" not in answer or answer["result"].get("isError"):
            raise SystemExit(f"direct call failed: {answer}")
    return (time.perf_counter() - start) * 1000


async def measure(gateway_url: str, rounds: int) -> list[Result]:
    classic = await McpClient(gateway_url, KEY).open()
    code = McpClient(gateway_url, KEY)
    code.headers["x-bastion-code-mode"] = "on"
    await code.open()
    samples: dict[str, list[float]] = {name: [] for name in ["direct: 3 x tools/call", *SCRIPTS]}
    samples[f"direct: 3 x sleep {SLEEP}s"] = []
    for round_ in range(rounds + 5):  # the first rounds warm every path
        direct = await _direct(classic, "echo__echo", {"text": "x"}, 3)
        slept = await _direct(classic, "echo__sleep", {"seconds": SLEEP}, 3) if round_ % 5 == 0 else None
        runs = {}
        for name, script in SCRIPTS.items():
            if "sleep" in name and round_ % 5:
                continue  # the sleeping variants are slow and steady: every fifth round is plenty
            elapsed, answer = await _timed(
                code.request("tools/call", {"name": "execute_code", "arguments": {"code": script}})
            )
            if "result" not in answer or answer["result"].get("isError"):
                raise SystemExit(f"{name} failed: {answer}")
            runs[name] = elapsed
        if round_ < 5:
            continue
        samples["direct: 3 x tools/call"].append(direct)
        if slept is not None:
            samples[f"direct: 3 x sleep {SLEEP}s"].append(slept)
        for name, elapsed in runs.items():
            samples[name].append(elapsed)
    await classic.close()
    await code.close()
    return [summarize(name, values) for name, values in samples.items() if values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    upstream, upstream_url = start_upstream()
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_gateway({"echo": {"url": upstream_url}}, Path(tmp))
        gateway, gateway_url = stack.proc, stack.url
        try:
            results = asyncio.run(measure(gateway_url, args.rounds))
        finally:
            gateway.send_signal(signal.SIGINT)
            gateway.wait(30)
            upstream.terminate()
            upstream.wait(10)
    print_results(results, "path", 36, digits=2)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
