"""Guardrails: what the default rules cost per call, and how well the detectors do.

    .venv/bin/python bench/guardrails.py [--calls 3000] [--json-only]

1. Cost: the default guardrails (`GuardrailsSection()`: credentials redacted in arguments and results)
   on one call = `inspect` of its arguments plus `inspect` of its result, for realistic results of
   about 1 KB and 10 KB (logs, JSON rows, markdown, code from the benign generator, cut to size), and
   for a 10 KB result holding a secret (the redaction path). CPU time per call (process time over
   all calls), wall-clock p50 / p99 of single calls, and the p99 of each call's own CPU time (the
   thread's clock: what the call costs, without the waits a busy shared machine adds to the wall
   clock). Target: p99 <= 1 ms per 10 KB result.
2. False positives: the share of benign items any default rule flags: the 516 real tool
   definitions (`where: definition`) and the generated results (`where: result`). Target <= 0.5 %.
   Also per detector, each with all its entities, to show what turning one on would cost.
3. Recall: for each detector, the share of its labelled attack items (tests/data/guardrails/
   attacks.jsonl) it fires on, checked where the item says.
4. Pinning: `decide` on the whole real catalog (516 tools in 16 servers), first listing and an
   unchanged relisting.

The last line printed is one JSON object with every figure (docs/benchmarks.md, "Guardrails").
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from guardrails_corpus import benign_results, load_attacks, tool_definitions

from libs.common.contracts.guardrails import GuardrailRule, GuardrailsSection
from libs.common.contracts.messages_base import Caller
from services.executor.guardrails import Guardrails, Subject
from services.executor.pinning import decide

DETECTORS = ("secrets", "pii", "injection", "hidden_unicode", "exfil_links")
CALLER = Caller(key_id="k" * 64, key_name="bench", user_id="ana")


def _sized(target: int) -> list[dict[str, Any]]:
    """Results of about `target` bytes: the benign generator's text, cut at a line end."""
    out = []
    for _, result in benign_results(200, seed=11):
        content = result.get("content") or []
        text = content[0].get("text") if content and content[0].get("type") == "text" else None
        if not text or len(text) < target:
            continue
        cut = text[:target]
        cut = cut[: cut.rfind("\n")] if "\n" in cut[target // 2 :] else cut
        out.append({"content": [{"type": "text", "text": cut}]})
    return out


def _with_secret(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    token = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"
    out = []
    for result in results:
        text = result["content"][0]["text"]
        middle = len(text) // 2
        out.append({"content": [{"type": "text", "text": f"{text[:middle]}\nGITHUB_TOKEN={token}\n{text[middle:]}"}]})
    return out


def cost(guardrails: Guardrails, results: list[dict[str, Any]], calls: int) -> dict[str, float]:
    subject = Subject("github", "get_file_contents", CALLER)
    arguments = {"owner": "org", "repo": "demo", "path": "src/app.py", "ref": "main"}
    for result in results[:50]:  # warm caches (rule lookups, regex compilation)
        guardrails.inspect("arguments", subject, arguments)
        guardrails.inspect("result", subject, result)
    gc.collect()
    gc.disable()
    try:
        walls, cpus = [], []
        cpu_start = time.process_time()
        for i in range(calls):
            result = results[i % len(results)]
            start, start_cpu = time.perf_counter(), time.thread_time()
            guardrails.inspect("arguments", subject, arguments)
            guardrails.inspect("result", subject, result)
            cpus.append(time.thread_time() - start_cpu)
            walls.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu_start
    finally:
        gc.enable()
    walls.sort()
    cpus.sort()
    return {
        "bytes": round(statistics.mean(len(json.dumps(r)) for r in results)),
        "cpu_us_per_call": round(cpu / calls * 1e6, 1),
        "p50_us": round(walls[len(walls) // 2] * 1e6, 1),
        "p99_us": round(walls[int(len(walls) * 0.99)] * 1e6, 1),
        "cpu_p99_us": round(cpus[int(len(cpus) * 0.99)] * 1e6, 1),
    }


def _only(detector: str) -> Guardrails:
    rule = GuardrailRule(name=f"only-{detector}", detector=detector, where=["arguments", "result", "definition"])
    return Guardrails.compile(GuardrailsSection(defaults=False, rules=[rule]))


def false_positives() -> dict[str, Any]:
    defaults = Guardrails.compile(GuardrailsSection())
    single = {d: _only(d) for d in DETECTORS}
    definitions = tool_definitions()
    results = list(benign_results())
    flagged_default = 0
    per_detector: Counter[str] = Counter()
    on_results: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    checks = [
        ("definition", Subject(server, tool["name"]), tool, f"{server}/{tool['name']}") for server, tool in definitions
    ]
    checks += [("result", Subject("bench", kind, CALLER), result, kind) for kind, result in results]
    for where, subject, payload, label in checks:
        if defaults.inspect(where, subject, payload).decisions:
            flagged_default += 1
        for name, guard in single.items():
            found = guard.inspect(where, subject, payload).decisions
            if found:
                per_detector[name] += 1
                on_results[name] += where == "result"
                examples[name].append(f"{label}: {sorted({d.entity for d in found})}")
    items = len(definitions) + len(results)
    return {
        "items": items,
        "definitions": len(definitions),
        "results": len(results),
        "default_flagged": flagged_default,
        "default_rate_pct": round(100 * flagged_default / items, 3),
        "per_detector_rate_pct": {d: round(100 * per_detector[d] / items, 3) for d in DETECTORS},
        "per_detector_results_rate_pct": {d: round(100 * on_results[d] / len(results), 3) for d in DETECTORS},
        "examples": {d: sorted(set(examples[d]))[:4] for d in DETECTORS if examples[d]},
    }


def recall() -> dict[str, Any]:
    attacks = load_attacks()
    single = {d: _only(d) for d in DETECTORS}
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    missed: dict[str, list[str]] = defaultdict(list)
    for item in attacks:
        detector = item["detector"]
        totals[detector] += 1
        caller = None if item["where"] == "definition" else CALLER
        found = single[detector].inspect(item["where"], Subject("attack", "tool", caller), item["content"]).decisions
        if found:
            hits[detector] += 1
        else:
            missed[detector].append(item["id"])
    return {
        "items": len(attacks),
        "per_detector": {
            d: {"caught": hits[d], "of": totals[d], "recall_pct": round(100 * hits[d] / totals[d], 1)} for d in totals
        },
        "missed": dict(missed),
    }


def pinning() -> dict[str, float]:
    by_server: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for server, tool in tool_definitions():
        by_server[server].append(tool)
    start = time.perf_counter()
    outcomes = {s: decide(s, "tofu", None, [], {"tool": tools}) for s, tools in by_server.items()}
    first = time.perf_counter() - start
    start = time.perf_counter()
    for server, tools in by_server.items():
        outcome = outcomes[server]
        decide(server, "tofu", outcome.baseline, outcome.writes, {"tool": tools})
    again = time.perf_counter() - start
    return {
        "tools": sum(map(len, by_server.values())),
        "first_listing_ms": round(first * 1e3, 1),
        "relisting_ms": round(again * 1e3, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    defaults = Guardrails.compile(GuardrailsSection())
    ten = _sized(10_000)
    figures = {
        "cost_1kb": cost(defaults, _sized(1_000), args.calls),
        "cost_10kb": cost(defaults, ten, args.calls),
        "cost_10kb_with_secret": cost(defaults, _with_secret(ten), args.calls),
        "false_positives": false_positives(),
        "recall": recall(),
        "pinning": pinning(),
    }
    if not args.json_only:
        for name in ("cost_1kb", "cost_10kb", "cost_10kb_with_secret"):
            print(f"{name:24} {figures[name]}")
        fp = figures["false_positives"]
        print(
            f"false positives (defaults): {fp['default_flagged']} of {fp['items']} items = {fp['default_rate_pct']} %"
        )
        print(f"  per detector, all entities on, every item: {fp['per_detector_rate_pct']}")
        print(f"  per detector, results only: {fp['per_detector_results_rate_pct']}")
        for detector, shown in fp["examples"].items():
            print(f"  e.g. {detector}: {shown}")
        for detector, r in figures["recall"]["per_detector"].items():
            print(f"recall {detector:15} {r['caught']}/{r['of']} = {r['recall_pct']} %")
        print(f"missed: {figures['recall']['missed']}")
        print(f"pinning: {figures['pinning']}")
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
