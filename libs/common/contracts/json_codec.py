"""JSON as it crosses the gateway's edges (agents, upstreams).

Orjson's speed, the standard library's exactness where orjson has none.

orjson reads an integer beyond 64 bits as a float (an agent's 18446744073709551621 would reach the
upstream as 1.8446744073709552e+19), and refuses to write one, or nesting past 255 levels: all
valid JSON that agents and upstreams may send. Text that may hold such an integer is read by the
standard library, which keeps it exact; what orjson refuses to write, the standard library writes.
The common message pays for neither (a 19-digit search, a caught TypeError on the rare path).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = ["dumps", "loads", "loads_object"]

_DIGIT_MARKS = bytes(49 if 48 <= byte <= 57 else 48 for byte in range(256))
"""Each ASCII digit as b"1", every other byte as b"0" (`bytes.translate`)."""
_LONG_INTEGER = b"1" * 19
"""Nineteen digits in a row: possibly an integer orjson cannot hold (below -2**63, which has 19
digits, or beyond 2**64 - 1). Found as a substring of the marks, where a regular expression
searching the bytes costs ~3 µs per 250 (its matcher starts at every byte)."""
_LONG_INTEGER_TEXT = re.compile(r"\d{19}")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """`data` as JSON, integers exact.

    Raises `ValueError` (orjson's or json's decode error, or nesting too deep for the standard library)
    when it is not JSON."""
    if (
        _LONG_INTEGER not in data.translate(_DIGIT_MARKS)
        if isinstance(data, bytes)
        else _LONG_INTEGER_TEXT.search(data) is None
    ):
        return orjson.loads(data)
    try:
        return json.loads(data, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def loads_object(data: bytes | str) -> dict[str, Any]:
    """`data` as a JSON object, integers exact.

    Raises `ValueError` saying why not, to follow "is": "not JSON (the decoder's reason)" or "not a
    JSON object"."""
    try:
        value = loads(data)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def dumps(value: Any) -> bytes:
    """Compact JSON of `value`.

    Raises `ValueError` for what neither orjson nor the standard library can write (a lone surrogate,
    NaN, nesting past the interpreter's recursion limit)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"cannot be encoded as JSON ({exc})") from None
