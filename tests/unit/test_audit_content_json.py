"""The JSON an audit digest is taken over: orjson where it writes what the standard library does."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import pytest

from libs.common.audit import audit_content
from libs.common.audit.audit_content import json_bytes, sha256_of, to_json

pytestmark = pytest.mark.unit


def _stdlib(value: Any) -> bytes:
    """What every digest recorded so far was taken over."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return text.encode("utf-8", "surrogatepass")


@dataclasses.dataclass
class _Point:
    x: int


class _Name(str):
    pass


VALUES: list[Any] = [
    {"b": 2, "a": 1, "nested": {"z": [1, 2.5, None, True, False], "y": 'é\u2028\U0001f600\x00\x1f"\\'}},
    {chr(c): c for c in (0x41, 0xE9, 0x4E2D, 0xFFFF, 0x1F600, 0x10FFFF)},
    [0.1, -0.0, 1e-4, 9.999e-05, 2.5e-05, 1e-07, 1.5e-10, 1e15, 1e16, 1.5e16, 1e22, 123456789.123],
    {"text": "a version 0.0000 and 3e-5 in a string"},
    {"big": 2**64, "neg": -(2**63) - 1},
    {"lone": "\ud800 surrogate"},
    {1: "int key", 2: "x"},
    {"when": datetime.datetime(2026, 1, 2, 3, 4, 5), "day": datetime.date(2026, 1, 2)},
    {"point": _Point(3)},
    {"name": _Name("sub")},
    ("a", "tuple"),
    "plain",
    42,
    None,
    {},
    [],
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_the_bytes_are_the_standard_librarys(value: Any) -> None:
    assert json_bytes(value) == _stdlib(value)
    assert to_json(value).encode("utf-8", "surrogatepass") == _stdlib(value)
    assert sha256_of(value) == sha256_of(_stdlib(value))


def test_ordinary_arguments_skip_the_standard_library(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> str:
        raise AssertionError("the standard library's encoder ran")

    monkeypatch.setattr(audit_content.json, "dumps", refuse)
    value = {"text": "hello", "count": 3, "ratio": 0.25, "tags": ["a", "b"], "opt": None}
    assert json_bytes(value) == b'{"count":3,"opt":null,"ratio":0.25,"tags":["a","b"],"text":"hello"}'
    fields = audit_content.content_fields(value, {"ok": True}, keep=True)
    assert fields["arguments"] == json_bytes(value).decode()
