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
        self._patterns = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None

    def prepare(self, blob: str, lower: str) -> Scan | None:
        del blob
        terms = self._terms is not None and any(t in lower for t in self._lowered)
        if not terms and self._patterns is None:
            return None
        return lambda text, key: self._scan(text, terms)

    def _scan(self, text: str, terms: bool) -> list[Finding]:
        found: list[Finding] = []
        if terms and self._terms is not None:
            found.extend(
                Finding(self.name, "term", *m.span()) for m in self._terms.finditer(text) if m.end() > m.start()
            )
        if self._patterns is not None:
            found.extend(
                Finding(self.name, "pattern", *m.span()) for m in self._patterns.finditer(text) if m.end() > m.start()
            )
        return found
