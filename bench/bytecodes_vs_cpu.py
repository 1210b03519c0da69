"""Does a count move with CPU? The two kinds of cut the fifth round rejected (docs/benchmarks.md), each
old and new side by side: Python calls (cProfile, what the cost budget counted), bytecode instructions
(`tests.support.bytecode_counts`, what it counts now) and thread CPU (interleaved, the least of many
repeats).

    PYTHONPATH=$PWD .venv/bin/python bench/bytecodes_vs_cpu.py [--repeats 30]

- HTTP head: a Python callback per header field, called by httptools' C parser (old), against the
  fields split from the head in a Python loop after the parser accepted it (new).
- Result scan: a walk collecting a result's strings, each searched (old), against one search over the
  result's JSON text (new).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import time
from collections.abc import Callable
from typing import Any

import httptools
import orjson

from tests.support.bytecode_counts import BytecodeCounter

HEAD = (
    b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nuser-agent: python-httpx/0.28.1\r\naccept: application/json, "
    b"text/event-stream\r\naccept-encoding: gzip, deflate\r\nconnection: keep-alive\r\ncontent-type: application/json"
    b"\r\nauthorization: Bearer bk_cost_budget_key_00000000000\r\nmcp-session-id: 4f7d2c9e8a1b4c3d9e8f7a6b5c4d3e2f"
    b"\r\nmcp-protocol-version: 2025-06-18\r\ncontent-length: 120\r\nx-request-id: 0123456789abcdef\r\n\r\n"
)  # an 11-field request head, as an MCP client sends a tools/call
ANCHORS = re.compile(r"<\|im_start\|>|ignore (all )?previous instructions|\[INST\]")


class Callbacks:
    """The old head: the C parser calls `on_header` once per field (as ingress's `http_limits` does)."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers.append((name, value))


class Complete:
    """The new head: no callback per field; the fields are split from the accepted head afterwards."""

    def __init__(self) -> None:
        self.done = False

    def on_headers_complete(self) -> None:
        self.done = True


def split_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    headers = []
    for line in head[: head.index(b"\r\n\r\n")].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip(b" \t")))
    return headers


def head_by_callbacks() -> list[tuple[bytes, bytes]]:
    callbacks = Callbacks()
    httptools.HttpRequestParser(callbacks).feed_data(HEAD)
    return callbacks.headers


def head_by_split() -> list[tuple[bytes, bytes]]:
    httptools.HttpRequestParser(Complete()).feed_data(HEAD)
    return split_fields(HEAD)


ECHO = {"content": [{"type": "text", "text": "hello"}], "isError": False}
RESULT = {
    "content": [{"type": "text", "text": "".join(f"line {i:04d} of a plain result\n" for i in range(80))[:2048]}],
    "structuredContent": {"ok": True, "lines": 80, "source": "echo"},
    "isError": False,
}


def scan_strings(payload: Any) -> bool:
    """The old scan: the payload's strings collected by a walk (its own stack), each searched."""
    stack, found = [payload], False
    while stack:
        node = stack.pop()
        if type(node) is str:
            found = found or ANCHORS.search(node) is not None
        elif type(node) is dict:
            stack.extend(node.values())
        elif type(node) is list:
            stack.extend(node)
    return found


def scan_text(payload: Any) -> bool:
    """The new scan: one search over the payload's JSON text (the walk only when a quote or backslash
    might hide an anchor)."""
    text = orjson.dumps(payload).decode()
    return ANCHORS.search(text) is not None or (("\\" in text) and scan_strings(payload))


def calls_of(work: Callable[[], Any]) -> tuple[int, int]:
    """Python function calls and C built-in calls, as the cost budget's profiler counts them."""
    profile = cProfile.Profile()
    profile.runcall(work)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    builtins = sum(entry[1] for func, entry in stats.items() if func[0] == "~")
    return sum(entry[1] for func, entry in stats.items() if func[0] != "~") - 1, builtins  # less `work`


def bytecodes_of(work: Callable[[], Any]) -> int:
    counter = BytecodeCounter()
    with counter.counting():
        work()
    return sum(counter.counts().values())


def cpu_ns(work: Callable[[], Any], loops: int) -> float:
    start = time.thread_time_ns()
    for _ in range(loops):
        work()
    return (time.thread_time_ns() - start) / loops


def compare(name: str, old: Callable[[], Any], new: Callable[[], Any], repeats: int, loops: int) -> None:
    assert old() == new(), name
    best = {old: float("inf"), new: float("inf")}
    for _ in range(repeats):  # interleaved: what the machine does meanwhile lands on both
        for work in (old, new):
            best[work] = min(best[work], cpu_ns(work, loops))
    print(f"{name}:")
    for label, work in (("old", old), ("new", new)):
        print(
            "  {}: {:3d} Python calls + {:3d} C calls, ".format(label, *calls_of(work)) + f"{bytecodes_of(work):5d} "
            f"bytecodes, {best[work] / 1000:6.2f} µs thread CPU (least of {repeats} x {loops})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--loops", type=int, default=2000)
    args = parser.parse_args()
    compare("HTTP head, 11 fields", head_by_callbacks, head_by_split, args.repeats, args.loops)
    compare("result scan, echo", lambda: scan_strings(ECHO), lambda: scan_text(ECHO), args.repeats, args.loops)
    compare("result scan, 2 KiB", lambda: scan_strings(RESULT), lambda: scan_text(RESULT), args.repeats, args.loops)


if __name__ == "__main__":
    main()
