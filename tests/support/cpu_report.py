"""Where the suite's CPU goes: with BASTION_TEST_CPU_REPORT=<folder>, each worker writes one JSON line per
test (setup, call and teardown together) with its wall time, the worker's own CPU and its reaped
subprocesses' CPU (stdio servers, nats-server, Valkey, `bastion up`'s services).

`python -m tests.support.cpu_report <folder>` sums it per file, most CPU first. The suite is CPU-bound on
2 cores, so CPU, not wall time, says which files to make cheaper.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

REPORT = os.environ.get("BASTION_TEST_CPU_REPORT")


def _cpu() -> tuple[float, float]:
    times = os.times()
    return times.user + times.system, times.children_user + times.children_system


if REPORT:

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
        wall, (own, children) = time.monotonic(), _cpu()
        yield
        own_after, children_after = _cpu()
        line = {
            "test": item.nodeid,
            "wall": round(time.monotonic() - wall, 3),
            "own": round(own_after - own, 3),
            "children": round(children_after - children, 3),
        }
        folder = Path(REPORT)
        folder.mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with (folder / f"{worker}.jsonl").open("a") as out:
            out.write(json.dumps(line) + "\n")


def summary(folder: Path) -> list[tuple[str, float, float, float, int]]:
    """(file, own CPU, children's CPU, wall, tests) per test file, most CPU first."""
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for path in folder.glob("*.jsonl"):
        for text in path.read_text().splitlines():
            line = json.loads(text)
            total = files[line["test"].split("::")[0]]
            total[0] += line["own"]
            total[1] += line["children"]
            total[2] += line["wall"]
            total[3] += 1
    rows = [(name, own, kids, wall, int(n)) for name, (own, kids, wall, n) in files.items()]
    return sorted(rows, key=lambda row: row[1] + row[2], reverse=True)


if __name__ == "__main__":
    rows = summary(Path(sys.argv[1]))
    own_sum, kids_sum = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'file':70} {'own':>7} {'kids':>7} {'wall':>7} {'n':>5}")
    for name, own, kids, wall, n in rows[: int(sys.argv[2]) if len(sys.argv) > 2 else 60]:
        print(f"{name:70} {own:7.1f} {kids:7.1f} {wall:7.1f} {n:5}")
    print(f"total CPU {own_sum + kids_sum:.0f} s (own {own_sum:.0f}, subprocesses {kids_sum:.0f}), {len(rows)} files")
