"""A key's `tools/list` is asked of policy once and then served from ingress's cache until ingress
sees a change, because policy says which bucket revisions its answer was decided at
(`VisibleTools.revisions`); a change is listed at once. Real NATS, policy and ingress."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg

from bastion_common import subjects
from bastion_common.kvwatch import BucketWatch
from bastion_common.messages import Caller, KeyRecord, VisibleTools, VisibleToolsQuery, pack_pairs
from bastion_common.nats import connect, kv_bucket
from tests.support.gateway import READONLY_KEY, default_config, key_id, running_gateway
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(nats_url, redis_url, tmp_path):
    async with running_gateway(nats_url, redis_url, tmp_path, default_config()) as gw:
        await gw.wait_for_servers("echo", "notes")
        yield gw


async def test_a_key_s_list_is_asked_of_policy_once_until_something_changes(gateway):
    nc = await connect(gateway.nats_url, "test-list-listener")
    asked: list[Msg] = []

    async def heard(msg: Msg) -> None:
        asked.append(msg)

    try:
        await nc.subscribe(subjects.POLICY_LIST, cb=heard)  # hears every question, answers none
        await nc.flush()
        async with gateway.client(READONLY_KEY) as client:

            async def names() -> set[str]:
                return {tool.name for tool in (await client.list_tools()).tools}

            assert await names() == {"echo__echo", "notes__list_notes"}
            await asyncio.sleep(0.6)  # longer than a possibly stale answer may live
            assert await names() == {"echo__echo", "notes__list_notes"}
            await nc.flush()
            assert len(asked) == 1

            keys = await kv_bucket(nc.jetstream(), subjects.KV_KEYS)
            record = KeyRecord.model_validate_json((await keys.get(key_id(READONLY_KEY))).value)
            grants = {"grants": [*record.grants, "echo/add"]}
            await keys.put(record.id, record.model_copy(update=grants).model_dump_json().encode())

            async def listed_add() -> bool:
                return "echo__add" in await names()

            await poll_until(listed_add, "the new grant in tools/list", within=5)
            assert len(asked) >= 2
    finally:
        await nc.close()


async def test_policy_answers_with_the_revisions_its_view_holds(gateway):
    nc = await connect(gateway.nats_url, "test-list-asker")
    try:
        keys = await kv_bucket(nc.jetstream(), subjects.KV_KEYS)
        record = KeyRecord.model_validate_json((await keys.get(key_id(READONLY_KEY))).value)
        written = await keys.put(record.id, record.model_dump_json().encode())  # a new revision, same key
        caller = gateway.ingress.keys.authenticate(f"Bearer {READONLY_KEY}")
        assert isinstance(caller, Caller)
        query = VisibleToolsQuery(caller=caller, tools=pack_pairs([("echo", "echo"), ("echo", "add")]))

        async def answered_at_least_written() -> VisibleTools | None:
            reply = await nc.request(subjects.POLICY_LIST, query.model_dump_json().encode(), timeout=5)
            answer = VisibleTools.model_validate_json(reply.data)
            return answer if answer.revisions.get(subjects.KV_KEYS, 0) >= written else None

        answer = await poll_until(answered_at_least_written, "policy's view to hold the key's new revision")
        assert answer.allowed == [0]
        assert subjects.KV_POLICY in answer.revisions
    finally:
        await nc.close()


async def test_a_watch_knows_the_bucket_revision_it_has_delivered(nats_url):
    nc = await connect(nats_url, "test-watch-revision")
    try:
        bucket = await kv_bucket(nc.jetstream(), subjects.KV_SESSIONS)
        seen: list[str] = []
        watch = BucketWatch(nc, subjects.KV_SESSIONS, lambda key, *_: seen.append(key), seen.append)
        await watch.start()
        try:
            await bucket.put("a", b"1")
            last = await bucket.put("b", b"2")
            await poll_until(lambda: watch.revision == last, "the watch to deliver both puts", within=5)
            deleted = await bucket.delete("a")
            await poll_until(lambda: watch.revision >= last + 1, "the watch to deliver the delete", within=5)
            assert seen[-3:] == ["a", "b", "a"]
            assert deleted
        finally:
            await watch.stop()
    finally:
        await nc.close()
