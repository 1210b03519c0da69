"""Policy's answer to `bastion.policy.list` (`services.policy.visibility`): the same as asking every
pair of the list, remembered per list, grant set and narrowing; a list held under the digest policy
computes, and a malformed list refused."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from libs.common.contracts.grants import GrantSet
from libs.common.contracts.messages import Caller, PairList, VisibleToolsQuery, pairs_digest
from services.policy.filters import Narrowing
from services.policy.visibility import Visibility

pytestmark = pytest.mark.unit

CALLER = Caller(key_id="k", key_name="test")

name = st.text(alphabet='abcd_-/\x00"\\é', min_size=1, max_size=5)
pairs = st.lists(st.tuples(name, name), max_size=30)
patterns = st.lists(st.sampled_from(["*", "a*/*", "*/b*", "ab/*", "a/b", "c*/d"]), max_size=3)
narrow = st.builds(
    Narrowing,
    st.none() | st.lists(st.sampled_from(["*", "a*", "b", "c?"]), max_size=2).map(tuple),
    st.none() | st.lists(st.sampled_from(["b*", "a/*", "d"]), max_size=2).map(tuple),
)


@given(pairs)
def test_a_list_sent_over_the_bus_keeps_its_name_for_any_names(listed):
    # policy names a list it was sent by the pairs it decoded: they must digest as the asker's did
    sent = VisibleToolsQuery(caller=CALLER, tools_digest=PairList.of(listed).digest, tools=listed)
    received = VisibleToolsQuery.model_validate_json(sent.model_dump_json())
    assert received.tools == listed
    assert pairs_digest(received.tools) == sent.tools_digest


@given(listed=pairs, grants=patterns, narrowing=narrow)
def test_the_answer_is_every_pair_both_let_through(listed, grants, narrowing):
    granted = GrantSet.compile(grants)
    expected = [i for i, (s, t) in enumerate(listed) if granted.allows(s, t) and narrowing.allows(s, t)]
    visibility = Visibility()
    digest = visibility.learn(listed)
    assert visibility.allowed(granted, narrowing, digest) == expected
    assert visibility.allowed(granted, narrowing, digest) == expected  # asked again: remembered


def test_an_answer_is_remembered_per_grant_set_and_narrowing():
    visibility = Visibility()
    digest = visibility.learn([("github", "search"), ("github", "delete"), ("jira", "search")])
    everything = GrantSet.compile(["*"])
    first = visibility.allowed(everything, Narrowing(), digest)
    assert first == [0, 1, 2]
    assert visibility.allowed(GrantSet.compile(["*"]), Narrowing(), digest) is first
    assert visibility.allowed(GrantSet.compile(["github/*"]), Narrowing(), digest) == [0, 1]
    assert visibility.allowed(everything, Narrowing(servers=("jira",)), digest) == [2]
    assert visibility.allowed(everything, Narrowing(tools=("search",)), digest) == [0, 2]
    assert visibility.allowed(GrantSet.compile([]), Narrowing(), digest) == []


@pytest.mark.parametrize(
    "tools",
    ['{"a": 1}', "[[1, 2]]", '[["a"]]', '[["a", "b", "c"]]', '["ab"]', '"ab"'],
)
def test_a_malformed_list_is_refused(tools):
    with pytest.raises(ValidationError, match="tools"):
        VisibleToolsQuery.model_validate_json(
            f'{{"caller": {CALLER.model_dump_json()}, "tools_digest": "x", "tools": {tools}}}'
        )


def test_a_list_is_held_under_the_digest_policy_computes():
    visibility = Visibility()
    listed = PairList.of([("github", "search")])
    assert not visibility.knows(listed.digest)
    assert visibility.learn(listed.pairs) == listed.digest
    assert visibility.knows(listed.digest)
    assert PairList.of([("github", "delete")]).digest != listed.digest
