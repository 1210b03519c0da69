"""Walking a JSON payload's strings, naming them by JSON pointer, and rewriting some of them.

Redaction never edits the caller's object: the containers on the way to a changed string are
copied (copy on write), everything else is shared, so a definition the pin store holds or a result
another consumer reads stays as it was. Only string values change, so the structure stays valid
JSON whatever is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
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
    """Every string value of `value` (depth first, in document order) as its path.

    The object key it is the value of (None inside a list), and the string. A list, not a generator:
    every caller reads them all, and a generator costs a resumption per string. JSON's own dicts and
    lists are walked by one loop that keeps the containers it is inside on a stack of its own (each
    with its members not read yet; nested tuples, no call to push or pop one), not by a call per
    container: no depth reaches a recursion limit, and a result's six containers cost no call. Their
    types are told apart by exact class (`__class__`, an attribute, not a call); other mappings and
    sequences are walked by `_stacked`."""
    found: list[tuple[Path, str | None, str]] = []
    kind = value.__class__
    members: Iterator[tuple[Any, Any]]
    binary: bool | None  # None: the members are a list's
    if kind is dict:
        members, binary = iter(value.items()), "mimeType" in value
    elif kind is list:
        members, binary = enumerate(value), None
    else:
        _stacked(value, (), None, found)
        return found
    path: Path = ()
    outer: Any = None  # the containers it is inside, innermost first: (path, members, binary, outer)
    while True:
        for k, v in members:  # resumed where it left off when a nested container was entered
            if k.__class__ is str:
                key: str | None = k
            elif binary is None:
                key = None
            else:  # a key JSON never has (a number, from a caller's own dict): named by its text
                key = k = str(k)
            kind = v.__class__
            if kind is str:
                if not (binary and key in _BINARY_KEYS):
                    found.append(((*path, k), key, v))
            elif kind is dict:
                outer = (path, members, binary, outer)
                path, members, binary = (*path, k), iter(v.items()), "mimeType" in v
                break
            elif kind is list:
                outer = (path, members, binary, outer)
                path, members, binary = (*path, k), enumerate(v), None
                break
            elif kind not in _SCALARS:
                if not (binary and key in _BINARY_KEYS and isinstance(v, str)):
                    _stacked(v, (*path, k), key, found)
        else:  # every member read: back to the container it is in
            if outer is None:
                return found
            path, members, binary, outer = outer


def _stacked(value: Any, path: Path, key: str | None, found: list[tuple[Path, str | None, str]]) -> None:
    """The strings under `value` found by a loop with its own stack: any depth, any Mapping and sequence."""
    stack: list[tuple[Path, str | None, Any]] = [(path, key, value)]
    while stack:
        path, key, item = stack.pop()
        if isinstance(item, str):
            found.append((path, key, item))
        elif isinstance(item, Mapping):
            binary = "mimeType" in item
            for k, v in reversed(list(item.items())):
                if not (binary and str(k) in _BINARY_KEYS and isinstance(v, str)):
                    stack.append(((*path, str(k)), str(k), v))
        elif isinstance(item, list | tuple):
            for i in range(len(item) - 1, -1, -1):
                stack.append(((*path, i), None, item[i]))


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
