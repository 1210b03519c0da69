"""Reading a whole KV bucket, as the admin API's lists and a key's name check do.

    .venv/bin/python bench/bench_kv_reads.py                      # 1,000 and 10,000 records
    .venv/bin/python bench/bench_kv_reads.py --records 100000 --rounds 3

Rows, per size (the bucket filled once, records of ~240 bytes like a key's):
  names        `kv_names`: the keys, from the stream's per-subject state (every 100,000-subject page)
  one by one   the names, then a `kv.get` each, one round trip after another
  kv_entries   the names, then `kv_entries`: `KV_READS_IN_FLIGHT` reads kept waiting at once

The nats-server is the embedded one `bastion up` starts (JetStream on disk, loopback). Wall time and
this process's CPU (the reader's side), the best of `--rounds`. A script, not a test: numbers are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import nats
from nats.js.kv import KeyValue

from cli.stack import EmbeddedNats
from libs.common.bus.nats import KV_READS_IN_FLIGHT, kv_entries, kv_names
from libs.common.contracts import subjects

BUCKET = "bench"
RECORD = b'{"name": "a key", "grants": ["notes/*", "echo/echo"], "groups": [], "revoked": false}' * 3


async def _one_by_one(kv: KeyValue, names: list[str]) -> int:
    return sum([1 for name in names if (await kv.get(name)).value is not None])


async def _in_flight(kv: KeyValue, names: list[str]) -> int:
    return len(await kv_entries(kv, names))


async def _best(rounds: int, action: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """The least wall and CPU seconds of `rounds` runs of `action`."""
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        await action()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


async def measure(url: str, sizes: list[int], rounds: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    kv = await js.create_key_value(bucket=BUCKET)
    filled = 0
    print(f"{'records':>8}  {'row':<11} {'wall s':>8} {'CPU s':>8}  (reads in flight: {KV_READS_IN_FLIGHT})")
    for size in sorted(sizes):
        for i in range(filled, size):  # core publishes, a put each; the acked put below vouches for them
            await nc.publish(f"{subjects.KV_ROOT}.{BUCKET}.key.{i:07d}", RECORD)
        await kv.put(f"key.{size:07d}", RECORD)
        filled = size + 1
        names = (await kv_names(js, BUCKET))[:size]
        rows: dict[str, Callable[[], Awaitable[object]]] = {
            "names": lambda: kv_names(js, BUCKET),
            "one by one": partial(_one_by_one, kv, names),
            "kv_entries": partial(_in_flight, kv, names),
        }
        for row, action in rows.items():
            wall, cpu = await _best(rounds, action)
            print(f"{size:>8,}  {row:<11} {wall:>8.3f} {cpu:>8.3f}", flush=True)
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, action="append", help="bucket sizes (default: 1,000 and 10,000)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedNats(Path(folder) / "nats")
        server.start()
        try:
            asyncio.run(measure(server.url, args.records or [1_000, 10_000], args.rounds))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
