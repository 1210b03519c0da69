"""A key's `tools/list` is asked of policy once and then served from ingress's cache until ingress
sees a change, because policy says which bucket revisions its answer was decided at
(`VisibleTools.revisions`); a change is listed at once. The question names its list by digest, and
the list crosses the bus only for a policy replica that does not hold it. Real NATS, policy and
ingress."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg

from libs.common.bus.kvwatch import BucketWatch
from libs.common.bus.nats import connect, kv_bucket
from libs.common.bus.visible import ask_visible
from libs.common.contracts import subjects
from libs.common.contracts.keys import key_id
from libs.common.contracts.messages import Caller, KeyRecord, PairList, VisibleTools, VisibleToolsQuery
from tests.support.gateway import READONLY_KEY, default_config, gateway_on_own_servers
from tests.support.polling import poll_until
from tests.support.stores import declared

pytestmark = pytest.mark.integration


LISTER_KEY = "bk_test_list_revisions_key_00"
"""The readonly key's grants, under a key of its own: the test that grants it more changes no key
another test of the module asks about."""


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory):
    raw = default_config()
    raw["keys"].append({"name": "lister", "key": LISTER_KEY, "tools": ["notes/list_notes", "echo/echo"]})
    async with gateway_on_own_servers(tmp_path_factory.mktemp("list-revisions"), raw) as gw:
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
        async with gateway.client(LISTER_KEY) as client:

            async def names() -> set[str]:
                return {tool.name for tool in (await client.list_tools()).tools}

            assert await names() == {"echo__echo", "notes__list_notes"}
            await nc.flush()
            first = len(asked)  # one question, or two when policy had to be sent the catalog's list
            await asyncio.sleep(0.6)  # longer than a possibly stale answer may live
            assert await names() == {"echo__echo", "notes__list_notes"}
            await nc.flush()
            assert first in (1, 2) and len(asked) == first

            keys = await kv_bucket(nc.jetstream(), subjects.KV_KEYS)
            record = KeyRecord.model_validate_json((await keys.get(key_id(LISTER_KEY))).value)
            grants = {"grants": [*record.grants, "echo/add"]}
            await keys.put(record.id, record.model_copy(update=grants).model_dump_json().encode())

            async def listed_add() -> bool:
                return "echo__add" in await names()

            await poll_until(listed_add, "the new grant in tools/list", within=5)
            assert len(asked) > first
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
        listed = PairList.of([("echo", "echo"), ("echo", "add")])
        query = VisibleToolsQuery(caller=caller, tools_digest=listed.digest, tools=listed.pairs)

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
        await declared(nc.jetstream(), subjects.KV_SESSIONS)  # as ingress would
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


async def test_a_list_crosses_the_bus_only_when_policy_does_not_hold_it(gateway):
    nc = await connect(gateway.nats_url, "test-list-digest")
    questions: list[VisibleToolsQuery] = []

    async def heard(msg: Msg) -> None:
        questions.append(VisibleToolsQuery.model_validate_json(msg.data))

    try:
        await nc.subscribe(subjects.POLICY_LIST, cb=heard)
        await nc.flush()
        caller = gateway.ingress.keys.authenticate(f"Bearer {READONLY_KEY}")
        assert isinstance(caller, Caller)
        listed = PairList.of([("notes", "list_notes"), ("echo", "add"), ("echo", "echo"), ("fresh", "x")])

        first = await ask_visible(nc, caller, listed, None, None, timeout=5)
        assert (first.allowed, first.unknown_list) == ([0, 2], False)
        again = await ask_visible(nc, caller, listed, ["echo"], None, timeout=5)
        assert again.allowed == [2]
        await nc.flush()
        assert [q.tools is not None for q in questions] == [False, True, False]  # named, sent once, named
        assert {q.tools_digest for q in questions} == {listed.digest}

        # a digest that does not name what is sent is never believed: the list is held under its own
        lying = VisibleToolsQuery(caller=caller, tools_digest="f" * 32, tools=[("echo", "add")])
        reply = await nc.request(subjects.POLICY_LIST, lying.model_dump_json().encode(), timeout=5)
        assert VisibleTools.model_validate_json(reply.data).allowed == []
        named = lying.model_copy(update={"tools": None})
        reply = await nc.request(subjects.POLICY_LIST, named.model_dump_json().encode(), timeout=5)
        assert VisibleTools.model_validate_json(reply.data).unknown_list
    finally:
        await nc.close()
