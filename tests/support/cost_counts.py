"""Counts of what `tools/call`s cost that do not depend on the machine's speed, for the cost budget
(`tests/integration/test_cost_budget.py`, docs/benchmarks.md "The cost budget").

- `CallTap`: the NATS messages and bytes of the calls themselves, seen by a subscriber of their subjects
  on nats-server: what they publish (`bastion.>`: requests, audit events; `$KV.>`: key-value writes)
  and the replies to that, matched by reply subject. Traffic that time drives is not theirs and is left
  out: JetStream's heartbeats and deliveries, the audit writer's pull requests, the replies to those.
- `profile_counts`: what a deterministic profiler (cProfile) saw on the gateway's event loop thread:
  Python calls per service, JSON encodes and decodes, messages handed over on the in-process lane, and
  the syscalls the loop makes through Python's
  socket, `os` and `epoll` functions (each such call is one syscall), less the work of `TIMED_ROOTS`.
- `Caller`: the MCP client and the tap on a thread and event loop of their own, so that nothing they do
  lands on the profiled thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import cProfile
import pstats
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from mcp import Client
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs.common.bus.nats import connect
from libs.common.contracts.subjects import INBOX, KV_ROOT, REPLY_TO

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
LIBS = ROOT / "libs"
TESTS = ROOT / "tests"

T = TypeVar("T")
Func = tuple[str, int, str]
Stats = dict[Func, tuple[int, int, float, float, dict[Func, tuple[int, int, float, float]]]]
"""pstats' table: function -> (primitive calls, calls, own time, cumulative time, callers), and per caller
(its calls of the function, primitive calls, own time, cumulative time)."""

ENCODES = ("<orjson.dumps>", "json/__init__.py:dumps", "pydantic/main.py:model_dump_json")
DECODES = ("<orjson.loads>", "json/__init__.py:loads", "pydantic/main.py:model_validate_json")
"""The profiler's names of the JSON encoders and decoders (orjson's C functions show as `<orjson.dumps>`;
json's and pydantic's as Python functions in their files)."""

SYSCALLS = {
    "syscalls_read": ("<method 'recv' of '_socket.socket' objects>", "<method 'recv_into' of '_socket.socket' objects>",
                      "<built-in method posix.read>"),
    "syscalls_write": ("<method 'send' of '_socket.socket' objects>", "<method 'sendmsg' of '_socket.socket' objects>",
                       "<built-in method posix.write>"),
    "wakeups": ("<method 'poll' of 'select.epoll' objects>",),
    "syscalls_getpid": ("<built-in method _asyncio.get_running_loop>", "<built-in method _asyncio._get_running_loop>",
                        "<built-in method _asyncio.get_event_loop>"),
}  # fmt: skip
"""Count -> the C functions whose each call is one syscall on the loop's thread: socket and pipe reads and
writes (asyncio's transports, the stdio upstream's pipes), the selector's waits (the loop's wake-ups), and
the event-loop lookups, each a `getpid` on CPython 3.11 (asked from Python: `asyncio.current_task()`,
`create_task`, `sleep`, ...; those C makes itself, an `asyncio.Future()` without a loop, are not seen)."""

LANE = "bus/local_lane.py:_hand_over"
"""Each call of it is a message handed over in memory between co-located services (`libs.common.bus.local_lane`):
a message nats-server never sees."""

PUBLISHED = ("bastion.>", f"{KV_ROOT}.>")
"""What the calls publish: requests, events, key-value writes (JetStream's API is left out: the audit
writer's pull requests follow its flush timer, and a watch waiting for a bucket asks every half second)."""


class CallTap:
    """Counts the messages and bytes on nats-server that calls cause (see the module's doc)."""

    def __init__(self) -> None:
        self._published: list[Msg] = []
        self._inbox: list[Msg] = []
        self._subscriptions: list[Subscription] = []
        self._nc: NATS | None = None

    async def _on_published(self, msg: Msg) -> None:
        self._published.append(msg)

    async def _on_inbox(self, msg: Msg) -> None:
        self._inbox.append(msg)

    def take(self) -> Counter[str]:
        """The counts since the last `take`, of messages the tap has handled (`settle` first): what was
        published, and the replies to it (the two arrive on two subscriptions, in either order)."""
        replies = {r for msg in self._published for r in (msg.reply, (msg.headers or {}).get(REPLY_TO)) if r}
        # a reply to something timed (a heartbeat's KV write, a pull request) or a JetStream delivery is not
        counted = self._published + [msg for msg in self._inbox if msg.subject in replies]
        self._published, self._inbox = [], []
        headers = sum(len(k) + len(v) + 4 for msg in counted for k, v in (msg.headers or {}).items())
        return Counter({"nats_msgs": len(counted), "nats_bytes": sum(len(msg.data) for msg in counted) + headers})

    async def settle(self) -> None:
        """Returns once every message nats-server sent the tap before now has been handled: the server's
        answer to a flush comes after them, and each subscription's queue is then worked off."""
        assert self._nc is not None
        await self._nc.flush()
        for sub in self._subscriptions:
            await sub._pending_queue.join()

    @contextlib.asynccontextmanager
    async def subscribed(self, nats_url: str) -> AsyncIterator[CallTap]:
        self._nc = nc = await connect(nats_url, "cost-tap")
        try:
            self._subscriptions = [await nc.subscribe(subject, cb=self._on_published) for subject in PUBLISHED]
            self._subscriptions.append(await nc.subscribe(f"{INBOX}.>", cb=self._on_inbox))
            await nc.flush()
            yield self
        finally:
            await nc.close()


TIMED_ROOTS = (
    str(LIBS / "common" / "bus" / "kvwatch.py"),  # each watch looks at its connection 4 times a second
    "uvicorn/server.py:main_loop",  # the HTTP server's tick, 10 times a second
    "js/client.py:activity_check",  # each KV watch's check for missed heartbeats
    "audit/writer.py:fetch",  # the audit writer's pulls: paced by its flush timer and the events' arrival
)
"""Work that time drives and no setting stops: these functions, and what they call, are not counted."""


def area(filename: str) -> str:
    """Who a profiled function belongs to: a service (`ingress`, `policy`, ...), `libs`, `nats_client`
    (nats-py), `packages` (the rest of the Python code installed beside ours: the MCP SDK, the HTTP
    server, pydantic), `stdlib` (asyncio above all) or `builtins` (C functions)."""
    path = Path(filename)
    if filename == "~":
        return "builtins"
    if path.is_relative_to(SERVICES):
        return path.relative_to(SERVICES).parts[0]
    if path.is_relative_to(LIBS):
        return "libs"
    if path.is_relative_to(TESTS):
        return "tests"  # the test's own waits, not counted
    if "site-packages" not in path.parts:
        return "stdlib"
    return "nats_client" if path.parts[path.parts.index("site-packages") + 1] == "nats" else "packages"


def label(func: Func) -> str:
    filename, _, name = func
    if filename == "~":
        return name
    return f"{'/'.join(Path(filename).parts[-2:])}:{name}"


def not_counted(func: Func) -> bool:
    """Whether a function, with what it calls, is left out: one of `TIMED_ROOTS`, or the test's own."""
    return func[0] in TIMED_ROOTS or label(func) in TIMED_ROOTS or area(func[0]) == "tests"


def _timed(stats: Stats) -> dict[Func, float]:
    """Per function, how many of its calls came from `TIMED_ROOTS` or the test's own code (those wholly),
    through its callers: a caller's calls to it are split in the share the caller itself made for them."""
    roots = {f for f in stats if not_counted(f)}
    timed = {f: float(stats[f][1]) for f in roots}
    for _ in range(12):  # chains from a timer are shallow: the shares settle within a few passes
        for func, (_, calls, _, _, callers) in stats.items():
            if func not in roots:
                share = sum(edge[0] * timed.get(c, 0.0) / stats[c][1] for c, edge in callers.items() if c in stats)
                timed[func] = min(float(calls), share)
    return timed


def profile_counts(profile: cProfile.Profile) -> Counter[str]:
    """Python calls per area (`python_calls_<area>`), JSON encodes and decodes, syscalls; calls that
    `TIMED_ROOTS` made are left out."""
    stats: Stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    timed = _timed(stats)
    counts: Counter[str] = Counter()
    for func, (_, all_calls, *_rest) in stats.items():
        calls = round(all_calls - timed.get(func, 0.0))
        if (kind := area(func[0])) != "tests":
            counts[f"python_calls_{kind}"] += calls
        name = label(func)
        counts["json_encodes"] += calls if name in ENCODES else 0
        counts["json_decodes"] += calls if name in DECODES else 0
        counts["lane_msgs"] += calls if name == LANE else 0
        for count, names in SYSCALLS.items():
            counts[count] += calls if name in names else 0
    return counts


class Caller:
    """One task on a thread of its own that holds an MCP client and a `CallTap` open and runs jobs on
    them, so the profiled event loop sees only the gateway's side of each call."""

    def __init__(self, open_client: Callable[[], contextlib.AbstractAsyncContextManager[Client]], nats_url: str):
        self._open_client, self._nats_url = open_client, nats_url
        self.tap = CallTap()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cost-caller", daemon=True)
        self._jobs: asyncio.Queue[tuple[Callable[[Client], Awaitable[Any]], concurrent.futures.Future[Any]] | None]

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        self._jobs = asyncio.Queue()
        try:
            async with self.tap.subscribed(self._nats_url), self._open_client() as client:
                ready.set_result(None)
                while (job := await self._jobs.get()) is not None:
                    work, done = job
                    try:
                        done.set_result(await work(client))
                    except Exception as error:
                        done.set_exception(error)
        except Exception as error:
            if not ready.done():
                ready.set_exception(error)
            raise

    async def settle(self) -> None:
        """The tap has counted every message sent before now (`CallTap.settle`), on the caller's thread."""
        await self.run(lambda _: self.tap.settle())

    async def run(self, work: Callable[[Client], Awaitable[T]]) -> T:
        """`work(client)` run on the caller's thread; returns its result."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._jobs.put_nowait, (work, done))
        return await asyncio.wrap_future(done)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Caller]:
        self._thread.start()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        served = asyncio.run_coroutine_threadsafe(self._serve(ready), self._loop)
        try:
            await asyncio.wrap_future(ready)
            yield self
        finally:
            with contextlib.suppress(AttributeError):
                self._loop.call_soon_threadsafe(self._jobs.put_nowait, None)
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(served)
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 30)
            self._loop.close()


@contextlib.contextmanager
def profiled() -> Iterator[cProfile.Profile]:
    """A deterministic profile of this thread (the gateway's event loop) while the block runs."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield profile
    finally:
        profile.disable()
