"""Header fields of the HTTP/1.1 client (`http1`): an answer's read, a request's checked."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["answer_headers", "checked_headers"]

_UNSAFE = re.compile(r"[\r\n\x00]")
_NAMES: dict[bytes, str] = {}
"""Answer header names as sent -> lower-cased text: the same few names come with every answer."""
_MAX_NAMES = 256


def answer_headers(lines: list[bytes]) -> dict[str, str]:
    """An answer's headers by lower-case name from its alternating names and values.

    A repeated header's values joined by ", ". Names are decoded once per process (`_NAMES`), not per
    answer: two string calls per header were a fifth of reading an answer."""
    headers: dict[str, str] = {}
    for index in range(0, len(lines), 2):
        raw_name = lines[index]
        if raw_name in _NAMES:
            name = _NAMES[raw_name]
        else:
            name = raw_name.decode("latin-1").lower()
            if len(_NAMES) < _MAX_NAMES:
                _NAMES[raw_name] = name
        value = lines[index + 1].decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def checked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased names; a name or value that could end the header early is refused."""
    out = {}
    for name, value in headers.items():
        if _UNSAFE.search(name) or _UNSAFE.search(value) or ":" in name:
            raise ValueError(f"request header {name!r} holds a line break, NUL or colon")
        out[name.lower()] = value
    return out
