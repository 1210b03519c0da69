"""Listing a KV bucket's keys on a real nats-server (every key, however many, and only those asked
for) and reading their entries several at a time.

The server answers a stream's subjects 100,000 a page; nats-py's `stream_info` reads the first page
only, so a bigger bucket (an OAuth store with a token per user and server, a busy approvals bucket)
lost keys from every listing, and a key rotation's re-seal left the rest under the old key."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from libs.common.bus.nats import kv_entries, kv_keys, kv_names
from libs.common.contracts import subjects

pytestmark = pytest.mark.integration

PAGE = 100_000
"""What nats-server sends of a stream's subjects at once (`JSMaxSubjectDetails`)."""


async def test_a_bucket_past_one_page_lists_every_key(nc: NATS) -> None:
    kv = await nc.jetstream().create_key_value(bucket="many")
    count = PAGE + 75
    for i in range(count):  # core publishes: a KV put each, without waiting for 100,075 acks
        await nc.publish(f"{subjects.KV_ROOT}.many.user.{i:06d}", b"v")
    await kv.put("other.one", b"v")  # acked after the others: they are all stored by now
    listed = await kv_names(nc.jetstream(), "many")
    assert len(listed) == count + 1 and listed[0] == "other.one" and listed[-1] == f"user.{count - 1:06d}"
    assert len(await kv_keys(kv, under="user.")) == count
    assert await kv_keys(kv, under="other.") == ["other.one"]


async def test_a_deleted_key_keeps_its_name_and_a_missing_bucket_is_not_found(nc: NATS) -> None:
    kv = await nc.jetstream().create_key_value(bucket="few")
    assert await kv_keys(kv) == []
    await kv.put("a", b"1")
    await kv.put("b", b"2")
    await kv.delete("b")  # its delete marker is the subject's last message: callers' `get` skips it
    assert await kv_keys(kv) == ["a", "b"]
    with pytest.raises(NotFoundError):
        await kv_names(nc.jetstream(), "never-made")


async def test_entries_are_read_in_the_order_asked_leaving_out_deleted_ones(nc: NATS) -> None:
    kv = await nc.jetstream().create_key_value(bucket="read")
    for i in range(300):  # more than the reads kept in flight: every reader takes several
        await kv.put(f"k.{i:03d}", str(i).encode())
    await kv.delete("k.007")
    names = [*reversed(await kv_keys(kv)), "k.never-written"]
    entries = await kv_entries(kv, names)
    assert list(entries) == [n for n in names if n not in ("k.007", "k.never-written")]
    assert all(entry.value == str(int(name[2:])).encode() for name, entry in entries.items())
    assert await kv_entries(kv, []) == {}
