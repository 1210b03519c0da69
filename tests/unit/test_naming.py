"""Namespaced tool names: proven on the 516 real tool schemas, then by properties and crafted collisions."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.contracts.naming import (
    MAX_NAME_LENGTH,
    SEPARATOR,
    VALID_NAME,
    assign_names,
    namespaced,
    server_slug,
)

pytestmark = pytest.mark.unit

Pair = tuple[str, str]
HASHED = re.compile(r"^(?P<head>[A-Za-z0-9_-]+)_(?P<hex>[0-9a-f]+)$")


def _load_pairs(schemas_dir: Path) -> list[Pair]:
    pairs: list[Pair] = []
    for path in sorted(schemas_dir.glob("*.json")):
        document = json.loads(path.read_text())
        pairs.extend((path.stem, tool["name"]) for tool in document["tools"])
    return pairs


@pytest.fixture(scope="module")
def real_pairs(tool_schemas_dir: Path) -> list[Pair]:
    return _load_pairs(tool_schemas_dir)


@pytest.fixture(scope="module")
def real_names(real_pairs: list[Pair]) -> dict[str, Pair]:
    return assign_names(real_pairs)


def _assert_catalog(names: dict[str, Pair], pairs: list[Pair] | set[Pair]) -> None:
    """Injective, complete, valid, short: every pair has exactly one name of its own."""
    assert sorted(names.values()) == sorted(set(pairs))
    for name in names:
        assert VALID_NAME.match(name), name
        assert len(name) <= MAX_NAME_LENGTH, name


def _suffix_len(name: str) -> int:
    match = HASHED.match(name)
    assert match, name
    return len(match["hex"])


# --------------------------------------------------------------------------- the real schemas


def test_fixture_holds_16_servers_and_516_tools(real_pairs: list[Pair]) -> None:
    assert len(real_pairs) == 516
    assert len({server for server, _ in real_pairs}) == 16
    assert {"github-legacy", "gitlab-zereight", "slack-legacy"} <= {server for server, _ in real_pairs}
    assert len(set(real_pairs)) == 516, "no tool is listed twice on one server"


def test_fixture_has_tool_names_on_several_servers_and_they_get_distinct_names(
    real_pairs: list[Pair], real_names: dict[str, Pair]
) -> None:
    servers_by_tool: dict[str, set[str]] = {}
    for server, tool in real_pairs:
        servers_by_tool.setdefault(tool, set()).add(server)
    shared = {tool: servers for tool, servers in servers_by_tool.items() if len(servers) > 1}
    assert len(shared) >= 10
    assert {"github-legacy", "gitlab-zereight"} <= shared["create_issue"]
    assert len(shared["list_tables"]) >= 2

    name_of = {pair: name for name, pair in real_names.items()}
    for tool, servers in shared.items():
        names = {name_of[(server, tool)] for server in servers}
        assert len(names) == len(servers), tool


def test_real_catalog_is_unique_valid_short_and_maps_back(real_pairs: list[Pair], real_names: dict[str, Pair]) -> None:
    assert len(real_names) == 516
    _assert_catalog(real_names, real_pairs)
    for name, (server, tool) in real_names.items():
        assert real_names[name] == (server, tool)
        assert namespaced(server, tool) == name  # no collision needed resolving


def test_real_clean_names_are_readable_server__tool(real_names: dict[str, Pair]) -> None:
    for name, (server, tool) in real_names.items():
        assert name == f"{server}{SEPARATOR}{tool}"
        assert name.split(SEPARATOR, 1) == [server, tool]
    assert real_names["github-legacy__create_issue"] == ("github-legacy", "create_issue")
    assert real_names["gitlab-zereight__create_issue"] == ("gitlab-zereight", "create_issue")


def test_real_catalog_is_stable_across_input_orderings(real_pairs: list[Pair], real_names: dict[str, Pair]) -> None:
    rng = random.Random(516)
    for _ in range(5):
        shuffled = real_pairs[:]
        rng.shuffle(shuffled)
        assert assign_names(shuffled) == real_names
    assert assign_names(reversed(real_pairs)) == real_names
    assert assign_names(real_pairs + real_pairs[:40]) == real_names  # duplicates are one pair
    assert assign_names(iter(set(real_pairs))) == real_names


@pytest.mark.parametrize(
    "server",
    [
        "gitlab zereight (self-hosted, eu)",  # unclean: spaces, parentheses, comma
        "gitlab.zereight/eu",  # dots and slashes
        "gitlab-zereight-self-managed-production-cluster-eu-west",  # clean, but every name exceeds 64
        "gitlab_",  # trailing `_`
        "gitlab__zereight",  # `__` inside the server name
    ],
)
def test_real_tools_under_long_or_unclean_servers_are_hashed_and_fit(real_pairs: list[Pair], server: str) -> None:
    gitlab = [pair for pair in real_pairs if pair[0] == "gitlab-zereight"]
    renamed = [(server, tool) for _, tool in gitlab]
    names = assign_names(renamed + gitlab)
    _assert_catalog(names, renamed + gitlab)
    slug = server_slug(server)
    hashed = 0
    for name, (owner, tool) in names.items():
        if owner == "gitlab-zereight":
            assert name == f"gitlab-zereight__{tool}"
            continue
        readable = f"{slug}{SEPARATOR}{tool}"
        if slug == server and len(readable) <= MAX_NAME_LENGTH:
            assert name == readable  # a clean server's short names stay readable
            continue
        hashed += 1
        assert _suffix_len(name) == 10
        head = HASHED.match(name)["head"]  # type: ignore[index]
        assert readable.startswith(head), "the hashed name keeps a readable prefix"
        # cut only as much as the 11-character `_<hash>` needs (plus a dangling `__` at most)
        assert len(head) >= min(len(readable), MAX_NAME_LENGTH - 11) - 2
    assert hashed >= len(gitlab) // 2


def test_names_are_stable_across_processes_and_hash_seeds(real_pairs: list[Pair]) -> None:
    pairs = [*real_pairs[::7], ("my server", "do.thing"), ("s", ""), ("a" * 70, "t")]
    script = (
        "import json, sys\n"
        "from libs.common.contracts.naming import assign_names\n"
        "pairs = [tuple(p) for p in json.load(sys.stdin)]\n"
        "print(json.dumps(assign_names(pairs), sort_keys=True))\n"
    )
    outputs = set()
    for seed in ("0", "1", "12345"):
        result = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(pairs),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1
    assert {k: tuple(v) for k, v in json.loads(outputs.pop()).items()} == assign_names(pairs)


@pytest.mark.parametrize(
    ("server", "tool", "expected"),
    [
        ("github-legacy", "create_issue", "github-legacy__create_issue"),
        ("my server", "do.thing", "my_server__do_thing_2980a82e34"),
        ("gitlab zereight", "create_merge_request", "gitlab_zereight__create_merge_request_d469493d1f"),
        ("s", "", "s_1bf62e6f3a"),
        ("a" * 70, "t", "a" * 53 + "_561d665a25"),
    ],
)
def test_names_are_pinned(server: str, tool: str, expected: str) -> None:
    """Names end up in grants, audit logs and agents' prompts: changing them is a breaking change."""
    assert namespaced(server, tool) == expected


def test_assign_names_timing_on_the_real_catalog(real_pairs: list[Pair], capsys: pytest.CaptureFixture[str]) -> None:
    runs = []
    for _ in range(20):
        start = time.perf_counter()
        assign_names(real_pairs)
        runs.append(time.perf_counter() - start)
    runs.sort()
    with capsys.disabled():
        print(
            f"\n[timing] assign_names over {len(real_pairs)} real tools: "
            f"best {runs[0] * 1e3:.2f} ms, median {runs[len(runs) // 2] * 1e3:.2f} ms (20 runs)"
        )


# --------------------------------------------------------------------------- adversarial cases


@pytest.mark.parametrize("good", ["a__b", "a" * 64])
def test_valid_names_match(good: str) -> None:
    assert VALID_NAME.match(good)


@pytest.mark.parametrize("bad", ["", "a" * 65, "a.b", "a b", "a__b\n", "é"], ids=repr)
def test_valid_name_is_anchored_at_the_very_end(bad: str) -> None:
    assert not VALID_NAME.match(bad)


@pytest.mark.parametrize(
    "pairs",
    [
        # `__` in the server name vs `__` in the tool name
        [("a__b", "c"), ("a", "b__c"), ("a_b", "c")],
        # a trailing `_` on the server vs a leading `_` on the tool
        [("a_", "b"), ("a", "_b"), ("a", "b")],
        # dots, slashes, spaces and `_` all slug to `my_server`
        [("my.server", "t"), ("my/server", "t"), ("my server", "t"), ("my_server", "t"), ("my__server", "t")],
        # tools that sanitize to the same string
        [("s", "a.b"), ("s", "a_b"), ("s", "a b"), ("s", "a/b"), ("s", "a\u00e9b"), ("s", "a\x00b")],
        # empty tool names, empty and symbol-only server names
        [("s", ""), ("s", "_"), ("", "t"), ("server", "t"), ("...", "t"), ("", "")],
        # the old `server\0tool` hash input was ambiguous for these
        [("a\x00b", "c"), ("a", "b\x00c"), ("x" * 60 + "\x00y", "z"), ("x" * 60, "y\x00z")],
        # surrogates are legal in JSON strings; uppercase/lowercase differ
        [("s", "\ud800"), ("s", "\udfff"), ("S", "t"), ("s", "t"), ("s", "T")],
    ],
)
def test_adversarial_pairs_get_distinct_valid_names(pairs: list[Pair]) -> None:
    names = assign_names(pairs)
    _assert_catalog(names, pairs)
    assert assign_names(pairs[::-1]) == names


def test_dunder_in_server_name_cannot_pose_as_the_separator() -> None:
    assert namespaced("a", "b__c") == "a__b__c"  # readable: first `__` is the separator
    name = namespaced("a__b", "c")
    assert name != "a__b__c"
    assert _suffix_len(name) == 10


def test_sanitized_lookalike_tool_is_hashed_and_the_clean_one_stays_readable() -> None:
    assert namespaced("s", "a_b") == "s__a_b"
    hashed = namespaced("s", "a.b")
    assert hashed.startswith("s__a_b_")
    assert hashed != "s__a_b"


def test_empty_tool_name_is_hashed() -> None:
    name = namespaced("srv", "")
    assert VALID_NAME.match(name)
    assert name.startswith("srv_")
    assert namespaced("srv", "") != namespaced("srv", "_")


def test_readable_name_shaped_like_a_hashed_one_wins_and_the_hashed_one_moves() -> None:
    """A real collision at the default hash size, crafted: the tool `a_b_<hash of s/a.b>`."""
    hashed_pair = ("s", "a.b")
    crafted_name = namespaced(*hashed_pair)
    readable_pair = ("s", crafted_name.removeprefix(f"s{SEPARATOR}"))
    assert namespaced(*readable_pair) == crafted_name  # the collision is real

    names = assign_names([hashed_pair, readable_pair])
    _assert_catalog(names, [hashed_pair, readable_pair])
    assert names[crafted_name] == readable_pair
    (moved,) = (name for name, pair in names.items() if pair == hashed_pair)
    assert _suffix_len(moved) == 16  # lengthened from 5 to 8 bytes
    assert assign_names([readable_pair, hashed_pair]) == names


def _colliding_tools(server: str, stem: str, size: int, count: int) -> list[str]:
    """Tools that all get the same name at `size` hash bytes: same readable head, same digest."""
    by_name: dict[str, list[str]] = {}
    for i in range(100_000):
        tool = f"{stem}{chr(0x100 + i)}"  # one non-ASCII character: the head is always `stem_`
        group = by_name.setdefault(namespaced(server, tool, digest_size=size), [])
        group.append(tool)
        if len(group) == count:
            return group
    raise AssertionError("no collision found")  # pragma: no cover


@pytest.mark.parametrize("count", [2, 3])
def test_hash_collisions_at_one_byte_are_resolved(count: int) -> None:
    tools = _colliding_tools("srv", "x", size=1, count=count)
    pairs = [("srv", tool) for tool in tools]
    assert len({namespaced(*pair, digest_size=1) for pair in pairs}) == 1

    names = assign_names(pairs, digest_size=1)
    _assert_catalog(names, pairs)
    assert all(_suffix_len(name) == 8 for name in names)  # all moved together from 1 to 4 bytes
    assert assign_names(pairs[::-1], digest_size=1) == names


def test_a_name_taken_in_an_earlier_round_is_not_stolen() -> None:
    """First round (1 byte): P and Q collide and move on; R takes P's future 4-byte name as its
    readable name; second round: P finds that name taken and moves on again; third round: P is named."""
    server = "s"
    p_tool, q_tool = _colliding_tools(server, "a", size=1, count=2)
    p_future = namespaced(server, p_tool, digest_size=4)
    r_tool = p_future.removeprefix(f"{server}{SEPARATOR}")
    pairs = [(server, p_tool), (server, q_tool), (server, r_tool)]

    names = assign_names(pairs, digest_size=1)
    _assert_catalog(names, pairs)
    name_of = {pair: name for name, pair in names.items()}
    assert name_of[(server, r_tool)] == p_future
    assert _suffix_len(name_of[(server, q_tool)]) == 8
    assert _suffix_len(name_of[(server, p_tool)]) == 14


def test_digest_size_is_bounded_so_names_always_fit() -> None:
    long_server = "x" * 100
    for size in (1, 5, 16, 31):
        name = namespaced(long_server, "t.t", digest_size=size)
        assert VALID_NAME.match(name)
        assert _suffix_len(name) == 2 * size
    for size in (0, 32, 64):
        with pytest.raises(ValueError, match="digest_size"):
            namespaced(long_server, "t.t", digest_size=size)


def test_server_slug() -> None:
    assert server_slug("github-legacy") == "github-legacy"
    assert server_slug("my.server/v2 beta") == "my_server_v2_beta"
    assert server_slug("a__b") == "a_b"
    assert server_slug("_-a-_") == "a"
    assert server_slug("") == "server"
    assert server_slug("日本") == "server"


# --------------------------------------------------------------------------- properties

# any code point (lone surrogates included), biased towards the characters that stress the rules
ANY_CHAR = st.one_of(st.characters(exclude_categories=()), st.sampled_from("_-./ \x00\u00e9\ud800\udfffA0"))
ANY_TEXT = st.lists(ANY_CHAR, max_size=80).map("".join)  # st.text() all but never emits surrogates
TRICKY_SERVERS = st.sampled_from(
    ["a", "a_", "a__b", "a_b", "a.b", "a/b", "a b", "_a", "-a", "a-", "", "server", "s" * 63, "s" * 70, "A"]
)
TRICKY_TOOLS = st.sampled_from(["", "_", "a", "a.b", "a_b", "a-b", "a b", "a__b", "__", "t" * 62, "t" * 70, "é"])
SERVERS = st.one_of(TRICKY_SERVERS, ANY_TEXT, st.from_regex(r"\A[a-z][a-z0-9_-]{0,20}\Z"))
TOOLS = st.one_of(TRICKY_TOOLS, ANY_TEXT, st.from_regex(r"\A[a-z_][a-z0-9_.-]{0,30}\Z"))
PAIR_SETS = st.sets(st.tuples(SERVERS, TOOLS), max_size=40)


@given(ANY_TEXT, ANY_TEXT)
def test_namespaced_is_always_valid_short_and_deterministic(server: str, tool: str) -> None:
    name = namespaced(server, tool)
    assert VALID_NAME.match(name)
    assert len(name) <= MAX_NAME_LENGTH
    assert namespaced(server, tool) == name


@given(SERVERS, TOOLS)
def test_namespaced_is_readable_exactly_when_clean_and_short(server: str, tool: str) -> None:
    name = namespaced(server, tool)
    readable = f"{server}{SEPARATOR}{tool}"
    clean = bool(tool) and server_slug(server) == server and VALID_NAME.match(readable) is not None
    assert (name == readable) == clean
    if clean:
        assert name.split(SEPARATOR, 1) == [server, tool]


@settings(max_examples=200)
@given(PAIR_SETS)
def test_assign_names_is_injective_and_round_trips(pairs: set[Pair]) -> None:
    names = assign_names(pairs)
    _assert_catalog(names, pairs)
    for pair in pairs:  # readable pairs always keep their readable name
        if namespaced(*pair) == f"{pair[0]}{SEPARATOR}{pair[1]}":
            assert names[namespaced(*pair)] == pair


@settings(max_examples=200)
@given(PAIR_SETS)
def test_assign_names_resolves_frequent_collisions_with_a_one_byte_hash(pairs: set[Pair]) -> None:
    names = assign_names(pairs, digest_size=1)
    _assert_catalog(names, pairs)


@given(PAIR_SETS, st.randoms(use_true_random=False))
def test_assign_names_ignores_ordering(pairs: set[Pair], rng: random.Random) -> None:
    ordered = sorted(pairs)
    shuffled = ordered[:]
    rng.shuffle(shuffled)
    assert assign_names(shuffled) == assign_names(ordered)
    assert assign_names(shuffled, digest_size=1) == assign_names(ordered, digest_size=1)


def test_collisions_really_happen_at_one_byte() -> None:
    """The one-byte property test above is only meaningful if it exercises the retry path."""
    pairs = [("srv", f"t{chr(0x100 + i)}") for i in range(80)]  # 80 names with one head, 256 hashes
    first_round = Counter(namespaced(*pair, digest_size=1) for pair in pairs)
    assert sum(count for count in first_round.values() if count > 1) >= 4
    _assert_catalog(assign_names(pairs, digest_size=1), pairs)
