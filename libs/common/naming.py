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
  collide, so the catalog is collision-free by construction, not by luck.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Final

__all__ = ["MAX_NAME_LENGTH", "SEPARATOR", "VALID_NAME", "assign_names", "namespaced", "server_slug"]

MAX_NAME_LENGTH: Final = 64
SEPARATOR: Final = "__"
VALID_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_INVALID_SERVER_CHARS = re.compile(r"[^A-Za-z0-9-]+")
_INVALID_TOOL_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_DEFAULT_DIGEST = 5  # bytes -> 10 hex characters


def server_slug(server: str) -> str:
    """The server part of a name: invalid runs become one `_`, no leading/trailing `_` or `-`."""
    slug = _INVALID_SERVER_CHARS.sub("_", server.replace("_", " ")).strip("_-")
    return slug or "server"


def _digest(server: str, tool: str, size: int) -> str:
    return hashlib.blake2b(f"{server}\x00{tool}".encode(), digest_size=size).hexdigest()


def namespaced(server: str, tool: str, *, digest_size: int = _DEFAULT_DIGEST) -> str:
    """The catalog name of `tool` on `server`."""
    slug = server_slug(server)
    clean_tool = _INVALID_TOOL_CHARS.sub("_", tool)
    readable = f"{slug}{SEPARATOR}{clean_tool}"
    if slug == server and clean_tool == tool and tool and len(readable) <= MAX_NAME_LENGTH:
        return readable
    suffix = _digest(server, tool, digest_size)
    head = readable[: MAX_NAME_LENGTH - len(suffix) - 1].rstrip("_-")
    return f"{head}_{suffix}"


def assign_names(pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Map namespaced name -> (server, tool) for a whole catalog, guaranteeing no collisions.

    Ordering of `pairs` does not matter: a collision (only possible between a hashed name and
    another name) is resolved by lengthening the hash of every hashed name involved.
    """
    unique = sorted(set(pairs))
    names: dict[str, tuple[str, str]] = {}
    pending = unique
    digest_size = _DEFAULT_DIGEST
    while pending:
        by_name: dict[str, list[tuple[str, str]]] = {}
        for pair in pending:
            by_name.setdefault(namespaced(*pair, digest_size=digest_size), []).append(pair)
        retry: list[tuple[str, str]] = []
        for name, owners in by_name.items():
            taken = names.get(name)
            if len(owners) == 1 and taken is None:
                names[name] = owners[0]
                continue
            # keep the readable (unhashed) owner if there is one; everyone else gets a longer hash
            for owner in owners:
                if taken is None and namespaced(*owner, digest_size=digest_size) == f"{server_slug(owner[0])}{SEPARATOR}{owner[1]}":
                    names[name] = owner
                    taken = owner
                else:
                    retry.append(owner)
        if retry and digest_size >= 16:  # pragma: no cover - 128-bit collision
            raise ValueError(f"cannot assign unique names to {retry!r}")
        pending = retry
        digest_size += 3
    return names
