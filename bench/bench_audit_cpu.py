"""CPU of the audit service per event: a real `python -m services.audit` on a real chdb store and NATS.

Events are published at a steady rate (as a gateway under load emits them, through `AuditPublisher`);
the audit process's CPU (all its threads, the engine's included, from /proc) is read before the first
and after the last is stored and acked. Several source trees may be measured in one run, interleaved,
each against its own store and consumer (`--tree` a checkout of the baseline, e.g. made with
`git archive <commit> libs services cli | tar -x -C /tmp/base`):

    PYTHONPATH=$PWD .venv/bin/python bench/bench_audit_cpu.py --tree /tmp/base --tree . --rounds 3

It prints µs of audit CPU per event for each tree and round, and the median per tree.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.aio.client import Client as NATS

from cli.stack import EmbeddedNats, kill_with_parent
from libs.common.audit.audit_chain import producer_id
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.bus.nats import connect, kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, KeyRecord
from services.audit.writer import DURABLE
from tests.support.audit_pipeline import event
from tests.support.stores import declared

_TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP = 100
"""Events written before the measure starts: the first insert imports the driver's code and sets the engine up."""


def _event(i: int) -> AuditEvent:
    """A tools/call row as the executor writes one (content digests, no content kept)."""
    return event(
        i,
        status="ok" if i % 13 else "error",
        upstream_ms=0.5 + i % 40,
        request_bytes=200 + i % 100,
        response_bytes=900 + i % 300,
        arguments_sha256="a" * 64,
        result_sha256="b" * 64,
        trace_id=f"{i:032x}",
        execution="ran",
    )


def _cpu_s(pid: int) -> float:
    """utime + stime of the process, every thread included."""
    return _ticks(Path(f"/proc/{pid}/stat")) / _TICKS


def _ticks(stat: Path) -> int:
    fields = stat.read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def _threads(pid: int) -> dict[str, int]:
    """CPU ticks per thread name (the engine's pools, the writer's lane, the event loop)."""
    spent: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip().rstrip("0123456789")
            spent[name] = spent.get(name, 0) + _ticks(task / "stat")
        except OSError:
            continue
    return spent


async def _settled(nc: NATS, total: int) -> bool:
    info = await nc.jetstream().consumer_info(subjects.AUDIT_STREAM, DURABLE)
    return info.delivered.stream_seq >= total and info.num_pending == 0 and info.num_ack_pending == 0


async def _until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the audit process did not settle every event in time")
        await asyncio.sleep(0.25)


def _start_audit(tree: Path, nats_url: str, work: Path) -> subprocess.Popen[bytes]:
    """`python -m services.audit` of `tree`, as ops run it (default batch size and flush interval)."""
    env = os.environ | {
        "PYTHONPATH": str(tree),
        "BASTION_NATS_URL": nats_url,
        "BASTION_CLICKHOUSE_URL": f"chdb://{work / 'clickhouse'}",
    }
    with (work / "audit.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.audit"],
            cwd=tree,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=kill_with_parent,
        )


def _ready(work: Path) -> bool:
    log = work / "audit.log"
    return log.exists() and "audit ready" in log.read_text(errors="replace")


async def _publish(nc: NATS, first: int, events: int, rate: float, per_wake: int) -> None:
    """`events` events through a real `AuditPublisher`, `per_wake` at a time, `rate` a second."""
    async with AuditPublisher(nc, producer=producer_id("ingress")) as publisher:
        start = time.monotonic()
        for i in range(events):
            publisher.emit(_event(first + i))
            if i % per_wake == per_wake - 1:  # a gateway's calls end one by one: a few events per message
                await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))


async def _one(tree: Path, events: int, rate: float, per_wake: int, work: Path) -> float:
    """µs of audit CPU per event for `tree`, on a fresh NATS and store."""
    server = EmbeddedNats(work / "nats")
    server.start()
    try:
        nc = await connect(server.url, "bench-audit")
        await declared(nc.jetstream(), subjects.KV_KEYS, subjects.AUDIT_STREAM, subjects.AUDIT_DEAD_STREAM)
        keys = await kv_bucket(nc.jetstream(), subjects.KV_KEYS)
        for k in range(7):
            await keys.put(f"id-{k}", KeyRecord(id=f"id-{k}", name=f"id-{k}").model_dump_json().encode())
        proc = _start_audit(tree, server.url, work)
        try:
            await _until(lambda: asyncio.to_thread(_ready, work), 120)
            await _publish(nc, 0, WARM_UP, rate, WARM_UP)
            await _until(lambda: _settled(nc, 1), 120)  # the first insert loads code and warms the engine
            await asyncio.sleep(1.0)
            warm = (await nc.jetstream().stream_info(subjects.AUDIT_STREAM)).state.messages
            before, threads = _cpu_s(proc.pid), _threads(proc.pid)
            await _publish(nc, WARM_UP, events, rate, per_wake)
            messages = (await nc.jetstream().stream_info(subjects.AUDIT_STREAM)).state.messages
            await _until(lambda: _settled(nc, messages), 120)
            spent = _cpu_s(proc.pid) - before
            by_thread = {name: ticks - threads.get(name, 0) for name, ticks in _threads(proc.pid).items()}
            busiest = sorted(by_thread.items(), key=lambda item: -item[1])[:4]
            print(
                f"  {messages - warm} messages ({events / (messages - warm):.1f} events each); µs per event by thread: "
                + ", ".join(f"{name} {ticks * 1e6 / _TICKS / events:.0f}" for name, ticks in busiest),
                flush=True,
            )
        finally:
            proc.terminate()
            proc.wait(30)
            await nc.close()
    finally:
        server.stop()
    return spent * 1e6 / events


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", type=Path, help="a source tree to run (default: this one)")
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second published")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--per-wake", type=int, default=1, help="events emitted at once (1: the publisher packs a few per message)"
    )
    args = parser.parse_args()
    trees = [tree.resolve() for tree in (args.tree or [Path.cwd()])]
    results: dict[Path, list[float]] = {tree: [] for tree in trees}
    for round_ in range(args.rounds):
        for tree in trees:
            with tempfile.TemporaryDirectory(prefix="bench-audit-") as work:
                us = await _one(tree, args.events, args.rate, args.per_wake, Path(work))
            results[tree].append(us)
            print(f"round {round_ + 1} {tree}: {us:6.1f} µs of audit CPU per event", flush=True)
    for tree, values in results.items():
        print(
            f"median {tree}: {statistics.median(values):6.1f} µs per event ({args.events} events at {args.rate:.0f}/s)"
        )


if __name__ == "__main__":
    asyncio.run(main())
