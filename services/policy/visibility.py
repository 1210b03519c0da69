"""Which of a list of (server, tool) pairs a caller may see (`bastion.policy.list`), remembered.

The list asked about is a catalog's, the same on every `tools/list` and Code Mode call until the
catalog changes; the answer depends only on it, the caller's grant set and the request's
narrowing. So a packed list (`messages.pack_pairs`) seen before is not unpacked again, and an
answer already reached for the same three is returned as it is: for 1,343 tools, ~0.7 ms of
unpacking and verdicts per fresh list becomes two dict lookups.

Pure module: no NATS, no I/O.
"""

from __future__ import annotations

from cachetools import LRUCache

from bastion_common.messages import unpack_pairs

from .filters import Narrowing
from .grants import GrantSet

__all__ = ["Visibility"]

Pair = tuple[str, str]

_LISTS = 8
"""Packed lists kept unpacked: one per catalog revision in use (ingress's and codemode's, and the
one before a change while replicas catch up)."""
_ANSWERS = 256
"""Answers kept: one per (list, grant set, narrowing) in use; a 1,343-tool answer is ~50 kB."""


class Visibility:
    def __init__(self, lists: int = _LISTS, answers: int = _ANSWERS) -> None:
        self._lists: LRUCache[str, tuple[str, list[Pair]]] = LRUCache(maxsize=lists)
        self._answers: LRUCache[tuple[str, GrantSet, Narrowing], list[int]] = LRUCache(maxsize=answers)

    def pairs(self, packed: str) -> tuple[str, list[Pair]]:
        """The pairs of a packed list, with the one string kept for that list (so every answer
        about it shares it). Raises ValueError when `packed` is not a list of pairs."""
        known = self._lists.get(packed)
        if known is None:
            known = self._lists[packed] = (packed, unpack_pairs(packed))
        return known

    def allowed(self, grants: GrantSet, narrowing: Narrowing, packed: str) -> list[int]:
        """Indexes of the pairs `grants` and `narrowing` both let through. Raises ValueError as
        `pairs` does. The list returned is shared: do not change it."""
        packed, pairs = self.pairs(packed)
        memo = (packed, grants, narrowing)
        answer = self._answers.get(memo)
        if answer is None:
            answer = self._answers[memo] = _allowed(grants, narrowing, pairs)
        return answer


def _allowed(grants: GrantSet, narrowing: Narrowing, pairs: list[Pair]) -> list[int]:
    # a narrowing's server patterns depend on the server alone: matched once per server, not per tool
    servers: dict[str, bool] = {}
    allowed = []
    for i, (server, tool) in enumerate(pairs):
        through = servers.get(server)
        if through is None:
            through = servers[server] = narrowing.admits_server(server)
        if through and grants.allows(server, tool) and narrowing.admits_tool(server, tool):
            allowed.append(i)
    return allowed
