import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.common.contracts.grants import GrantSet

pytestmark = pytest.mark.unit

names = st.text(alphabet=st.characters(blacklist_characters="\x00*?[]/"), min_size=1, max_size=20)


def test_no_grants_deny_everything():
    assert not GrantSet.compile([]).allows("echo", "echo")


@pytest.mark.parametrize(
    ("grant", "server", "tool", "allowed"),
    [
        ("*", "github", "create_issue", True),
        ("github/*", "github", "create_issue", True),
        ("github/*", "gitlab", "create_issue", False),
        ("*/read_*", "fs", "read_file", True),
        ("*/read_*", "fs", "write_file", False),
        ("github/get_me", "github", "get_me", True),
        ("github/get_me", "github", "get_me_not", False),
        ("git*/list_?", "gitlab", "list_a", True),
        # a '/' inside a tool name never lets a server pattern spill into the tool part
        ("a/*", "a/b", "c", False),
        ("*/x", "srv", "a/x", False),
        ("*/a/x", "srv", "a/x", True),
    ],
)
def test_wildcards(grant, server, tool, allowed):
    assert GrantSet.compile([grant]).allows(server, tool) is allowed


def test_grants_are_a_union_and_deduplicated():
    grants = GrantSet.compile(["notes/*", "echo/echo", "notes/*", ""])
    assert grants.patterns == ("notes/*", "echo/echo")
    assert grants.allows("notes", "add_note") and grants.allows("echo", "echo")
    assert not grants.allows("echo", "add")


@given(server=names, tool=names)
def test_exact_grant_matches_only_itself(server, tool):
    grants = GrantSet.compile([f"{server}/{tool}"])
    assert grants.allows(server, tool)
    assert not grants.allows(server + "x", tool)
    assert not grants.allows(server, tool + "x")


@given(server=names, tool=names, other=st.lists(st.tuples(names, names), max_size=5))
def test_union_is_monotonic(server, tool, other):
    base = [f"{s}/{t}" for s, t in other]
    if GrantSet.compile(base).allows(server, tool):
        assert GrantSet.compile([*base, "x/y"]).allows(server, tool)
    assert GrantSet.compile([*base, f"{server}/*"]).allows(server, tool)


def test_remembered_verdicts_stay_the_verdicts_of_the_patterns() -> None:
    grants = GrantSet.compile(["github/get_*", "notes/*"])
    names = [("github", f"get_{i}") for i in range(20_000)] + [("github", "delete_repo"), ("notes", "x")]
    first = [grants.allows(server, tool) for server, tool in names]
    again = [grants.allows(server, tool) for server, tool in names]  # past the remembered bound too
    assert first == again == [True] * 20_000 + [False, True]
