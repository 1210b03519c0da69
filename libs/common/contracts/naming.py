"""Namespaced tool names: `<server>__<tool>`, valid everywhere, at most 64 characters.

Rules (pure, deterministic per (server, tool) pair):
- Names use only `[A-Za-z0-9_-]`, the intersection of what MCP and the LLM APIs accept, and stay
  within 64 characters because some LLM APIs reject longer names.
- When `server` and `tool` are already clean and short enough the name is the readable
  `server__tool`. It is injective: a clean server slug never contains `__` nor ends in `_`, so
  the first `__` is always the separator.
- Otherwise (characters replaced, or too long) the readable prefix is cut and a stable hash of
  the exact pair is appended, so two pairs that sanitize alike still get different names.
- `assign_names` checks a whole catalog and lengthens the hash of any name that would still
  collide, so the catalog is collision-free by construction, not by luck. A readable name always
  wins over a hashed name of the same shape.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Final

__all__ = ["MAX_NAME_LENGTH", "SEPARATOR", "VALID_NAME", "assign_names", "namespaced", "server_slug"]

MAX_NAME_LENGTH: Final = 64
SEPARATOR: Final = "__"
# \Z, not $: `$` also matches before a trailing newline, which would let "name\n" through
VALID_NAME: Final = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")

_INVALID_SERVER_CHARS = re.compile(r"[^A-Za-z0-9-]+")
_INVALID_TOOL_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_DEFAULT_DIGEST: Final = 5  # bytes -> 10 hex characters
_MAX_DIGEST: Final = (MAX_NAME_LENGTH - 2) // 2  # 31 bytes: 62 hex + `_` + at least one readable character
_DIGEST_STEP: Final = 3  # bytes added to every still-colliding hash in each round of `assign_names`

Pair = tuple[str, str]


def server_slug(server: str) -> str:
    """The server part of a name: invalid runs become one `_`, no leading/trailing `_` or `-`."""
    slug = _INVALID_SERVER_CHARS.sub("_", server.replace("_", " ")).strip("_-")
    return slug or "server"


def _readable(server: str, tool: str) -> str | None:
    """`server__tool` when both parts are already clean and the result fits, else None."""
    name = f"{server}{SEPARATOR}{tool}"
    clean = server_slug(server) == server and tool and not _INVALID_TOOL_CHARS.search(tool)
    return name if clean and len(name) <= MAX_NAME_LENGTH else None


def _digest(server: str, tool: str, size: int) -> str:
    """A hash of the exact pair.

    The server's length is part of the input, so no two pairs share it ("a\\0b", "c" vs "a", "b\\0c");
    lone surrogates (legal in JSON strings) are hashed too."""
    server_bytes = server.encode("utf-8", "surrogatepass")
    data = len(server_bytes).to_bytes(8, "big") + server_bytes + tool.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=size).hexdigest()


def namespaced(server: str, tool: str, *, digest_size: int = _DEFAULT_DIGEST) -> str:
    """The catalog name of `tool` on `server` (before `assign_names` resolves rare collisions).

    `digest_size` (bytes, 1..31) sets how long the hash of a non-readable name is.
    """
    if not 1 <= digest_size <= _MAX_DIGEST:
        raise ValueError(f"digest_size must be between 1 and {_MAX_DIGEST}, got {digest_size}")
    readable = _readable(server, tool)
    if readable is not None:
        return readable
    suffix = _digest(server, tool, digest_size)
    prefix = f"{server_slug(server)}{SEPARATOR}{_INVALID_TOOL_CHARS.sub('_', tool)}"
    # the slug starts with a letter or digit, so the head is never empty
    head = prefix[: MAX_NAME_LENGTH - len(suffix) - 1].rstrip("_-")
    return f"{head}_{suffix}"


def assign_names(pairs: Iterable[Pair], *, digest_size: int = _DEFAULT_DIGEST) -> dict[str, Pair]:
    """Map namespaced name -> (server, tool) for a whole catalog, guaranteeing no collisions.

    Ordering of `pairs` does not matter: a collision (only possible between a hashed name and
    another name) is resolved by lengthening the hash of every hashed name involved, round after
    round, until every pair has a name of its own. `digest_size` is the hash size of the first
    round (tests use 1 byte to make collisions common).
    """
    names: dict[str, Pair] = {}
    pending = sorted(set(pairs))
    size = digest_size
    while pending:
        if size > _MAX_DIGEST:  # pragma: no cover - needs a collision of a 248-bit hash
            raise ValueError(f"cannot assign unique names to {pending!r}")
        pending = _assign_round(pending, size, names)
        size += _DIGEST_STEP
    return names


def _assign_round(pending: list[Pair], size: int, names: dict[str, Pair]) -> list[Pair]:
    """Name every pending pair whose name is free and unshared; return the pairs left over."""
    by_name: dict[str, list[Pair]] = {}
    for pair in pending:
        by_name.setdefault(namespaced(*pair, digest_size=size), []).append(pair)
    retry: list[Pair] = []
    for name, owners in by_name.items():
        winner = _winner(name, owners, names)
        if winner is not None:
            names[name] = winner
        retry.extend(owner for owner in owners if owner is not winner)
    return retry


def _winner(name: str, owners: list[Pair], names: dict[str, Pair]) -> Pair | None:
    """Who keeps `name`: its only owner if free, else the readable owner (at most one), else nobody.

    A name taken in an earlier round is only ever contested by hashed pairs, which retry.
    """
    if name in names:
        return None
    if len(owners) == 1:
        return owners[0]
    return next((owner for owner in owners if _readable(*owner) == name), None)
