"""The guardrails' fast path for plain payloads loses nothing: a payload judged undisguised as a whole
has no string with a view, and credentials split across neighbours, disguised, or buried deep in a
nested result are still found and redacted when the rest of the payload is plain."""

from __future__ import annotations

import base64
from collections import OrderedDict
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.contracts.guardrails import GuardrailsSection
from libs.common.contracts.messages import Caller
from services.executor.guardrails import Guardrails, Subject
from services.executor.guardrails.decode import Budget, undisguised_strings, views
from services.executor.guardrails.deep import grouped, inert_joins, neighbours
from services.executor.guardrails.engine import distinct_strings
from services.executor.guardrails.secrets import SecretsDetector
from services.executor.guardrails.walk import strings

pytestmark = pytest.mark.unit

AWS = "AKIA" + "Q4TZ7XNM2VBR6P3K"
GITHUB = "ghp_" + "R5t8Wq2Zx7Lm4Nv9Bc3Kd6Hf1Jg0Ps5Ya8Eu"
ENGINE = Guardrails.compile(GuardrailsSection())
SUBJECT = Subject("srv", "tool", Caller(key_id="k1", key_name="ci"))

_PIECES = [
    "a",
    "Z",
    "7",
    " ",
    "  ",
    "\n",
    "\r",
    "\t",
    '"',
    "\\",
    "%",
    "%41",
    "\\u0041",
    "é",
    "\uff21",
    "\u200b",
    "\u00a0",
    "+",
    "/",
    "=",
    "-",
    "_",
    "line of text ",
    base64.b64encode(AWS.encode()).decode(),
    " ".join(AWS),
    "A B C D E F G H I J K L",
    "\nA B C D E F G H I J K L\n",
    AWS.encode().hex(),
]
TEXTS = st.lists(st.sampled_from(_PIECES), max_size=12).map("".join)


def _nested(texts: list[str]) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": t} for t in texts],
        "structuredContent": {"rows": [{"note": {"deep": [t]}} for t in texts]},
        "isError": False,
    }


def _undisguised(payload: Any) -> bool:
    return undisguised_strings(distinct_strings(strings(payload)))


@settings(max_examples=400, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=4))
def test_strings_judged_undisguised_have_no_view(texts: list[str]) -> None:
    items = strings(_nested(texts))
    if _undisguised(_nested(texts)):
        assert all(views(value, Budget()) == [] for _path, _key, value in items)


def test_each_distinct_string_is_read_once_and_the_keys_they_are_under_too() -> None:
    text = "line of text\n" * 4
    payload = {"content": [{"type": "text", "text": text}], "structuredContent": {"password": text}}
    read = distinct_strings(strings(payload)).split("\x00\x00")
    assert sorted(read) == sorted(["text", "type", text, "password"])  # each once, whatever the order


def test_a_string_holding_json_is_read_as_json_when_the_rest_is_plain() -> None:
    inner = orjson.dumps({"head": GITHUB[:20], "tail": GITHUB[20:]}).decode()
    payload = _nested(["plain prose"])
    payload["content"].append({"type": "text", "text": inner})
    assert not _undisguised(payload)  # a quote: read string by string
    out = _redacted(payload)
    assert GITHUB[:20] not in out and GITHUB[20:] not in out


@pytest.mark.parametrize(
    "text",
    [
        "A B C D E F G H I J K L",  # spaced out from the string's first character
        "ends a line\nA B C D E F G H I J K L\nand the next",  # from the first character after a line break
        " ".join(AWS),
        base64.b64encode(AWS.encode()).decode(),
        "caf\u00e9",
        "\\u0041KIA",
        "%41KIA",
        "A\tB\tC\tD\tE\tF\tG\tH\tI\tJ\tK\tL",  # a tab is a gap too
        'say "hi"',
    ],
)
def test_a_string_with_a_disguise_or_an_escape_makes_the_payload_disguised(text: str) -> None:
    assert not _undisguised({"content": [{"type": "text", "text": text}]})


def test_line_breaks_and_plain_prose_stay_undisguised() -> None:
    text = "".join(f"line {i:04d} of a plain result, 50% done\r\n" for i in range(60))
    assert _undisguised({"content": [{"type": "text", "text": text}], "structuredContent": {"r": text}})


def _redacted(payload: Any) -> str:
    inspection = ENGINE.inspect("result", SUBJECT, payload)
    assert inspection.action == "redact"
    return orjson.dumps(inspection.content).decode()


def test_a_credential_split_across_plain_content_blocks_is_redacted_in_both() -> None:
    payload = {"content": [{"type": "text", "text": "AK"}, {"type": "text", "text": AWS[2:]}]}
    assert _undisguised(payload)  # the fast path's case: only the join finds it
    out = _redacted(payload)
    assert "AK" not in out.replace("[REDACTED", "") and AWS[2:] not in out


def test_a_credential_split_across_sibling_fields_deep_in_a_result_is_redacted() -> None:
    payload = {"structuredContent": {"a": [{"b": {"head": GITHUB[:20], "tail": GITHUB[20:]}}]}}
    assert _undisguised(payload)
    out = _redacted(payload)
    assert GITHUB[:20] not in out and GITHUB[20:] not in out


@pytest.mark.parametrize(
    "disguised",
    [
        base64.b64encode(AWS.encode()).decode(),
        " ".join(AWS),
        "".join(f"%{ord(c):02x}" for c in AWS),
        "\u200b".join(AWS),
        AWS.encode().hex(),
    ],
)
def test_a_disguised_credential_deep_in_a_plain_result_is_redacted(disguised: str) -> None:
    payload = _nested(["nothing to see here", "plain prose"])
    payload["structuredContent"]["rows"][1]["note"]["deep"].append({"hidden": disguised})
    out = _redacted(payload)
    assert disguised not in out and "nothing to see here" in out


def test_the_walk_names_every_string_of_any_mapping_and_sequence() -> None:
    value = OrderedDict(
        [
            (1, "one"),
            ("img", {"mimeType": "image/png", "data": "AAAA", "alt": "cat"}),
            ("row", ("x", ["y", None, 2.5, True, {"z": "w", 2: "two"}])),
        ]
    )
    assert strings(value) == [
        (("1",), "1", "one"),
        (("img", "mimeType"), "mimeType", "image/png"),
        (("img", "alt"), "alt", "cat"),
        (("row", 0), None, "x"),
        (("row", 1, 0), None, "y"),
        (("row", 1, 4, "z"), "z", "w"),
        (("row", 1, 4, "2"), "2", "two"),
    ]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "data", "mimeType", "text"]), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_the_walk_of_json_is_the_walk_of_any_mapping(value: Any) -> None:
    def generic(item: Any) -> Any:  # the same value as types JSON's walk does not take its fast way for
        if isinstance(item, dict):
            return OrderedDict((k, generic(v)) for k, v in item.items())
        if isinstance(item, list):
            return tuple(generic(v) for v in item)
        return item

    assert strings(value) == strings(generic(value))


def test_a_payload_nested_past_the_recursion_limit_is_walked_whole() -> None:
    value: Any = {"secret": "here"}
    for depth in range(3000):
        value = [value] if depth % 2 else {"k": value}
    found = strings(value)
    assert len(found) == 1 and found[0][1:] == ("secret", "here") and len(found[0][0]) == 3001


def _with_server_info(*fields: str) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": "hello"}],
        "structuredContent": {"result": "hello"},
        "_meta": {"io.modelcontextprotocol/serverInfo": dict(zip(("name", "version", "title"), fields, strict=False))},
    }


def test_plain_neighbours_that_hold_nothing_pass_as_they_are() -> None:
    payload = _with_server_info("echo", "1.0.0")
    assert _undisguised(payload)
    inspection = ENGINE.inspect("result", SUBJECT, payload)
    assert inspection.action is None and inspection.content is payload


_SPACED_AWS = " ".join(AWS)
_B64_AWS = base64.b64encode(AWS.encode()).decode()


@pytest.mark.parametrize(
    "fields",
    [
        (AWS[:2], AWS[2:]),  # the anchor itself cut in two
        (_B64_AWS[:14], _B64_AWS[14:]),  # a base64 run: neither half long enough to be one
        (_SPACED_AWS[:14], _SPACED_AWS[14:28], _SPACED_AWS[28:]),  # a spaced-out run: neither piece one
    ],
)
def test_a_credential_cut_across_plain_neighbours_is_still_read_joined(fields: tuple[str, ...]) -> None:
    payload = _with_server_info(*fields)
    assert _undisguised(payload)  # no piece has a disguise of its own
    out = _redacted(payload)
    assert not any(field.strip() in out for field in fields)


def test_neighbours_one_detector_found_inert_are_read_again_by_another() -> None:
    """What `inert_joins` remembers (the same `_meta` stamp every call) is remembered per detector:
    a rule narrowed to other credentials says nothing about the full scan."""
    groups = neighbours(strings(_with_server_info(AWS[:2], AWS[2:])))
    narrow = SecretsDetector(frozenset({"github_token"}))
    assert inert_joins(narrow, groups) and inert_joins(narrow, groups)
    assert not inert_joins(SecretsDetector(), groups)
    assert _redacted(_with_server_info(AWS[:2], AWS[2:]))


_KEYS = st.sampled_from(["text", "type", "result", "note", "a", "b", "mimeType", "data"])
JSON = st.recursive(
    st.text(max_size=8) | st.integers(-(2**63), 2**63 - 1) | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=16,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(JSON, min_size=1, max_size=6))
def test_remembered_shapes_group_every_payload_as_its_own_walk_does(payloads: list[Any]) -> None:
    """What `grouped` remembers (shapes with no neighbours) never hides a group: each payload, seen
    once or again after others, gets `neighbours`' own answer."""
    for payload in [*payloads, *payloads]:
        items = strings(payload)
        assert grouped(items, len(orjson.dumps(payload))) == neighbours(items)


def test_a_credential_split_across_new_neighbours_is_found_after_many_results_had_none() -> None:
    """A server that answered one text a hundred times (its shape remembered as having no
    neighbours) and then cuts a key over two blocks: a new shape, read joined."""
    for _ in range(100):
        assert ENGINE.inspect("result", SUBJECT, {"content": [{"type": "text", "text": "hello"}]}).action is None
    split = {"content": [{"type": "text", "text": AWS[:10]}, {"type": "text", "text": AWS[10:]}]}
    out = _redacted(split)
    assert AWS[:10] not in out and AWS[10:] not in out


# A URL's password: the pattern wakes only where an `@` is (`_Pattern.needs`); these hold the places an
# `@` may hide from the plain scan of one string, and a property holds the detector to the pattern itself.
URL_SECRET = "Zq7" + "vL2pX9wKm4"
URL = f"postgres://deploy:{URL_SECRET}@db.internal:5432/app"
_URL_PIECES = ["https://", "://", "deploy", ":", URL_SECRET, "@", "db.internal", "/", " ", "\n", "user@mail", "x"]
_URL_PATTERN = next(p for p in SecretsDetector()._patterns if p.entity == "url_password")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_URL_PIECES), max_size=14).map("".join))
def test_a_url_password_is_found_wherever_the_pattern_itself_matches(text: str) -> None:
    detector = SecretsDetector(frozenset({"url_password"}))
    scan = detector.prepare(text, text.lower())
    found = sorted((f.start, f.end) for f in scan(text, None)) if scan is not None else []
    assert _URL_PATTERN.validate is not None
    spans = (_URL_PATTERN.validate(m) for m in _URL_PATTERN.regex.finditer(text))
    assert found == sorted({s for s in spans if s is not None and s[1] > s[0]})


def test_a_url_password_among_links_without_credentials_is_redacted() -> None:
    links = " ".join(f"https://github.com/org/repo/issues/{i}" for i in range(12))
    out = _redacted({"content": [{"type": "text", "text": f"{links}\nclone {URL} now"}]})
    assert URL_SECRET not in out and "github.com/org/repo/issues/11" in out


def test_a_url_password_whose_at_sign_is_in_the_next_content_block_is_redacted() -> None:
    head, tail = URL.split("@")
    out = _redacted({"content": [{"type": "text", "text": head}, {"type": "text", "text": "@" + tail}]})
    assert URL_SECRET not in out


@pytest.mark.parametrize("encode", [lambda s: base64.b64encode(s.encode()).decode(), lambda s: s.encode().hex()])
def test_an_encoded_url_password_in_a_payload_with_no_at_sign_is_redacted(encode: Any) -> None:
    hidden = encode(URL)
    payload = {"content": [{"type": "text", "text": f"see https://example.com/docs and {hidden}"}]}
    assert "@" not in orjson.dumps(payload).decode()
    out = _redacted(payload)
    assert hidden not in out
