"""`BucketWatch.ready` means the view holds what the bucket held when the watch began.

nats-py ends a watch's initial values with a None marker once a consumer-info call says nothing is
pending; under load that call can answer before values already sent have passed through the watch,
so the marker arrives first (seen in CI: a service's view missing the one key the bucket held). The
doubles below stand in for nats-py's client and watcher only (third-party), delivering in that order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from libs.common.bus import kvwatch
from libs.common.bus.kvwatch import BucketWatch
from libs.common.runtime.patience import until

pytestmark = pytest.mark.unit


@dataclass
class Entry:
    key: str
    value: bytes | None
    revision: int
    operation: str | None = None


@dataclass
class LateWatcher:
    """nats-py's watcher as the race delivers: the end marker first, the initial values after it."""

    entries: list[Entry]
    delay: float = 0.2
    stopped: bool = False

    def __aiter__(self) -> AsyncIterator[Entry | None]:
        return self._deliver()

    async def _deliver(self) -> AsyncIterator[Entry | None]:
        yield None
        await asyncio.sleep(self.delay)
        for entry in self.entries:
            yield entry
        await asyncio.Event().wait()  # a live watch: no more changes, and it does not end

    async def stop(self) -> None:
        self.stopped = True


@dataclass
class Bucket:
    last_seq: int
    watcher: LateWatcher

    async def status(self) -> Any:
        return SimpleNamespace(stream_info=SimpleNamespace(state=SimpleNamespace(last_seq=self.last_seq)))

    async def watchall(self) -> LateWatcher:
        return self.watcher


@dataclass
class Client:
    bucket: Bucket
    stats: dict[str, int] = field(default_factory=lambda: {"reconnects": 0})

    def jetstream(self) -> Any:
        async def key_value(_name: str) -> Bucket:
            return self.bucket

        return SimpleNamespace(key_value=key_value)


async def _started(bucket: Bucket) -> tuple[BucketWatch, dict[str, bytes]]:
    seen: dict[str, bytes] = {}
    watch = BucketWatch(Client(bucket), "b", lambda key, value, _rev: seen.update({key: value}), seen.pop)  # type: ignore[arg-type]
    await watch.start()
    return watch, seen


async def test_an_early_end_marker_does_not_make_a_view_without_the_buckets_values_ready() -> None:
    watcher = LateWatcher([Entry("seed", b"by its owner", 1), Entry("other", b"2", 3)])
    watch, seen = await _started(Bucket(last_seq=3, watcher=watcher))
    try:
        assert seen == {"seed": b"by its owner", "other": b"2"}
        assert watch.revision == 3
    finally:
        await watch.stop()
    assert watcher.stopped


async def test_an_empty_bucket_is_ready_at_the_end_marker() -> None:
    watch, seen = await _started(Bucket(last_seq=0, watcher=LateWatcher([], delay=3600)))
    try:
        assert seen == {} and watch.ready.is_set()
    finally:
        await watch.stop()


async def test_a_last_value_that_never_arrives_is_waited_for_a_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # the bucket's last revision expired (max-age) between reading the floor and the watch's start
    monkeypatch.setattr(kvwatch, "LATE_VALUES", 0.3)
    watch, seen = await _started(Bucket(last_seq=9, watcher=LateWatcher([Entry("seed", b"v", 4)], delay=0)))
    try:
        assert seen == {"seed": b"v"} and watch.revision == 4
    finally:
        await watch.stop()


@dataclass
class LosingBucket(Bucket):
    """A bucket whose first watch ends (so the watch is re-created) and whose later `status()` requests
    lose the cancel that reaches them, as nats-py's requests do: turned into a timeout error
    (`as_error`), or dropped when the answer lands at the same moment (Python 3.11's `wait_for`)."""

    as_error: bool = True
    looks: int = 0

    async def status(self) -> Any:
        self.looks += 1
        if self.looks > 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if self.as_error:
                    raise TimeoutError("nats: timeout") from None
        return await super().status()


class EndingWatcher(LateWatcher):
    async def _deliver(self) -> AsyncIterator[Entry | None]:
        for entry in self.entries:
            yield entry
        yield None


@pytest.mark.parametrize("as_error", [True, False], ids=["as-an-error", "as-nothing"])
async def test_a_stop_whose_cancel_a_nats_request_loses_still_ends_the_watch(as_error: bool) -> None:
    """The watch's task was seen 'cancelling' for good, re-creating its watch, and the service's stop
    waited on it until the suite's timeout."""
    bucket = LosingBucket(last_seq=1, watcher=EndingWatcher([Entry("seed", b"v", 1)]), as_error=as_error)
    watch, seen = await _started(bucket)
    assert seen == {"seed": b"v"}
    await until(lambda: bucket.looks > 1)  # the re-created watch waits in its request
    stopping = asyncio.ensure_future(watch.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert done, "the watch went on after its stop"
