"""`libs.common.contracts.json_codec`: orjson's speed where it is exact, the standard library where not."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.common.contracts import json_codec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", [2**64 + 5, -(2**63) - 1, -(2**70), 10**30])
def test_integers_beyond_64_bits_survive_both_ways(value: int) -> None:
    message = {"arguments": {"n": value, "nested": [value]}}
    data = json_codec.dumps(message)  # orjson refuses these
    assert str(value).encode() in data
    assert json_codec.loads(data) == message  # orjson would read a float
    assert json_codec.loads(data.decode()) == message


def test_nesting_orjson_refuses_to_write_is_written() -> None:
    nested: object = 1
    for _ in range(600):
        nested = {"x": nested}
    assert json_codec.loads(json_codec.dumps(nested)) == nested


def test_what_is_not_json_is_a_value_error() -> None:
    for bad in (b"{", b"NaN", b'{"n": 123456789012345678901, "x": NaN}', "[" * 100_000 + "1" + "]" * 100_000):
        with pytest.raises(ValueError):
            json_codec.loads(bad)
    with pytest.raises(ValueError, match="cannot be encoded"):
        json_codec.dumps({"n": 2**64, "text": "\ud800"})  # a lone surrogate, on the standard library's path
    with pytest.raises(ValueError, match="cannot be encoded"):
        json_codec.dumps({"n": 2**64, "x": float("nan")})


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"[1]", "not a JSON object"), ("5", "not a JSON object"), (b"{", "not JSON ("), ("", "not JSON (")],
)
def test_loads_object_says_why_what_it_read_is_no_object(data: bytes | str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        json_codec.loads_object(data)


def test_loads_object_keeps_an_object_and_its_integers_exact() -> None:
    assert json_codec.loads_object(b'{"n": 18446744073709551621}') == {"n": 2**64 + 5}


def test_the_common_message_takes_orjsons_path_and_means_the_same() -> None:
    message = {"jsonrpc": "2.0", "id": "bastion-1", "result": {"n": 2**63 - 1, "f": 0.5, "s": "é"}}
    assert (
        json_codec.dumps(message)
        == b'{"jsonrpc":"2.0","id":"bastion-1","result":{"n":9223372036854775807,"f":0.5,"s":"\xc3\xa9"}}'
    )
    assert json_codec.loads(json_codec.dumps(message)) == message


@given(st.lists(st.sampled_from([b"1", b"9", b"0", b"a", b" ", b",", b"-", b".", b"\xd9\xa3"]), max_size=60))
def test_bytes_go_to_the_standard_library_exactly_when_they_hold_nineteen_digits_in_a_row(parts: list[bytes]) -> None:
    """The digit-run check (`bytes.translate`, a substring) is the regular expression `\\d{19}` it replaced."""
    data = b"".join(parts)
    holds = re.search(rb"\d{19}", data) is not None
    assert (json_codec._LONG_INTEGER in data.translate(json_codec._DIGIT_MARKS)) == holds
