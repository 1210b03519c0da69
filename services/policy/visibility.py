"""Which of a list of (server, tool) pairs a caller may see (`bastion.policy.list`), remembered.

The list asked about is a catalog's, the same on every `tools/list` and Code Mode call until the
catalog changes; the answer depends only on it, the caller's grant set and the request's
narrowing. So a list is held under its digest (askers name it rather than send it), what a
grant set allows of it is worked out once, and a narrowing (new header values) costs a pass over
the allowed indexes with its server patterns matched once per server: for 1,343 tools, ~1 ms of
verdicts per fresh list on this project's machine becomes dict lookups, or ~0.1 ms with new
narrowing headers.

Pure module: no NATS, no I/O.
"""

from __future__ import annotations

from cachetools import LRUCache

from libs.common.contracts.grants import GrantSet
from libs.common.contracts.messages import pairs_digest

from .filters import Narrowing

__all__ = ["Visibility"]

Pair = tuple[str, str]
_Patterns = tuple[str, ...] | None

_LISTS = 8
"""Lists kept: one per catalog revision in use (ingress's and codemode's, and the
one before a change while replicas catch up)."""
_ANSWERS = 256
"""Answers kept: one per (list, grant set) and per (list, grant set, narrowing) in use; a
1,343-tool answer is ~50 kB."""


class _Listed:
    """A list of pairs and its distinct servers."""

    __slots__ = ("pairs", "servers")

    def __init__(self, pairs: list[Pair]) -> None:
        self.pairs = pairs
        self.servers = {server for server, _ in pairs}


class Visibility:
    def __init__(self, lists: int = _LISTS, answers: int = _ANSWERS) -> None:
        self._lists: LRUCache[str, _Listed] = LRUCache(maxsize=lists)
        # keyed by patterns, not by the compiled objects: verdicts depend on the patterns alone,
        # and a memo must not keep compiled grant sets (and their verdict caches) alive
        self._granted: LRUCache[tuple[str, _Patterns], list[int]] = LRUCache(maxsize=answers)
        self._answers: LRUCache[tuple[str, _Patterns, _Patterns, _Patterns], list[int]] = LRUCache(maxsize=answers)

    def learn(self, pairs: list[Pair]) -> str:
        """Hold a list under its digest and return that.

        The digest is `messages.pairs_digest`, computed here: a sender's word for it is never taken."""
        digest = pairs_digest(pairs)
        if digest not in self._lists:
            self._lists[digest] = _Listed(pairs)
        return digest

    def knows(self, digest: str) -> bool:
        return digest in self._lists

    def allowed(self, grants: GrantSet, narrowing: Narrowing, digest: str) -> list[int]:
        """Indexes of the pairs of list `digest` that `grants` and `narrowing` both let through.

        `learn` the list first: KeyError if it is not held. The list returned is shared: do not change
        it."""
        listed = self._lists[digest]
        granted_at = (digest, grants.patterns)
        granted = self._granted.get(granted_at)
        if granted is None:
            pairs = listed.pairs
            granted = self._granted[granted_at] = [i for i, (s, t) in enumerate(pairs) if grants.allows(s, t)]
        if narrowing.servers is None and narrowing.tools is None:
            return granted
        memo = (digest, grants.patterns, narrowing.servers, narrowing.tools)
        answer = self._answers.get(memo)
        if answer is None:
            answer = self._answers[memo] = _narrowed(granted, listed, narrowing)
        return answer


def _narrowed(granted: list[int], listed: _Listed, narrowing: Narrowing) -> list[int]:
    # a narrowing's server patterns depend on the server alone: matched once per server, not per tool
    pairs = listed.pairs
    admitted = {server for server in listed.servers if narrowing.admits_server(server)}
    through = [i for i in granted if pairs[i][0] in admitted]
    if narrowing.tools is None:
        return through
    return [i for i in through if narrowing.admits_tool(*pairs[i])]
