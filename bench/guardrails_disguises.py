"""Guardrails past disguises: recall on credentials hidden the ways an upstream can hide them, and
what reading past disguises costs.

    .venv/bin/python bench/guardrails_disguises.py [--calls 2000]

1. Recall: every credential of the labelled attack set (tests/data/guardrails/attacks.jsonl, the
   `secrets` items) that the plain scan finds standing alone (a token format, not a value that needs
   its `password =` beside it) is cut out of its item and put back disguised (base64,
   base64url, base64 twice, hex, `\\uXXXX`, percent-encoding, zero-width characters, spaces between
   characters, fullwidth letters) and, separately, cut in two across two content blocks; the share
   the default rules still redact, with nothing of the disguised form left.
2. Cost: the default rules on ~10 KB benign results (the bench/guardrails.py set), and on ~10 KB of
   text that makes the normalised view work (URL-encoded links, accented words, Japanese, fullwidth
   words, zero-width characters inside words), with the deep read on and off (the `secrets`
   detector taken out of `engine._DEEP`): the CPU it adds per call, mean and p99 of each call's own
   thread CPU time.

Last line: the figures as JSON (docs/benchmarks.md, "Guardrails past disguises").
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from guardrails import CALLER, _sized
from guardrails_corpus import load_attacks

from libs.common.contracts.guardrails import GuardrailsSection
from services.executor.guardrails import Guardrails, Subject, engine
from services.executor.guardrails.walk import strings

DISGUISES: dict[str, Callable[[str], str]] = {
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64url": lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    "base64_twice": lambda s: base64.b64encode(base64.b64encode(s.encode())).decode(),
    "hex": lambda s: s.encode().hex(),
    "json_escaped": lambda s: "".join(f"\\u{ord(c):04x}" for c in s),
    "percent": lambda s: "".join(f"%{ord(c):02X}" for c in s),
    "zero_width": lambda s: "\u200b".join(s),
    "spaced": lambda s: " ".join(s),
    "fullwidth": lambda s: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s),
}


def _secrets() -> list[str]:
    """The credentials the plain scan finds in the attack set, each as its matched text."""
    rules = Guardrails.compile(GuardrailsSection())
    found: list[str] = []
    for item in load_attacks():
        if item["detector"] != "secrets":
            continue
        inspection = rules.inspect(item["where"], Subject("attack", "tool", CALLER), item["content"])
        if inspection.action is None:
            continue
        for _path, _key, value in strings(item["content"]):
            marked = rules.inspect("result", Subject("attack", "tool", CALLER), {"text": value}).content["text"]
            if marked != value:
                found.extend(_spans(value, marked))
    alone = [s for s in sorted(set(found)) if _caught(rules, s)]
    return alone


def _caught(rules: Guardrails, text: str) -> bool:
    """Whether the credential is one standing alone (a token format), not one that needs the
    keyword beside it (`password = ...`): only those can be disguised on their own."""
    out = rules.inspect("result", Subject("bench", "tool", CALLER), {"text": f"x {text} y"}).content["text"]
    return text not in out


def _spans(original: str, marked: str) -> list[str]:
    """What the redaction markers in `marked` replaced in `original` (prefix and suffix matching)."""
    out = []
    head = 0
    while head < min(len(original), len(marked)) and original[head] == marked[head]:
        head += 1
    tail = 0
    while tail < min(len(original), len(marked)) - head and original[-1 - tail] == marked[-1 - tail]:
        tail += 1
    middle = original[head : len(original) - tail]
    if 8 <= len(middle) <= 400 and "[REDACTED" not in middle:
        out.append(middle)
    return out


def recall(secrets: list[str]) -> dict[str, Any]:
    rules = Guardrails.compile(GuardrailsSection())
    subject = Subject("bench", "tool", CALLER)
    figures: dict[str, Any] = {}
    for name, disguise in DISGUISES.items():
        caught = 0
        for secret in secrets:
            hidden = disguise(secret)
            out = json.dumps(
                rules.inspect("result", subject, {"content": [{"type": "text", "text": f"x {hidden} y"}]}).content
            )
            caught += hidden not in out and json.dumps(hidden)[1:-1] not in out
        figures[name] = {"caught": caught, "of": len(secrets)}
    caught = 0
    for secret in secrets:
        half = len(secret) // 2
        blocks = [{"type": "text", "text": f"x {secret[:half]}"}, {"type": "text", "text": f"{secret[half:]} y"}]
        out = json.dumps(rules.inspect("result", subject, {"content": blocks}).content)
        caught += json.dumps(secret[:half])[1:-1] not in out and json.dumps(secret[half:])[1:-1] not in out
    figures["split_across_blocks"] = {"caught": caught, "of": len(secrets)}
    return figures


def _cpu(rules: Guardrails, results: list[dict[str, Any]], calls: int) -> dict[str, float]:
    subject = Subject("bench", "tool", CALLER)
    samples = []
    for i in range(calls):
        result = results[i % len(results)]
        start = time.thread_time_ns()
        rules.inspect("result", subject, result)
        samples.append((time.thread_time_ns() - start) / 1000)
    samples.sort()
    return {"mean_us": round(statistics.fmean(samples), 1), "p99_us": round(samples[int(0.99 * len(samples))], 1)}


def _texts() -> dict[str, list[dict[str, Any]]]:
    """~10 KB results of text that makes the normalised view do work: the benign set's text with
    URL-encoded links, accented words, and text in Japanese, in fullwidth letters, with zero-width
    characters inside words (each its worst case: all of the text is so)."""
    benign = [r["content"][0]["text"] for r in _sized(10_000)]
    link = " https://example.com/search?q=hello%20world&next=%2Fpath%3Fa%3D1 "
    shapes = {
        "url_encoded": [t[:8000] + link * 30 for t in benign],
        "accented": [t.replace("the", "thé").replace("over", "über") for t in benign],
        "japanese": ["これは日本語のテキストです。検索結果を表示します。" * 370],
        "fullwidth_words": ["ｆｕｌｌｗｉｄｔｈ ｗｏｒｄｓ " * 500],
        "zero_width_in_words": ["word\u200bword " * 1000],
    }
    return {
        name: [{"content": [{"type": "text", "text": t[:10_000]}]} for t in texts] for name, texts in shapes.items()
    }


def _added(results: list[dict[str, Any]], calls: int) -> dict[str, Any]:
    rules = Guardrails.compile(GuardrailsSection())
    _cpu(rules, results, 100)
    deep = _cpu(rules, results, calls)
    saved = engine._DEEP
    engine._DEEP = frozenset()
    try:
        rules = Guardrails.compile(GuardrailsSection())  # a fresh engine: each plans its rules once
        _cpu(rules, results, 100)
        plain = _cpu(rules, results, calls)
    finally:
        engine._DEEP = saved
    return {
        "bytes": round(statistics.fmean(len(json.dumps(r, ensure_ascii=False)) for r in results)),
        "plain": plain,
        "deep": deep,
        "added_mean_us": round(deep["mean_us"] - plain["mean_us"], 1),
        "added_p99_us": round(deep["p99_us"] - plain["p99_us"], 1),
    }


def cost(calls: int) -> dict[str, Any]:
    figures = {"benign_10kb": _added(_sized(10_000), calls)}
    for name, results in _texts().items():
        figures[name] = _added(results, max(calls // 4, 100))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    secrets = _secrets()
    report = {"credentials": len(secrets), "recall": recall(secrets), "cost_10kb": cost(args.calls)}
    for name, figure in report["recall"].items():
        print(f"  {name:20} {figure['caught']}/{figure['of']}")
    for name, figure in report["cost_10kb"].items():
        print(f"  cost {name:20} added mean {figure['added_mean_us']} µs, p99 {figure['added_p99_us']} µs")
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
