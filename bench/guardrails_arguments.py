"""Guardrails on arguments: which real tools' argument names a credentials rule trips on, with the
values those arguments ordinarily hold.

    .venv/bin/python bench/guardrails_arguments.py

Every property name of every real tool's `inputSchema` (tests/data/tool-schemas, 68 servers, 1,587
tools; nested object properties included) is given each benign value a `token`, `cursor` or
`session_token` argument ordinarily carries (a UUID, a request label, a short counter, an opaque
base64 cursor) and each credential it must still catch, as `{name: value}` through the default
secrets detector. The old rule is the key rule as it stood before token-named values were told
apart (a secret-looking key, then any value of 12+ characters, two character classes and 3 bits of
entropy: `old_credible`); the new one is the detector itself. Last line: the figures as JSON
(docs/benchmarks.md, "Guardrails on arguments").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from guardrails_corpus import tool_definitions

from services.executor.guardrails import SecretsDetector
from services.executor.guardrails.base import mixed_classes, shannon_entropy
from services.executor.guardrails.secrets import _KEY_IS_SECRET, _NOT_SECRET_KEY, _PLACEHOLDERS, _TEMPLATED

BENIGN = {
    "uuid": "3f2b8c1e-9a4d-4e7b-8c2a-1d5e6f7a8b9c",
    "request_label": "call 1234 attempt 0",
    "counter": "17",
    "cursor": "eyJwYWdlIjoyLCJzaXplIjo1MH0=",
    "page_label": "page_2",
}
SECRET = {
    "github_token": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "random_api_key": "q8Zr2LmX9vTn4KpW7sYd",
}


def old_credible(value: str, password: bool) -> bool:
    """The rule before: a placeholder or a template is not a secret, anything else random enough is."""
    if _PLACEHOLDERS.match(value) or _TEMPLATED.search(value):
        return False
    if password:
        return len(value) >= 6 and mixed_classes(value) >= 2
    return len(value) >= 12 and mixed_classes(value) >= 2 and shannon_entropy(value) >= 3.0


def _names(schema: Any) -> Iterator[str]:
    if not isinstance(schema, dict):
        return
    for name, sub in (schema.get("properties") or {}).items():
        yield name
        yield from _names(sub)
    yield from _names(schema.get("items"))


def main() -> None:
    detector = SecretsDetector()
    arguments = [name for _, tool in tool_definitions() for name in _names(tool.get("inputSchema"))]
    keyed = [n for n in arguments if _KEY_IS_SECRET.search(n.lower()) and not _NOT_SECRET_KEY.search(n.lower())]
    report: dict[str, Any] = {
        "arguments": len(arguments),
        "distinct_names": len(set(arguments)),
        "secret_looking_names": sorted(set(keyed)),
        "benign": {},
        "secrets": {},
    }
    for label, value in BENIGN.items():
        old = sum(old_credible(value, "pass" in n.lower() or "pwd" in n.lower()) for n in keyed)
        new = sum(_flags(detector, n, value) for n in arguments)
        report["benign"][label] = {"old": old, "new": new}
    for label, value in SECRET.items():
        report["secrets"][label] = {"caught_under": sum(_flags(detector, n, value) for n in keyed), "of": len(keyed)}
    names = report["secret_looking_names"]
    print(f"{len(arguments)} arguments ({len(set(arguments))} names); secret-looking names: {names}")
    for label, counts in report["benign"].items():
        print(f"  benign {label:14} flagged: old {counts['old']:4}  new {counts['new']:4}")
    for label, counts in report["secrets"].items():
        print(f"  secret {label:14} caught under {counts['caught_under']} of {counts['of']} secret-looking names")
    print(json.dumps(report, sort_keys=True))


def _flags(detector: SecretsDetector, name: str, value: str) -> bool:
    payload = {name: value}
    text = json.dumps(payload)
    scan = detector.prepare(text, text.lower())
    return scan is not None and bool(scan(value, name))


if __name__ == "__main__":
    main()
