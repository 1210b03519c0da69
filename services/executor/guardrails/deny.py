"""The deny-list detector: words and phrases (case-insensitive) and regular expressions a rule names."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .base import Finding, Scan

__all__ = ["DenyDetector"]


class DenyDetector:
    name = "deny"
    entities = frozenset({"term", "pattern"})

    def __init__(self, terms: Sequence[str], patterns: Sequence[str]) -> None:
        self._lowered = tuple(t.lower() for t in terms)
        self._terms = re.compile("|".join(re.escape(t) for t in terms), re.IGNORECASE) if terms else None
        # compiled one by one: a pattern may start with its own flags, `(?i)`, which an alternation
        # of all of them would refuse
        self._patterns = tuple(re.compile(p) for p in patterns)

    def prepare(self, blob: str, lower: str) -> Scan | None:
        del blob
        terms = self._terms is not None and any(t in lower for t in self._lowered)
        if not terms and not self._patterns:
            return None
        return lambda text, key: self._scan(text, terms)

    def _scan(self, text: str, terms: bool) -> list[Finding]:
        found: list[Finding] = []
        if terms and self._terms is not None:
            found.extend(
                Finding(self.name, "term", *m.span()) for m in self._terms.finditer(text) if m.end() > m.start()
            )
        for pattern in self._patterns:
            spans = (m.span() for m in pattern.finditer(text))
            found.extend(Finding(self.name, "pattern", a, b) for a, b in spans if b > a)
        return found
