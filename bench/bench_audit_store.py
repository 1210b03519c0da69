"""CPU of the audit store per event in steady state: many batches through `ClickHouseStore.write`, merges included.

`bench_audit_cpu.py` measures a whole audit process over a few batches; this one inserts enough batches
(1,000 events each, as the writer does at 500 events/s) for the engine's background merges to reach their
steady state, which costs as much as the inserts. Each run opens a fresh embedded store in a process of
its own (the engine holds one path per process) with `merge_selector_base` set to each `--base` given,
interleaved over `--rounds`. It prints, per run: the process's CPU per batch (inserts, views, merges, all
threads), rows re-merged per batch and minor page faults per batch (counts that do not depend on the
machine's load), and the active parts per table at the end:

    PYTHONPATH=$PWD .venv/bin/python bench/bench_audit_store.py --base 5 --base 10 --rounds 2
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import clickhouse_connect

from services.audit import merges
from services.audit.schema import to_rows
from services.audit.store import ClickHouseStore
from tests.support.audit_pipeline import event

TOOLS = 5
"""Distinct tools in a batch (a gateway's traffic names a few): the rollups' groups per hour and key."""


def _batch(number: int, size: int, start: float) -> list[tuple[object, ...]]:
    events = [
        event(
            number * size + i,
            tool=f"tool_{i % TOOLS}",
            ts=start + number + i / size,
            seq=number * size + i + 1,
            status="ok" if i % 13 else "error",
        )
        for i in range(size)
    ]
    return to_rows(events, "ingress", {key: () for key in {e.key_id for e in events}})


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _counters(client: object) -> dict[str, int]:
    found = client.query("SELECT event, value FROM system.events")  # type: ignore[attr-defined]
    return {str(name): int(value) for name, value in found.result_rows}


def run(base: int, batches: int, size: int) -> None:
    """One measure, in this process: `batches` inserts on a fresh store merging with `base`."""
    with tempfile.TemporaryDirectory(prefix="bench-store-") as work:
        url = f"chdb://{Path(work) / 'clickhouse'}"
        store = ClickHouseStore(url)
        store.open()
        for table in merges.TUNED:
            store.command(f"ALTER TABLE {table} MODIFY SETTING merge_selector_base = {base}")
        counters = clickhouse_connect.get_client(dsn=url)
        start = time.time()
        store.write(_batch(0, size, start))
        prepared = [_batch(b + 1, size, start) for b in range(batches)]
        before, faults, seen = _cpu(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt, _counters(counters)
        for rows in prepared:
            store.write(rows)
        spent = _cpu() - before
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        merged = _counters(counters).get("MergedRows", 0) - seen.get("MergedRows", 0)
        active = "SELECT table, count() FROM system.parts WHERE active AND database = 'bastion' GROUP BY table"
        parts = counters.query(f"{active} ORDER BY table").result_rows
        counters.close()
        store.close()
    print(
        f"base {base}: {spent * 1e3 / batches:6.1f} ms CPU per {size}-event batch, {merged / batches:6.0f} rows "
        f"re-merged and {faults / batches:5.0f} page faults per batch; active parts {dict(parts)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", action="append", type=int, help="merge_selector_base to measure (default: ours)")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--size", type=int, default=1000, help="events per batch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a single run, in a process of its own
    args = parser.parse_args()
    if args.one is not None:
        run(args.one, args.batches, args.size)
        return
    for _ in range(args.rounds):
        for base in args.base or [merges.MERGE_SETTINGS["merge_selector_base"]]:
            argv = [sys.executable, __file__, "--one", str(base), "--batches", str(args.batches)]
            subprocess.run([*argv, "--size", str(args.size)], check=True)


if __name__ == "__main__":
    main()
