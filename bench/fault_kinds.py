"""The failover benchmark's faults beyond a kill (`bench/failover.py`, `--faults`): a NATS member that
hangs, one that answers slowly, and the audit store that stops taking writes.

- **pause**: SIGSTOP of the nats-server the first ingress replica is connected to, for `--pause`
  seconds, then SIGCONT: its sockets stay open and it answers nothing (a stuck disk, a stalled VM).
- **slow**: the first ingress replica reaches the cluster through `delay_proxy.py` (one listener per
  member; its `BASTION_NATS_URL` names only those); the proxy in front of the member it is connected
  to then holds every byte `--slow-delay` seconds, for `--pause` seconds.
- **store**: the embedded ClickHouse store (chdb, inside the audit service's process) refuses every
  write for `--pause` seconds: its files are made immutable (`chattr +i`, which binds root too), so
  each insert fails; the audit service naks its batches and the events wait in JetStream. The
  end-of-run checks then count the rows: none missing, none twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from cli.stack import nats_monitoring_url

if TYPE_CHECKING:
    from bench.replicated_stack import ReplicatedStack

__all__ = [
    "KINDS",
    "DelayProxies",
    "Fault",
    "after",
    "member_of",
    "pause_member",
    "slow_member",
    "store_away",
    "wait_for",
]

KINDS = ("kill", "pause", "slow", "store")
PROXY = Path(__file__).resolve().parent / "delay_proxy.py"
WATCHED = "ingress-1"
"""The replica whose member is paused or slowed (its `BASTION_INSTANCE`; its connection is named after it)."""


@dataclass
class Fault:
    name: str
    injected: float
    """Monotonic time of the fault."""
    back: float | None = None
    """When the part was running (or answering, or writable) again; None: it was not."""
    detail: dict = field(default_factory=dict)
    ended: float = 0.0
    """When the next fault was injected (or the load ended)."""
    replica: int | None = None
    """The ingress replica (0-based) whose NATS member the fault hit, if one: its calls' gap is the figure."""


async def wait_for(condition: Callable[[], bool], within: float) -> float | None:
    """The monotonic time `condition` first held (polled every 0.1 s); None if it did not within `within` s."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.1)
    return time.monotonic()


def after(fault: Fault, moment: float | None) -> float | None:
    """Seconds from the fault to `moment` (None: it never came)."""
    return None if moment is None else round(moment - fault.injected, 2)


def member_of(stack: ReplicatedStack, connection: str) -> int | None:
    """The index of the cluster member a connection whose name ends with `connection` is on (`/connz`)."""
    assert stack.cluster is not None
    for index, member in enumerate(stack.cluster.members):
        url = nats_monitoring_url(member.data_dir)
        if url is None:
            continue
        with contextlib.suppress(httpx.HTTPError, ValueError):
            connz = httpx.get(f"{url}/connz", params={"limit": 1024}, timeout=1).json()
            if any((c.get("name") or "").endswith(connection) for c in connz.get("connections") or []):
                return index
    return None


@dataclass
class DelayProxies:
    """`delay_proxy.py` in front of every member, for one replica's connection (`through`); `slow`
    picks the member whose listener holds every byte `delay` seconds."""

    control: Path
    """The proxy's control file (the JSON list of the targets slowed now)."""
    delay: float = 2.0
    proc: subprocess.Popen[bytes] | None = None
    targets: list[str] = field(default_factory=list)

    def through(self, cluster_url: str) -> str:
        """The proxied URL list for `cluster_url` (the proxy starts here, once the cluster is up)."""
        self.targets = [url.removeprefix("nats://") for url in cluster_url.split(",")]
        self.slow(None)
        command = [sys.executable, str(PROXY), "--control", str(self.control), "--delay", str(self.delay)]
        self.proc = subprocess.Popen([*command, *self.targets], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        ports = json.loads(self.proc.stdout.readline())
        return ",".join(f"nats://127.0.0.1:{ports[target]}" for target in self.targets)

    def slow(self, member: int | None) -> None:
        """Slow the member of this index (in the cluster's URL order), or none."""
        self.control.write_text(json.dumps([] if member is None else [self.targets[member]]))

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def _left(stack: ReplicatedStack, index: int | None, within: float) -> float | None:
    """When `WATCHED` was first seen on another member than `index` (None: not within `within` s). Each
    look runs in a thread: a paused member's monitoring port accepts and never answers, and a blocked
    loop would hold the load's answers too (and count as the gateway's gap)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(member_of, stack, WATCHED) not in (None, index):
            return time.monotonic()
        await asyncio.sleep(0.1)
    return None


async def pause_member(stack: ReplicatedStack, seconds: float) -> Fault:
    """SIGSTOP the member `WATCHED` is on for `seconds`; `back` is the SIGCONT."""
    index = await asyncio.to_thread(member_of, stack, WATCHED)
    name = f"nats{(index or 0) + 1}"
    pid = stack.pid(name)
    assert pid is not None, f"{name} is not running"
    fault = Fault(f"nats-server {name} SIGSTOP {seconds:g}s ({WATCHED}'s)", time.monotonic(), replica=0)
    os.kill(pid, signal.SIGSTOP)
    try:
        fault.detail["ingress_left_member_s"] = after(fault, await _left(stack, index, seconds))
        await asyncio.sleep(max(0.0, fault.injected + seconds - time.monotonic()))
    finally:
        os.kill(pid, signal.SIGCONT)
    fault.back = time.monotonic()
    return fault


async def slow_member(stack: ReplicatedStack, proxies: DelayProxies, seconds: float) -> Fault:
    """Every byte between `WATCHED` and its member held `proxies.delay` s for `seconds`; `back` is the end of it."""
    index = await asyncio.to_thread(member_of, stack, WATCHED)
    name = f"nats member n{(index or 0) + 1} {proxies.delay:g}s slower for {seconds:g}s ({WATCHED}'s)"
    fault = Fault(name, time.monotonic(), replica=0)
    proxies.slow(index or 0)
    try:
        fault.detail["ingress_left_member_s"] = after(fault, await _left(stack, index, seconds))
        await asyncio.sleep(max(0.0, fault.injected + seconds - time.monotonic()))
    finally:
        proxies.slow(None)
    fault.back = time.monotonic()
    return fault


def _immutable(store: Path, on: bool) -> None:
    """Every file and folder of the store immutable (or not again). chattr refuses symbolic links (a
    ClickHouse database's table folders are links into `store/`): it goes on past them, so its exit
    status says nothing; a file made in the store's folder is the proof."""
    subprocess.run(["chattr", "-R", "+i" if on else "-i", str(store)], capture_output=True)
    probe = store / "store" / ".writable"
    try:
        probe.touch()
        probe.unlink()
        writable = True
    except PermissionError:
        writable = False
    if writable == on:
        raise RuntimeError(f"could not make {store} {'immutable' if on else 'writable again'} (chattr)")


async def store_away(stack: ReplicatedStack, seconds: float) -> Fault:
    """The audit store refuses writes for `seconds` (its files immutable); `back` is when they are not."""
    store = stack.data_dir / "clickhouse"
    retries = sum(stack.log(n).count("not written, retrying") for n in stack.children("audit-"))
    fault = Fault(f"audit store refuses writes {seconds:g}s", time.monotonic())
    _immutable(store, True)
    try:
        await asyncio.sleep(seconds)
    finally:
        _immutable(store, False)
    fault.back = time.monotonic()
    naks = sum(stack.log(n).count("not written, retrying") for n in stack.children("audit-")) - retries
    fault.detail["audit_batches_retried"] = naks
    return fault
