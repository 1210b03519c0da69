"""`search_tools`: hybrid retrieval over one key's tools, lexical (BM25) and semantic (embeddings).

Both halves score every tool the view holds; their scores are fused, then re-ranked:
- lexical: BM25 (`lexical.LexicalIndex`), divided by the best lexical score of the query, so it
  lies in 0..1 whatever the query's length;
- semantic: cosine similarity of the query's embedding with the tool's (`embedding.Embedder`,
  vectors cached per definition by `vectors.VectorStore`, blended with the tool's known needs),
  less `HUBNESS_WEIGHT` × the tool's hubness (how near it sits to needs in general);
- fused: `SEMANTIC_WEIGHT` × semantic + (1 − `SEMANTIC_WEIGHT`) × lexical;
- re-ranked: a tool whose server the query names (an entity: "on GitLab", "in Sentry") gains
  `SERVER_BONUS`, one whose whole name the query spells out ("create pull request") `NAME_BONUS`.
The weights were chosen on the even half of tests/data/tool_search/queries.jsonl and checked on
the odd half (docs/code-mode.md, "How search is judged").
Without vectors (no model, or not yet computed) the lexical score alone ranks, and the index
says so (`engine`). Ties rank by qualified name: the same query always gives the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

import numpy as np

from .lexical import LexicalIndex
from .terms import Terms
from .toolset import Toolset, ToolSpec
from .vectors import ToolVectors

__all__ = ["Engine", "SearchIndex"]

Engine = Literal["hybrid", "lexical", "embedding"]
Vector = np.ndarray[Any, np.dtype[np.float32]]

SEMANTIC_WEIGHT: Final = 0.95
HUBNESS_WEIGHT: Final = 0.3
"""Chosen on the even half with needs for every tool, for none, and for two servers in three (0.5 tried)."""
SERVER_BONUS: Final = 0.1
NAME_BONUS: Final = 0.1
MIN_SIMILARITY: Final = 0.1
"""A tool neither half finds (no query term, similarity less hubness below this) is not offered at all."""
_CANDIDATES: Final = 100
"""Tools kept from each half before fusion (the rest score 0 on it)."""


class SearchIndex:
    """Built once per toolset (and its vectors); immutable, so a view shares it between keys."""

    def __init__(
        self,
        toolset: Toolset,
        vectors: ToolVectors | None = None,
        encode: Callable[[str], Vector] | None = None,
        *,
        engine: Engine | None = None,
        revision: int = 0,
    ) -> None:
        self.revision = revision
        """Which needs its vectors were made with (`searcher.Searcher.revision`)."""
        self.specs: list[ToolSpec] = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
        self.terms = Terms(_product(spec.server) for spec in self.specs)
        self.lexical = LexicalIndex(self.specs, self.terms)
        self._products = [_product(spec.server) for spec in self.specs]
        semantic = vectors is not None and encode is not None and len(vectors.vectors) == len(self.specs)
        self._vectors = vectors.vectors if vectors is not None and semantic else None
        self._hub_offset = HUBNESS_WEIGHT * vectors.hubness if vectors is not None and semantic else None
        """Taken off every search's similarities: computed once per index, not per search."""
        self._encode = encode if semantic else None
        self.engine: Engine = engine or ("hybrid" if semantic else "lexical")
        if self.engine != "lexical" and not semantic:
            raise ValueError(f"the {self.engine} engine needs a vector for every tool and a query encoder")

    def search(self, query: str, limit: int = 10) -> list[ToolSpec]:
        """The best `limit` tools for `query`: tools with a query term or a close enough meaning."""
        scores = self.scores(query)
        ranked = sorted(scores, key=lambda i: (-scores[i], self.specs[i].qualified))
        return [self.specs[i] for i in ranked[:limit]]

    def scores(self, query: str) -> dict[int, float]:
        lexical = self.lexical.scores(query)
        best = max(lexical.values(), default=0.0)
        if best > 0:
            lexical = {i: score / best for i, score in lexical.items()}
        if self.engine == "lexical":
            fused = lexical
        else:
            assert self._vectors is not None and self._hub_offset is not None and self._encode is not None
            # Not `@`: numpy hands a matrix-vector product to a multi-threaded BLAS, whose threads
            # cost 7-12 ms to wake on a busy machine for a product of 0.05 ms; einsum's own loop
            # runs on this thread (0.1 ms for 1,587 tools, p95 0.4 ms at load average 15).
            similarity = np.einsum("ij,j->i", self._vectors, self._encode(query))
            similarity -= self._hub_offset
            top = np.argpartition(-similarity, min(_CANDIDATES, len(similarity) - 1))[:_CANDIDATES]
            semantic = {int(i): float(similarity[i]) for i in top if similarity[i] >= MIN_SIMILARITY}
            if self.engine == "embedding":
                return semantic
            fused = {
                i: SEMANTIC_WEIGHT * semantic.get(i, 0.0) + (1 - SEMANTIC_WEIGHT) * lexical.get(i, 0.0)
                for i in semantic.keys() | lexical.keys()
            }
        asked = frozenset(self.terms(query))
        for i in fused:
            if self._products[i] in asked:
                fused[i] += SERVER_BONUS
            if self.lexical.names[i] <= asked:
                fused[i] += NAME_BONUS
        return fused


def _product(server: str) -> str:
    """The product a server's name names first, by the usual convention.

    `github-legacy` -> github, `aws-cloudwatch` -> aws, `digitalocean` -> digitalocean."""
    return server.replace("_", "-").split("-", 1)[0].lower()
