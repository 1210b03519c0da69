"""What the executor's default interceptors (pinning, then the default guardrails) add to one
`tools/call`, measured where they run: `InterceptorChain.run` around an upstream call that answers
at once, against the same call with no interceptor (the request path then skips the chain).

    .venv/bin/python bench/interceptor_chain.py [--calls 3000]

For realistic results of about 1 KB and 10 KB (the guardrails benchmark's benign generator) and a
10 KB result holding a token (the redaction path): the added CPU per call (process time over all
calls, minus the bare path's) and the p50 / p99 of each call's own CPU time (the thread's clock, so
the waits a busy shared machine adds to the wall clock do not count). Everything the chain does per
call is here: building the intercepted call, pinning's quarantine lookup, the guardrails on the
arguments and on the result, the decisions. The end-to-end run through every service is
`bench/bench_tools_call.py --variant 'BASTION_PINNING=false BASTION_GUARDRAILS={"defaults":false}'`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from guardrails import _sized, _with_secret

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.messages import CallOutcome, ToolCall
from libs.common.contracts.messages_base import Caller
from libs.common.settings import ExecutorSettings
from services.executor.interceptors import InterceptorChain, configured

CALLER = Caller(key_id="k" * 64, key_name="bench", user_id="ana")
CONFIG = ServerConfig(command="srv")
ARGUMENTS = {"owner": "org", "repo": "demo", "path": "src/app.py", "ref": "main"}


async def _per_call(chain: InterceptorChain, results: list[dict[str, Any]], calls: int) -> dict[str, float]:
    own: list[float] = []
    gc.collect()
    started = time.process_time()
    for n in range(calls):
        result = results[n % len(results)]
        call = ToolCall(
            caller=CALLER, server="github", tool="get_file_contents", name="github__get_file_contents",
            arguments=dict(ARGUMENTS), timeout=30,
        )  # fmt: skip

        async def execute(call: ToolCall = call, result: dict[str, Any] = result) -> CallOutcome:
            return CallOutcome(id=call.id, result=result, decided_by="executor", execution="ran")

        t0 = time.thread_time()
        if chain.on_calls:
            await chain.run(call, CONFIG, execute)
        else:
            await execute()
        own.append(time.thread_time() - t0)
    total = time.process_time() - started
    own.sort()
    return {
        "cpu_us_per_call": total / calls * 1e6,
        "p50_us": statistics.median(own) * 1e6,
        "p99_us": own[int(len(own) * 0.99) - 1] * 1e6,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    bare = InterceptorChain(configured(ExecutorSettings(pinning=False, guardrails={"defaults": False})))
    default = InterceptorChain(configured(ExecutorSettings()))
    assert not bare.on_calls and [i.name for i in default.interceptors] == ["pinning", "guardrails"]
    small, large = _sized(1000), _sized(10000)
    cases = {"1 KB result": small, "10 KB result": large, "10 KB result holding a token": _with_secret(large)}
    figures: dict[str, Any] = {}
    print(f"{'':32} {'added CPU/call':>15} {'p50 own CPU':>12} {'p99 own CPU':>12}")
    for label, results in cases.items():
        await _per_call(default, results, 200)  # warm caches (rule applicability, regexes)
        off = await _per_call(bare, results, args.calls)
        on = await _per_call(default, results, args.calls)
        added = {
            "added_cpu_us": on["cpu_us_per_call"] - off["cpu_us_per_call"],
            "p50_us": on["p50_us"],
            "p99_us": on["p99_us"],
            "bare_p99_us": off["p99_us"],
        }
        figures[label] = added
        print(f"{label:32} {added['added_cpu_us']:>12.0f} µs {on['p50_us']:>9.0f} µs {on['p99_us']:>9.0f} µs")
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
