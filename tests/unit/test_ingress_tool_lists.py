"""The per-key `tools/list` cache (`services.ingress.catalog.tool_lists`): answers only for the revisions it
was computed at and while young; an encoded array is shared by every key allowed the same tools at
the same catalog revision, and an aged answer policy confirms is reused, not encoded again."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest

from services.ingress.catalog.tool_lists import ListCache, answer_holds

pytestmark = pytest.mark.unit


@dataclass
class Tool:
    fragment: orjson.Fragment


TOOLS = [Tool(orjson.Fragment(orjson.dumps({"name": f"t{i}"}))) for i in range(4)]


def test_an_answer_is_served_at_its_revisions_while_young() -> None:
    cache = ListCache(ttl=60)
    encoded = cache.put("key", (1, 1, 1), [0, 2], TOOLS)
    assert orjson.loads(orjson.dumps(encoded)) == [{"name": "t0"}, {"name": "t2"}]
    assert cache.get("key", (1, 1, 1)) is encoded
    assert cache.get("key", (2, 1, 1)) is None  # the catalog changed
    assert cache.get("other", (1, 1, 1)) is None


def test_an_aged_answer_is_asked_again_and_reused_only_when_policy_allows_the_same() -> None:
    cache = ListCache(ttl=-1.0)  # every entry is past its age as soon as it is kept
    first = cache.put("key", (1, 1, 1), [0, 2], TOOLS)
    assert cache.get("key", (1, 1, 1)) is None
    assert cache.put("key", (1, 1, 1), [0, 2], TOOLS) is first
    narrower = cache.put("key", (1, 1, 1), [2], TOOLS)
    assert orjson.loads(orjson.dumps(narrower)) == [{"name": "t2"}]
    assert cache.put("key", (2, 1, 1), [2], TOOLS) is not narrower  # the catalog changed: encoded anew


def test_keys_allowed_the_same_tools_share_one_array() -> None:
    cache = ListCache(ttl=60)
    first = cache.put("alice", (1, 1, 1), [0, 1], TOOLS)
    assert cache.put("bob", (1, 7, 1), [0, 1], TOOLS) is first  # another key, another key revision
    assert cache.get("bob", (1, 7, 1)) is first
    other = cache.put("carol", (1, 1, 1), [1], TOOLS)
    assert other is not first and orjson.loads(orjson.dumps(other)) == [{"name": "t1"}]


def test_an_entry_whose_array_was_dropped_is_computed_again() -> None:
    big = [Tool(orjson.Fragment(orjson.dumps({"name": "x" * 3000, "n": i}))) for i in range(5)]
    cache = ListCache(ttl=60, max_bytes=14_000)  # room for four one-tool arrays (~3.3 kB each)
    cache.put("a", (1, 1, 1), [0], big)
    for n in range(1, 5):
        cache.put(f"k{n}", (1, 1, 1), [n], big)
    assert cache.get("a", (1, 1, 1)) is None  # its array was the least recently used
    assert all(cache.get(f"k{n}", (1, 1, 1)) is not None for n in range(1, 5))


def test_an_answer_not_to_keep_is_not_kept() -> None:
    cache = ListCache(ttl=60)
    cache.put("key", (1, 1, 1), [1], TOOLS, keep=False)
    assert cache.get("key", (1, 1, 1)) is None


def test_an_answer_policy_gave_from_a_view_as_new_as_ours_outlives_the_ttl() -> None:
    cache = ListCache(ttl=-1.0)
    lasting = cache.put("key", (1, 1, 1), [0], TOOLS, lasting=True)
    assert cache.get("key", (1, 1, 1)) is lasting
    assert cache.get("key", (1, 1, 2)) is None  # until this replica sees a change
    cache.put("other", (1, 1, 1), [0], TOOLS, lasting=False)
    assert cache.get("other", (1, 1, 1)) is None


def test_an_answer_holds_only_when_policy_had_applied_every_revision_we_had_seen() -> None:
    seen = {"bastion_keys": 10, "bastion_policy": 4}
    assert answer_holds(seen, {"bastion_keys": 10, "bastion_policy": 4, "bastion_servers": 2})
    assert answer_holds(seen, {"bastion_keys": 12, "bastion_policy": 9})  # policy is ahead: we will see it
    assert not answer_holds(seen, {"bastion_keys": 9, "bastion_policy": 4})  # it had not seen a key change
    assert not answer_holds(seen, {"bastion_keys": 10})  # nor said what it had of the policy bucket
    assert not answer_holds({}, {"bastion_keys": 10})  # we track nothing: we cannot tell
