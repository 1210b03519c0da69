"""`search_tools`: BM25 over each tool's name, description and parameter names.

Name words count three times (a query word in the name is the strongest signal), the module
name once; a tool whose name consists only of query words gets a bonus. Words are lower-cased,
split at non-letters and camelCase, and a plural `s` is dropped, so "Issues" finds `list_issues`
and `createIssue`. Ties rank by qualified name: the same query always gives the same order.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Final

from .toolset import Toolset, ToolSpec

__all__ = ["SearchIndex", "words"]

_K1: Final = 1.2
_B: Final = 0.75
_NAME_WEIGHT: Final = 3
_WHOLE_NAME_BONUS: Final = 2.0
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")
_STOP: Final = frozenset("a an and the of to in for on by with or is are be it this that from as at".split())


def words(text: str) -> list[str]:
    """Search terms of a text: lower-case word stems."""
    out = []
    for word in _SPLIT.split(_CAMEL.sub(r"\1 \2", text).lower()):
        if not word or word in _STOP:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


def _document(spec: ToolSpec) -> Counter[str]:
    terms: Counter[str] = Counter()
    for word in words(spec.function) + words(spec.tool):
        terms[word] += _NAME_WEIGHT
    terms.update(words(spec.module))
    terms.update(words(spec.description))
    for name in spec.params.values():
        terms.update(words(name))
    return terms


class SearchIndex:
    """Built once per toolset; `search` costs one pass over the documents with a query word."""

    def __init__(self, toolset: Toolset) -> None:
        self._specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
        self._docs = [_document(spec) for spec in self._specs]
        self._lengths = [sum(doc.values()) for doc in self._docs]
        self._average = (sum(self._lengths) / len(self._lengths)) if self._lengths else 1.0
        self._names = [frozenset(words(spec.function)) for spec in self._specs]
        self._postings: dict[str, list[int]] = {}
        for i, doc in enumerate(self._docs):
            for term in doc:
                self._postings.setdefault(term, []).append(i)

    def search(self, query: str, limit: int = 10) -> list[ToolSpec]:
        """The best `limit` tools for `query`; only tools matching at least one query word."""
        scores: dict[int, float] = {}
        total = len(self._docs)
        for term in set(words(query)):
            postings = self._postings.get(term, [])
            if not postings:
                continue
            idf = math.log(1 + (total - len(postings) + 0.5) / (len(postings) + 0.5))
            for i in postings:
                tf = self._docs[i][term]
                norm = tf + _K1 * (1 - _B + _B * self._lengths[i] / self._average)
                scores[i] = scores.get(i, 0.0) + idf * tf * (_K1 + 1) / norm
        asked = frozenset(words(query))
        for i in scores:
            if self._names[i] <= asked:  # every word of the name was asked for: "create pull request"
                scores[i] += _WHOLE_NAME_BONUS
        ranked = sorted(scores, key=lambda i: (-scores[i], self._specs[i].qualified))
        return [self._specs[i] for i in ranked[:limit]]
