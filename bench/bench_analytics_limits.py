"""What an analyst's query can cost the audit process, with and without its limits
(a memory cap, an allow-list of functions, a time limit, separate lanes for queries and inserts).

    .venv/bin/python bench/bench_analytics_limits.py            # every case
    .venv/bin/python bench/bench_analytics_limits.py --json out.json

Each case runs in a fresh process holding its own embedded store (chdb, as the audit service does),
so its peak RSS (`VmHWM`) is the query's alone:

  memory, before     a memory bomb, `SELECT length(groupArray(randomString(1000000))) FROM
                     numbers(1500)`, on a read-only connection without a memory cap (the old limits)
  memory, refused    the same query through the allow-list: refused (randomString is not listed)
  memory, capped     the same 1.5 GB with listed functions, on the service's connection (512 MiB cap)
  stop, time limit   a query that would run for hours, `timeout` 1 s: when the engine stopped it
  stop, kill         the same with `timeout` 60 s, killed (`ClickHouseStore.kill`) after 1 s
  inserts, idle      one 500-event insert on the writer's lane, 20 times: median milliseconds
  inserts, 3 queries the same while three endless queries run on their own connections

A script, not a test: numbers are noisy and depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ITEM_6 = "SELECT length(groupArray(randomString(1000000))) FROM numbers(1500)"
LISTED = "SELECT length(arrayMap(x -> repeat('x', 1000000), range(1500)))"
ENDLESS = "SELECT count() FROM numbers(1000000000000) WHERE cityHash64(number) = 0"
MEMORY = 512 * 1024 * 1024


def _status(field: str) -> int:
    """A `/proc/self/status` field in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) // 1024
    raise LookupError(field)


def _case(name: str, store_dir: str) -> dict[str, Any]:
    """Run one case in this process (a child of the script)."""
    import clickhouse_connect

    from libs.common.analytics.queries import AnalyticsQuery, NotReadOnly, engine_limits, read_only
    from libs.common.contracts.messages import AuditEvent
    from services.audit.errors import StoreUnavailable
    from services.audit.schema import to_row
    from services.audit.store import ClickHouseStore

    store = ClickHouseStore(f"chdb://{store_dir}")
    store.open()
    result: dict[str, Any] = {"case": name, "rss_before_mib": _status("VmRSS")}
    started = time.perf_counter()

    def limited(sql: str, timeout: float = 60.0) -> str:
        query = AnalyticsQuery(sql=sql, timeout=timeout)
        limits = engine_limits(query, max_bytes=8 << 20, memory=MEMORY, threads=1)
        try:
            store.analytics(query, read_only(sql), limits, f"bench-{name.replace(' ', '-').replace(',', '')}")
        except (NotReadOnly, StoreUnavailable) as exc:
            return str(exc)[:160]
        return "answered"

    if name == "memory, before":
        old = {"max_result_rows": 10_000, "max_result_bytes": 16 << 20, "result_overflow_mode": "throw"}
        client = clickhouse_connect.get_client(dsn=f"chdb://{store_dir}", settings={**old, "readonly": 1})
        try:
            client.query(ITEM_6)
            result["outcome"] = "answered"
        except Exception as exc:
            result["outcome"] = str(exc)[:160]
    elif name == "memory, refused":
        result["outcome"] = limited(ITEM_6)
    elif name == "memory, capped":
        result["outcome"] = limited(LISTED)
    elif name == "stop, time limit":
        result["outcome"] = limited(ENDLESS, timeout=1.0)
    elif name == "stop, kill":
        killer = threading.Timer(1.0, store.kill, args=("bench-stop-kill",))
        killer.start()
        result["outcome"] = limited(ENDLESS)
        killer.join()
    elif name.startswith("inserts"):
        queries = [threading.Thread(target=limited, args=(ENDLESS, 30.0)) for _ in range(3 if "3" in name else 0)]
        for thread in queries:
            thread.start()
        time.sleep(0.5 if queries else 0)
        took = []
        for batch in range(20):
            rows = [
                to_row(
                    AuditEvent(event_id=f"e-{batch}-{i}", key_name="k", status="ok", latency_ms=i, producer="ingress-b")
                )
                for i in range(500)
            ]
            begun = time.perf_counter()
            store.insert(rows)
            took.append((time.perf_counter() - begun) * 1000)
        result["insert_ms_median"] = round(statistics.median(took), 1)
        result["outcome"] = f"{len(queries)} endless queries running"
        if queries:
            store.kill("bench-inserts-3-queries")  # all three: they share the marker
        for thread in queries:
            thread.join()
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["peak_rss_mib"] = _status("VmHWM")
    store.close()
    return result


CASES = (
    "memory, before",
    "memory, refused",
    "memory, capped",
    "stop, time limit",
    "stop, kill",
    "inserts, idle",
    "inserts, 3 queries",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_case(args.case, args.store)))
        return
    rows = []
    for name in CASES:
        with tempfile.TemporaryDirectory() as store:
            done = subprocess.run(
                [sys.executable, __file__, "--case", name, "--store", store],
                capture_output=True,
                text=True,
                check=True,
                cwd=Path(__file__).resolve().parents[1],
            )
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        extra = f", insert {row['insert_ms_median']} ms" if "insert_ms_median" in row else ""
        print(
            f"{name:20} rss {row['rss_before_mib']:5} -> peak {row['peak_rss_mib']:5} MiB, "
            f"{row['seconds']:6.2f} s{extra}: {row['outcome']}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
