"""Ranking variants tried against the search `search_tools` runs, each tuned on the even ids of the
query set and reported on both halves (docs/benchmarks.md, "Tool search").

    .venv/bin/python bench/tool_search_variants.py --schemas tests/data/tool-schemas \\
        --queries tests/data/tool_search/queries.jsonl

Every variant starts from the service's own pieces (`SearchIndex`'s lexical half and terms, the
tool vectors `VectorStore` caches) and changes one thing:

- `rrf`: reciprocal rank fusion (k = 60) instead of the weighted sum of scores;
- `servers`: each tool also gains 0.3 × the mean of its server's two best scores (servers first);
- `verbs`: +0.04 when the query's action (create / get / list / update / delete / search, from a
  short verb list) is the one the tool's name starts with;
- `params`: the tool text embedded with its parameter names appended;
- `sentences`: 0.3 × the best cosine of the query with any one sentence of the description (up
  to 8 a tool, each embedded on its own with the tool's name), 0.7 × the usual one;
- `prf`: pseudo-relevance feedback: the query's vector plus 0.1 × the mean vector of the fused
  ranking's top 5 tools, re-normalised, then scored and fused again;
- `multi`: several vectors a tool: 0.1 × the cosine with its name alone and 0.1 × with its name and
  first sentence added to the usual one (weights the best of a grid on the even half);
- `multi-max`: the best of the three cosines;
- `server-prior`: + 0.05 × the cosine of the query with its server's text (the server's name and
  all its tools' names, embedded once);
- `bm25f-name5`, `bm25f-noparams`: the lexical half with the name counted 5 times instead of 3, or
  the parameter names left out;
- `learned`: a linear re-ranker of the top 50 over eight signals (cosine with four tool texts:
  the usual, name only, with parameters, name and first sentence; BM25; the two bonuses; verbs),
  trained on the even half (listwise softmax, L2 1e-3).

Only a variant better on the even half than the reference would be a candidate; the odd half says
whether it holds. Embeds the extra texts each run (a few minutes on a busy machine).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tool_search import DEFAULT_CACHE, load_queries, load_toolset

from services.codemode import embedding, lexical, search
from services.codemode.search import SearchIndex
from services.codemode.terms import Terms
from services.codemode.vectors import VectorStore, _readable, tool_text

Scores = Callable[[int], np.ndarray]

ACTIONS = {
    "create": "create add new open file declare make register post insert spin generat draft compos submit launch",
    "get": "get show read view fetch describ detail info inspect look retriev",
    "list": "list all which everi enumer browse name",
    "update": "updat chang edit modifi renam set mark move resiz assign turn toggl enabl disabl transit",
    "delete": "delet remov drop destroy eras unassign clean purg discard",
    "search": "search find query lookup",
}
_ACTIONS = {action: set(stems.split()) for action, stems in ACTIONS.items()}


def actions(terms: list[str]) -> set[str]:
    return {action for action, stems in _ACTIONS.items() if any(t in stems for t in terms)}


def first_action(terms: list[str]) -> set[str]:
    for term in terms:
        if found := actions([term]):
            return found
    return set()


class Bench:
    def __init__(self, schemas: Path, queries: Path, cache: Path) -> None:
        toolset = load_toolset(schemas)
        self.index = SearchIndex(toolset)
        self.specs = self.index.specs
        self.queries = load_queries(queries)
        loaded = embedding.load()
        if isinstance(loaded, str):
            raise SystemExit(f"the variants need the embedding model: {loaded}")
        self.embedder = loaded
        store = VectorStore(loaded, cache)
        keys = store.keys_for(self.specs)
        store.compute(self.specs, keys)
        store.save()
        vectors = store.matrix(keys)
        assert vectors is not None
        self.q = loaded.encode_queries([q["query"] for q in self.queries])
        self.sim = {"usual": self.q @ vectors.vectors.T}
        names = [f"{s.server}__{s.tool}" for s in self.specs]
        self.relevant = [np.array([n in set(q["relevant"]) for n in names]) for q in self.queries]
        self.even = [i for i, q in enumerate(self.queries) if int(re.sub(r"\D", "", q["id"]) or 0) % 2 == 0]
        self.odd = [i for i in range(len(self.queries)) if i not in set(self.even)]
        terms: Terms = self.index.terms
        self.lexical = []
        self.server_bonus = []
        self.name_bonus = []
        products = [search._product(s.server) for s in self.specs]
        for q in self.queries:
            scores = np.zeros(len(self.specs))
            for i, score in self.index.lexical.scores(q["query"]).items():
                scores[i] = score
            self.lexical.append(scores / scores.max() if scores.max() > 0 else scores)
            asked = frozenset(terms(q["query"]))
            self.server_bonus.append(np.array([p in asked for p in products], dtype=float))
            self.name_bonus.append(np.array([n <= asked for n in self.index.lexical.names], dtype=float))
        tool_actions = [first_action(terms(s.tool)) for s in self.specs]
        self.verbs = []
        for q in self.queries:
            wanted = actions(terms(q["query"]))
            self.verbs.append(np.array([bool(a & wanted) for a in tool_actions], dtype=float))
        servers = sorted({s.server for s in self.specs})
        self.server_of = np.array([servers.index(s.server) for s in self.specs])
        self.vectors = vectors

    def embed_variants(self) -> None:
        def params(spec: Any) -> str:
            return ", ".join(_readable(p) for p in spec.params.values())

        def first(text: str) -> str:
            return " ".join(text.split()).split(". ")[0]

        texts = {
            "params": [f"{tool_text(s)} Parameters: {params(s)}" for s in self.specs],
            "name": [_readable(s.tool) for s in self.specs],
            "first": [f"{_readable(s.tool)}: {first(s.description)}" for s in self.specs],
        }
        for name, batch in texts.items():
            self.sim[name] = self.q @ self.embedder.encode(batch).T
        sentences, owner = [], []
        for i, spec in enumerate(self.specs):
            prose = " ".join(spec.description.split())
            for sentence in [s for s in re.split(r"(?<=[.!?])\s+", prose) if len(s) > 15][:8]:
                sentences.append(f"{_readable(spec.tool)}: {sentence[:300]}")
                owner.append(i)
        servers = sorted({s.server for s in self.specs})
        server_texts = [
            f"{_readable(server)}: " + ", ".join(_readable(s.tool) for s in self.specs if s.server == server)
            for server in servers
        ]
        self.sim["server"] = (self.q @ self.embedder.encode(server_texts).T)[:, self.server_of]
        per_sentence = self.q @ self.embedder.encode(sentences).T
        best = np.zeros_like(self.sim["usual"])
        for column, i in enumerate(owner):
            best[:, i] = np.maximum(best[:, i], per_sentence[:, column])
        self.sim["sentences"] = best

    def lexical_with(self, name_weight: int, param_weight: int) -> list[np.ndarray]:
        """The lexical half's normalised scores with other field weights (BM25F)."""
        saved = lexical.NAME_WEIGHT, lexical.PARAM_WEIGHT
        lexical.NAME_WEIGHT, lexical.PARAM_WEIGHT = name_weight, param_weight
        try:
            index = lexical.LexicalIndex(self.specs, self.index.terms)
        finally:
            lexical.NAME_WEIGHT, lexical.PARAM_WEIGHT = saved
        out = []
        for q in self.queries:
            scores = np.zeros(len(self.specs))
            for i, score in index.scores(q["query"]).items():
                scores[i] = score
            out.append(scores / scores.max() if scores.max() > 0 else scores)
        return out

    def prf(self, reference: Scores, share: float = 0.1, top: int = 5) -> Scores:
        def semantic(qi: int) -> np.ndarray:
            best = np.argsort(-reference(qi))[:top]
            query = self.q[qi] + share * self.vectors[best].mean(axis=0)
            return np.asarray(self.vectors @ (query / np.linalg.norm(query)))

        return self.fused(semantic)

    def fused(self, semantic: Scores, rrf: int | None = None, lexical: list[np.ndarray] | None = None) -> Scores:
        """The service's fusion (search.py's weights) over `semantic`, or reciprocal rank fusion."""

        def scores(qi: int) -> np.ndarray:
            s = np.where(semantic(qi) >= search.MIN_SIMILARITY, semantic(qi), 0.0)
            words = (lexical or self.lexical)[qi]
            if rrf is None:
                out = search.SEMANTIC_WEIGHT * s + (1 - search.SEMANTIC_WEIGHT) * words
            else:
                ranks_s = np.empty(len(s))
                ranks_s[np.argsort(-s)] = np.arange(1, len(s) + 1)
                ranks_l = np.empty(len(s))
                ranks_l[np.argsort(-words)] = np.arange(1, len(s) + 1)
                out = search.SEMANTIC_WEIGHT / (rrf + ranks_s) + np.where(
                    words > 0, (1 - search.SEMANTIC_WEIGHT) / (rrf + ranks_l), 0.0
                )
                out = out / out.max()
            return out + search.SERVER_BONUS * self.server_bonus[qi] + search.NAME_BONUS * self.name_bonus[qi]

        return scores

    def metrics(self, scores: Scores, subset: list[int]) -> tuple[float, float, float, float]:
        hits = {1: 0, 5: 0, 10: 0}
        reciprocal = 0.0
        for qi in subset:
            s = scores(qi)
            top = np.lexsort((np.arange(len(s)), -s))[:10]
            found = self.relevant[qi][top]
            rank = int(np.argmax(found)) + 1 if found.any() else None
            for k in hits:
                hits[k] += rank is not None and rank <= k
            reciprocal += 1 / rank if rank else 0.0
        n = len(subset)
        return hits[1] / n, hits[5] / n, hits[10] / n, reciprocal / n

    def variants(self) -> dict[str, Scores]:
        usual = self.sim["usual"]
        reference = self.fused(lambda qi: usual[qi])

        def servers(qi: int) -> np.ndarray:
            s = reference(qi)
            best = np.array([np.sort(s[self.server_of == j])[-2:].mean() for j in range(self.server_of.max() + 1)])
            return s + 0.3 * best[self.server_of]

        return {
            "reference (search.py)": reference,
            "rrf": self.fused(lambda qi: usual[qi], rrf=60),
            "servers": servers,
            "verbs": lambda qi: reference(qi) + 0.04 * self.verbs[qi],
            "params": self.fused(lambda qi: self.sim["params"][qi]),
            "sentences": self.fused(lambda qi: 0.7 * usual[qi] + 0.3 * self.sim["sentences"][qi]),
            "prf": self.prf(reference),
            "multi": self.fused(
                lambda qi: (usual[qi] + 0.1 * self.sim["name"][qi] + 0.1 * self.sim["first"][qi]) / 1.2
            ),
            "multi-max": self.fused(
                lambda qi: np.maximum.reduce([usual[qi], self.sim["name"][qi], self.sim["first"][qi]])
            ),
            "server-prior": lambda qi: reference(qi) + 0.05 * self.sim["server"][qi],
            "bm25f-name5": self.fused(lambda qi: usual[qi], lexical=self.lexical_with(5, lexical.PARAM_WEIGHT)),
            "bm25f-noparams": self.fused(lambda qi: usual[qi], lexical=self.lexical_with(lexical.NAME_WEIGHT, 0)),
            "learned": self.learned(reference),
        }

    def learned(self, reference: Scores, candidates: int = 50, steps: int = 1500) -> Scores:
        def features(qi: int) -> np.ndarray:
            signals = [self.sim[k][qi] for k in ("usual", "name", "params", "first")]
            signals += [self.lexical[qi], self.server_bonus[qi], self.name_bonus[qi], self.verbs[qi]]
            return np.stack(signals, axis=1)

        pools = {qi: np.argsort(-reference(qi))[:candidates] for qi in range(len(self.queries))}
        rows = {qi: features(qi)[pool] for qi, pool in pools.items()}
        weights = np.array([9.0, 0, 0, 0, 1.0, 1.0, 2.0, 0])
        for _ in range(steps):
            gradient = np.zeros_like(weights)
            counted = 0
            for qi in self.even:
                wanted = self.relevant[qi][pools[qi]]
                if not wanted.any():
                    continue
                s = rows[qi] @ weights
                p = np.exp(s - s.max())
                gradient += rows[qi].T @ (p / p.sum() - wanted / wanted.sum())
                counted += 1
            weights -= 0.5 * (gradient / counted + 1e-3 * weights)
        self.learned_weights = weights

        def scores(qi: int) -> np.ndarray:
            out = np.full(len(self.specs), -1e9)
            out[pools[qi]] = rows[qi] @ weights
            return out

        return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schemas", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="tool vector cache file")
    args = parser.parse_args()
    bench = Bench(args.schemas, args.queries, args.cache)
    bench.embed_variants()
    print(f"{len(bench.specs)} tools; even {len(bench.even)} queries (tuned on), odd {len(bench.odd)} (held out)")
    print(f"{'variant':<24}{'even r@1 r@5 r@10 MRR':<30}odd r@1 r@5 r@10 MRR")
    for name, scores in bench.variants().items():
        even, odd = bench.metrics(scores, bench.even), bench.metrics(scores, bench.odd)

        def show(m: tuple[float, float, float, float]) -> str:
            return " ".join(f"{v:.1%}" for v in m[:3]) + f" {m[3]:.3f}"

        print(f"{name:<24}{show(even):<30}{show(odd)}")
    signals = "usual name params first bm25 server_bonus name_bonus verbs".split()
    print("learned weights: " + ", ".join(f"{n} {w:.2f}" for n, w in zip(signals, bench.learned_weights, strict=True)))


if __name__ == "__main__":
    main()
