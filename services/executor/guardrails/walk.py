"""Walking a JSON payload's strings, naming them by JSON pointer, and rewriting some of them.

Redaction never edits the caller's object: the containers on the way to a changed string are
copied (copy on write), everything else is shared, so a definition the pin store holds or a result
another consumer reads stays as it was. Only string values change, so the structure stays valid
JSON whatever is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .secrets import SecretsDetector

__all__ = ["Path", "pointer", "rewrite", "strings"]

Path = tuple[str | int, ...]

_BINARY_KEYS: Final = frozenset({"data", "blob"})
"""MCP carries images, audio and resource blobs as base64 under these keys, beside a `mimeType`:
random base64 is not text, and scanning megabytes of it would only find accidents."""
_PLAIN_KEY: Final = re.compile(r"\A[A-Za-z0-9_.$@:/~ \-]{1,40}\Z")
_SECRETS: Final = SecretsDetector()
_SCALARS: Final = frozenset({int, float, bool, type(None)})
"""JSON's values that hold no string: passed over without a call."""


def strings(value: Any) -> list[tuple[Path, str | None, str]]:
    """Every string value of `value` (depth first, iteratively: no recursion limit to hit) as its path.

    The object key it is the value of (None inside a list), and the string. A list, not a generator:
    every caller reads them all, and a generator costs a resumption per string. JSON's own types are
    told apart by exact class (`__class__`, an attribute, not a call): a payload the codec made costs
    no `isinstance` at all, about a third of the calls of a step."""
    found: list[tuple[Path, str | None, str]] = []
    stack: list[tuple[Path, str | None, Any]] = [((), None, value)]
    while stack:
        path, key, item = stack.pop()
        kind = item.__class__
        if kind is str:
            found.append((path, key, item))
        elif kind is dict:
            # keys JSON never has (a number, from a caller's own dict) are named by their text
            entries = [
                ((*path, name), name, v)
                for k, v in item.items()
                for name in (k if k.__class__ is str else str(k),)
                if not (name in _BINARY_KEYS and "mimeType" in item and isinstance(v, str))
            ]
            entries.reverse()
            stack += entries
        elif kind is list:
            stack += [((*path, i), None, item[i]) for i in range(len(item) - 1, -1, -1)]
        elif kind in _SCALARS:
            continue
        elif isinstance(item, str):
            found.append((path, key, item))
        elif isinstance(item, Mapping):
            binary = "mimeType" in item
            for k, v in reversed(list(item.items())):
                if not (binary and str(k) in _BINARY_KEYS and isinstance(v, str)):
                    stack.append(((*path, str(k)), str(k), v))
        elif isinstance(item, list | tuple):
            for i in range(len(item) - 1, -1, -1):
                stack.append(((*path, i), None, item[i]))
    return found


def _secret_like(key: str) -> bool:
    if not _PLAIN_KEY.match(key) or (len(key) >= 16 and any(c.isdigit() for c in key)):
        return True
    scan = _SECRETS.prepare(key, key.lower())
    return scan is not None and bool(scan(key, None))


def _segment(part: str | int) -> str:
    if isinstance(part, int):
        return str(part)
    if _secret_like(part):
        return "*"  # a key that may itself be a secret (a token-keyed map): never repeated in records
    return part.replace("~", "~0").replace("/", "~1")


def pointer(path: Path) -> str:
    """RFC 6901 pointer of `path`, with object keys that could be secrets shown as `*`.

    (Built only for decisions, so the secrets scan of each key costs nothing on a clean payload)."""
    return "".join("/" + _segment(p) for p in path)


def rewrite(value: Any, changes: Mapping[Path, str]) -> Any:
    """`value` with the strings at `changes`' paths replaced (copy on write)."""
    if not changes:
        return value
    if () in changes:
        return changes[()]
    heads: dict[str | int, dict[Path, str]] = {}
    for path, text in changes.items():
        heads.setdefault(path[0], {})[path[1:]] = text
    if isinstance(value, Mapping):
        copy = dict(value)
        for key, rest in heads.items():
            copy[str(key)] = rewrite(value[str(key)], rest)
        return copy
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = list(value)
        for index, rest in heads.items():
            assert isinstance(index, int)
            items[index] = rewrite(items[index], rest)
        return items
    return value
