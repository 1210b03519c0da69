"""Policy's answer to `bastion.policy.list` (`bastion_policy.visibility`): the same as asking every
pair of the list, remembered per list, grant set and narrowing; a list held under the digest policy
computes, and a malformed list refused."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion_common.messages import PackedPairs, pack_pairs, unpack_pairs
from bastion_policy.filters import Narrowing
from bastion_policy.grants import GrantSet
from bastion_policy.visibility import Visibility

pytestmark = pytest.mark.unit

name = st.text(alphabet='abcd_-/\x00"\\é', min_size=1, max_size=5)
pairs = st.lists(st.tuples(name, name), max_size=30)
patterns = st.lists(st.sampled_from(["*", "a*/*", "*/b*", "ab/*", "a/b", "c*/d"]), max_size=3)
narrow = st.builds(
    Narrowing,
    st.none() | st.lists(st.sampled_from(["*", "a*", "b", "c?"]), max_size=2).map(tuple),
    st.none() | st.lists(st.sampled_from(["b*", "a/*", "d"]), max_size=2).map(tuple),
)


@given(pairs)
def test_packing_round_trips_any_names(listed):
    assert unpack_pairs(pack_pairs(listed)) == listed


@given(listed=pairs, grants=patterns, narrowing=narrow)
def test_the_answer_is_every_pair_both_let_through(listed, grants, narrowing):
    granted = GrantSet.compile(grants)
    expected = [i for i, (s, t) in enumerate(listed) if granted.allows(s, t) and narrowing.allows(s, t)]
    visibility = Visibility()
    digest = visibility.learn(pack_pairs(listed))
    assert visibility.allowed(granted, narrowing, digest) == expected
    assert visibility.allowed(granted, narrowing, digest) == expected  # asked again: remembered


def test_an_answer_is_remembered_per_grant_set_and_narrowing():
    visibility = Visibility()
    packed = visibility.learn(pack_pairs([("github", "search"), ("github", "delete"), ("jira", "search")]))
    everything = GrantSet.compile(["*"])
    first = visibility.allowed(everything, Narrowing(), packed)
    assert first == [0, 1, 2]
    assert visibility.allowed(GrantSet.compile(["*"]), Narrowing(), packed) is first
    assert visibility.allowed(GrantSet.compile(["github/*"]), Narrowing(), packed) == [0, 1]
    assert visibility.allowed(everything, Narrowing(servers=("jira",)), packed) == [2]
    assert visibility.allowed(everything, Narrowing(tools=("search",)), packed) == [0, 2]
    assert visibility.allowed(GrantSet.compile([]), Narrowing(), packed) == []


@pytest.mark.parametrize(
    "packed",
    ['{"a": 1}', "[[1, 2]]", '[["a"]]', '[["a", "b", "c"]]', "[[", '["ab"]', ""],
)
def test_a_malformed_list_is_refused(packed):
    visibility = Visibility()
    with pytest.raises(ValueError, match="tools"):
        visibility.learn(packed)
    assert not visibility.knows(PackedPairs(packed, "").digest)


def test_a_list_is_held_under_the_digest_policy_computes():
    visibility = Visibility()
    listed = PackedPairs.of([("github", "search")])
    assert not visibility.knows(listed.digest)
    assert visibility.learn(listed.packed) == listed.digest
    assert visibility.knows(listed.digest)
    assert PackedPairs.of([("github", "delete")]).digest != listed.digest
