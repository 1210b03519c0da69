"""The filter algebra of a decision, as pure functions.

A caller may use a tool when all three layers allow it:
  server configuration (which tools a server exposes; enforced by the catalog and the executor)
  ∩ request headers (`X-Bastion-Include-Servers` / `X-Bastion-Include-Tools`: they only narrow)
  ∩ grants (the key's own patterns ∪ the tool groups bound to its key, user, team and customer).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from libs.common.contracts.grants import GrantSet

__all__ = ["MAX_PATTERNS", "MAX_PATTERN_CHARS", "Narrowing", "narrowing", "narrowing_problem", "union_of_grants"]

MAX_PATTERNS = 256
"""Items one narrowing header may carry here. Ingress holds agents to less (BASTION_MAX_INCLUDE_PATTERNS);
policy holds every sender to this, so no message can make it compile an unbounded pattern."""
MAX_PATTERN_CHARS = 1024


def union_of_grants(own: Iterable[str], groups: Iterable[Sequence[str]]) -> GrantSet:
    """Own grants plus every bound group's, deduplicated (order does not matter)."""
    patterns = set(own)
    for tools in groups:
        patterns.update(tools)
    return GrantSet.compile(sorted(patterns))


@dataclass(frozen=True, slots=True)
class Narrowing:
    """What a request's headers let through; `None` for a header means it was not given.

    Server items are server-name patterns. Tool items are `server/tool` patterns; an item without
    `/` names a tool on any server. An empty list lets nothing through (it narrows to nothing).
    """

    servers: tuple[str, ...] | None = None
    tools: tuple[str, ...] | None = None
    _servers: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _tools: GrantSet | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.servers is not None:
            regex = "|".join(f"(?:{fnmatch.translate(p)})" for p in self.servers) or r"(?!)"
            object.__setattr__(self, "_servers", re.compile(regex))
        if self.tools is not None:
            object.__setattr__(self, "_tools", GrantSet.compile(t if "/" in t else f"*/{t}" for t in self.tools))

    def allows(self, server: str, tool: str) -> bool:
        return self.admits_server(server) and self.admits_tool(server, tool)

    def admits_server(self, server: str) -> bool:
        """The server half of `allows`: whether X-Bastion-Include-Servers lets `server` through."""
        return self._servers is None or self._servers.match(server) is not None

    def admits_tool(self, server: str, tool: str) -> bool:
        """The tool half of `allows`: whether X-Bastion-Include-Tools lets `server/tool` through."""
        return self._tools is None or self._tools.allows(server, tool)


def narrowing_problem(servers: Sequence[str] | None, tools: Sequence[str] | None) -> str | None:
    """Why these narrowing lists are too large to compile, or None."""
    for header, items in (("X-Bastion-Include-Servers", servers), ("X-Bastion-Include-Tools", tools)):
        if items is None:
            continue
        if len(items) > MAX_PATTERNS:
            return f"{header} has {len(items)} items; at most {MAX_PATTERNS}"
        if any(len(item) > MAX_PATTERN_CHARS for item in items):
            return f"{header} has an item longer than {MAX_PATTERN_CHARS} characters"
    return None


@functools.lru_cache(maxsize=512)
def narrowing(servers: tuple[str, ...] | None, tools: tuple[str, ...] | None) -> Narrowing:
    """Compiled once per distinct header combination: agents send the same headers every call.

    Bounded (LRU) because the combinations are the senders' choice; check `narrowing_problem` first."""
    return Narrowing(servers, tools)
