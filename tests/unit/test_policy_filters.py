"""The filter algebra: grants ∪ groups, ∩ header narrowing, wildcards; property-based."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.common.contracts.grants import GrantSet
from services.policy.filters import Narrowing, narrowing, union_of_grants

pytestmark = pytest.mark.unit

name = st.text(alphabet="abcdefgh_-", min_size=1, max_size=6)
pair = st.tuples(name, name)
pattern = st.one_of(
    st.just("*"),
    st.builds(lambda s, t: f"{s}/{t}", name | st.just("*"), name | st.just("*")),
    st.builds(lambda s, t: f"{s}/{t}*", name, st.text(alphabet="abc", max_size=2)),
)
patterns = st.lists(pattern, max_size=5)
catalog = st.lists(pair, max_size=30)


OPEN = Narrowing()


def _allowed(grants: GrantSet, tools, narrow: Narrowing = OPEN) -> set:
    return {(s, t) for s, t in tools if grants.allows(s, t) and narrow.allows(s, t)}


@given(own=patterns, groups=st.lists(patterns, max_size=4), tools=catalog)
def test_a_request_sees_the_union_of_its_groups(own, groups, tools):
    union = union_of_grants(own, groups)
    expected = set().union(*(_allowed(GrantSet.compile(p), tools) for p in [own, *groups]))
    assert _allowed(union, tools) == expected


@given(groups=st.lists(patterns, max_size=4), tools=catalog)
def test_union_ignores_order_and_duplicates(groups, tools):
    forward = union_of_grants([], groups)
    backward = union_of_grants([], [*reversed(groups), *groups])
    assert _allowed(forward, tools) == _allowed(backward, tools)


@given(
    grants=patterns,
    servers=st.none() | st.lists(name | st.just("*"), max_size=3),
    only=st.none() | st.lists(pattern | name, max_size=3),
    tools=catalog,
)
def test_headers_only_narrow(grants, servers, only, tools):
    compiled = GrantSet.compile(grants)
    narrow = narrowing(tuple(servers) if servers is not None else None, tuple(only) if only is not None else None)
    with_headers = _allowed(compiled, tools, narrow)
    assert with_headers <= _allowed(compiled, tools)  # never widens
    if servers is None and only is None:
        assert with_headers == _allowed(compiled, tools)


@given(a=patterns, b=patterns, tools=catalog)
def test_layers_intersect(a, b, tools):
    # the server-exposure layer is a catalog filter: model it as one more grant set
    exposure, grants = GrantSet.compile(a), GrantSet.compile(b)
    both = {(s, t) for s, t in tools if exposure.allows(s, t) and grants.allows(s, t)}
    assert both == _allowed(exposure, tools) & _allowed(grants, tools)


def test_header_items_without_a_slash_name_a_tool_on_any_server():
    narrow = narrowing(None, ("search",))
    assert narrow.allows("github", "search") and narrow.allows("gitlab", "search")
    assert not narrow.allows("github", "create_issue")


def test_an_empty_header_narrows_to_nothing():
    assert not narrowing((), None).allows("github", "x")
    assert not narrowing(None, ()).allows("github", "x")


def test_server_narrowing_uses_wildcards():
    narrow = narrowing(("git*",), None)
    assert narrow.allows("github", "x") and narrow.allows("gitlab", "x") and not narrow.allows("notes", "x")
