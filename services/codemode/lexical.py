"""The lexical half of tool search: BM25 over each tool's name, server, description and parameter names.

A tool is one document whose fields count differently: a query term in the tool's name counts
`NAME_WEIGHT` times, in its server's name `SERVER_WEIGHT` times, in the description once, in a
parameter name `PARAM_WEIGHT` times. Terms come from `terms.Terms` (stems, products kept whole).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Final

from .terms import Terms
from .toolset import ToolSpec

__all__ = ["LexicalIndex"]

_K1: Final = 1.2
_B: Final = 0.75
NAME_WEIGHT: Final = 3
SERVER_WEIGHT: Final = 2
PARAM_WEIGHT: Final = 1


def _document(spec: ToolSpec, terms: Terms) -> Counter[str]:
    counts: Counter[str] = Counter()
    for term in terms(spec.tool):
        counts[term] += NAME_WEIGHT
    for term in terms(spec.server):
        counts[term] += SERVER_WEIGHT
    counts.update(terms(spec.description))
    for name in spec.params.values():
        for term in terms(name):
            counts[term] += PARAM_WEIGHT
    return counts


class LexicalIndex:
    """Built once per set of tools; a search costs one pass over the postings of the query's terms."""

    def __init__(self, specs: Sequence[ToolSpec], terms: Terms) -> None:
        self.terms = terms
        docs = [_document(spec, terms) for spec in specs]
        self._tf = docs
        lengths = [sum(doc.values()) for doc in docs]
        average = (sum(lengths) / len(lengths)) if lengths else 1.0
        self._norm = [_K1 * (1 - _B + _B * length / average) for length in lengths]
        self._postings: dict[str, list[int]] = {}
        for i, doc in enumerate(docs):
            for term in doc:
                self._postings.setdefault(term, []).append(i)
        total = len(docs)
        self._idf = {
            term: math.log(1 + (total - len(postings) + 0.5) / (len(postings) + 0.5))
            for term, postings in self._postings.items()
        }
        self.names = [frozenset(terms(spec.tool)) or frozenset({"\0"}) for spec in specs]
        """Each tool's name as terms (never empty: a name of stop words alone matches no query)."""

    def scores(self, query: str) -> dict[int, float]:
        """BM25 score of every document sharing a term with `query` (document index -> score)."""
        scores: dict[int, float] = {}
        for term in set(self.terms(query)):
            idf = self._idf.get(term)
            if idf is None:
                continue
            for i in self._postings[term]:
                tf = self._tf[i][term]
                scores[i] = scores.get(i, 0.0) + idf * tf * (_K1 + 1) / (tf + self._norm[i])
        return scores
