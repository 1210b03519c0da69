"""Cedar policy decision CPU at 10 / 100 / 1,000 policies (docs/policy.md, docs/benchmarks.md).

    PYTHONPATH=. .venv/bin/python bench/bench_cedar_policies.py
    PYTHONPATH=. .venv/bin/python bench/bench_cedar_policies.py --sizes 10 100 1000 --calls 2000 --json out.json

The policy set is a realistic mix: half per-call policies on one tool each (`context.arguments.amount
> N`, with `@approval` on every fourth), half static ones (a team kept off a server, `delete_*`
forbidden on a server). For each size, CPU per decision (process time, one thread) of:

  compile          compile_policies: parse, check, split into the static and per-call sets (per apply)
  pair (miss)      a (key, tool) decided for the first time: the static set plus the per-call scopes
  pair (hit)       the same pair again: the cached decision (what a call without argument policies pays)
  per call         the pair's per-call policies over one call's arguments, entities parsed once
                   (what a call with argument policies pays)
  whole set        every policy over the call, entities parsed per call (`POST /policies/check`)

A script, not a test: numbers are noisy and depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from libs.common.cedar.cedar_eval import Principal, call_context, evaluate, per_call_applicable
from libs.common.cedar.cedar_policies import compile_policies
from libs.common.contracts.messages import KeyRecord
from services.policy.cedar_decisions import CedarDecider
from services.policy.view import CompiledKey


def policy_text(size: int) -> str:
    out = []
    for i in range(size):
        if i % 2 == 0:
            approval = '@approval("finance")\n' if i % 8 == 0 else ""
            out.append(
                f'@id("limit-{i}")\n{approval}forbid (principal, action == Action::"tools/call", '
                f'resource == Tool::"srv{i % 50}/tool{i}") when {{ context.arguments.amount > {100 + i} }};'
            )
        elif i % 4 == 1:
            out.append(
                f'@id("team-{i}")\nforbid (principal in Team::"team{i}", action, resource in Server::"srv{i % 50}");'
            )
        else:
            out.append(
                f'@id("nodelete-{i}")\nforbid (principal, action, resource in Server::"srv{i % 50}") '
                'when { resource.tool like "delete_*" };'
            )
    return "\n\n".join(out)


def cpu_us(work: Callable[[], object], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        work()
    return (time.process_time() - started) / calls * 1e6


def measure(size: int, calls: int) -> dict[str, float]:
    text = policy_text(size)
    compiled = compile_policies(text)
    compile_us = cpu_us(lambda: compile_policies(text), max(3, min(50, 5000 // size)))
    key = CompiledKey(KeyRecord(id="k1", name="support", team_id="payments"), None, None, None, None)  # type: ignore[arg-type]
    who = Principal("support", team="payments")
    decider = CedarDecider()
    decider.load(compiled, 1)
    target = ("srv0", "tool0", {})  # a per-call policy applies to it

    def miss() -> None:
        evaluate(compiled, compiled.static, who, target, {})
        per_call_applicable(compiled, who, target)

    decider.pair(key, *target)
    hit = cpu_us(lambda: decider.pair(key, *target), calls * 10)
    context = call_context({"order": "o-1", "amount": 50})
    pair = decider.pair(key, *target)
    return {
        "policies": size,
        "compile_ms": compile_us / 1000,
        "pair_miss_us": cpu_us(miss, calls),
        "pair_hit_us": hit,
        "per_call_us": cpu_us(lambda: decider.per_call(pair, target, context), calls),
        "whole_set_us": cpu_us(lambda: evaluate(compiled, compiled.full, who, target, context), calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = [measure(size, args.calls) for size in args.sizes]
    print(
        f"{'policies':>9} {'compile ms':>11} {'pair miss µs':>13} {'pair hit µs':>12} {'per call µs':>12}"
        f" {'whole set µs':>13}"
    )
    for r in rows:
        print(
            f"{r['policies']:>9} {r['compile_ms']:>11.1f} {r['pair_miss_us']:>13.0f} "
            f"{r['pair_hit_us']:>12.2f} {r['per_call_us']:>12.0f} {r['whole_set_us']:>13.0f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
