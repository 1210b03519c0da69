"""Guardrails at scale: large results, a 2 KiB result, and the credential scan of a large listing.

    .venv/bin/python bench/guardrails_scale.py [--sizes 1,4,8,9,16,32] [--calls 3000] [--rounds 5]

1. Large results: the default guardrails (`GuardrailsSection()`) on one text result of N MiB of the
   benign generator's text (logs, JSON rows, markdown, code; no credential), and the same with an AWS
   key pair at the end. Up to `max_scan_bytes` (8 MiB) a result is read whole; above it, in pieces
   (`guardrails.chunks`). Reported: CPU ms per MiB (the process clock, best of `--rounds`).
2. A 2 KiB result: `inspect` of the result, `--calls` times; mean CPU per call and p50 / p99 of each
   call's own thread CPU.
3. A listing of 1,500 real tools (the first 1,500 of tests/data/tool-schemas, 68 servers): the
   `definition_secrets` interceptor's `at_listing` on the first listing (every definition scanned) and
   on the same listing again (answered by digest), median of `--rounds`.

The last line printed is one JSON object with every figure (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from guardrails_corpus import benign_results, tool_definitions

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.guardrails import GuardrailsSection
from services.executor.guardrails import Guardrails, Subject
from services.executor.interceptors import DefinitionSecretsInterceptor, InterceptedListing

MIB = 1024 * 1024
PAIR = " AKIA" + "W7XQ2ZKD5MNV3RTB r9Kd2Lx7Qp4Vz8Mn3Bw6Ht1Jy5Gc0Fs/Ea+Ub8Ni "
SUBJECT = Subject("bench", "report")


def _prose(size: int) -> str:
    texts = []
    for _, result in benign_results(300, seed=11):
        content = result.get("content") or []
        if content and content[0].get("type") == "text":
            texts.append(content[0]["text"])
    block = "\n".join(texts)
    return (block * (size // len(block) + 1))[:size]


def large_results(sizes: list[int], rounds: int) -> dict[str, Any]:
    guard = Guardrails.compile(GuardrailsSection())
    out: dict[str, Any] = {}
    for mib in sizes:
        text = _prose(mib * MIB)
        for label, body in (("clean", text), ("with_pair", text[: -len(PAIR)] + PAIR)):
            best = float("inf")
            for _ in range(rounds):
                began = time.process_time()
                inspection = guard.inspect("result", SUBJECT, {"content": [{"type": "text", "text": body}]})
                best = min(best, time.process_time() - began)
            if label == "with_pair":
                assert inspection.action == "redact", f"{mib} MiB: the pair at the end was not found"
            out[f"{mib}_mib_{label}_ms"] = round(best * 1000, 1)
            out[f"{mib}_mib_{label}_ms_per_mib"] = round(best * 1000 / mib, 1)
            print(f"{mib:>3} MiB {label:<9} {best * 1000:8.1f} ms  {best * 1000 / mib:6.1f} ms/MiB", flush=True)
    return out


def small_result(calls: int) -> dict[str, Any]:
    guard = Guardrails.compile(GuardrailsSection())
    result = {"content": [{"type": "text", "text": _prose(2048)}]}
    own: list[float] = []
    began = time.process_time()
    for _ in range(calls):
        start = time.thread_time()
        guard.inspect("result", SUBJECT, result)
        own.append(time.thread_time() - start)
    mean = (time.process_time() - began) / calls
    own.sort()
    figures = {
        "2_kib_mean_us": round(mean * 1e6, 1),
        "2_kib_p50_us": round(statistics.median(own) * 1e6, 1),
        "2_kib_p99_us": round(own[int(len(own) * 0.99)] * 1e6, 1),
    }
    print(f"2 KiB result: {figures}", flush=True)
    return figures


async def _listing(screen: DefinitionSecretsInterceptor, tools: list[dict[str, Any]]) -> float:
    view = InterceptedListing("bench", ServerConfig(command="x"), list(tools), [], [], [])
    began = time.process_time()
    await screen.at_listing(view)
    return time.process_time() - began


def listing(count: int, rounds: int) -> dict[str, Any]:
    import asyncio

    tools = [tool for _server, tool in tool_definitions()][:count]
    first, again = [], []
    for _ in range(rounds):
        screen = DefinitionSecretsInterceptor(GuardrailsSection(), pinned=True)
        first.append(asyncio.run(_listing(screen, tools)))
        again.append(asyncio.run(_listing(screen, tools)))
        assert screen.screen.scanned == len(tools)
    figures = {
        "listing_tools": len(tools),
        "listing_first_ms": round(statistics.median(first) * 1000, 1),
        "listing_again_ms": round(statistics.median(again) * 1000, 2),
    }
    print(f"listing: {figures}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,8,9,16,32")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tools", type=int, default=1500)
    args = parser.parse_args()
    figures: dict[str, Any] = {"load_average": round(os.getloadavg()[0], 1)}
    figures |= small_result(args.calls)
    figures |= listing(args.tools, args.rounds)
    figures |= large_results([int(s) for s in args.sizes.split(",")], args.rounds)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
