"""After a new model, recipe or needs file (the project's .venv): the shipped tool vectors.

    .venv/bin/python tools/search_model/shipped_vectors.py

Writes services/codemode/models/tool-vectors.npz: the vector and hubness of every tool of the 68
public servers in tests/data/tool-schemas, with the shipped needs, made by the service's own
`VectorStore` (so exactly what a warm service holds), keyed as the service keys them. A fresh start
reads them instead of embedding those tools (services/codemode/vectors.py, "Shipped vectors").
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tool_search import load_toolset  # noqa: E402

from services.codemode import embedding, needs  # noqa: E402
from services.codemode.vectors import SHIPPED_VECTORS, VectorStore  # noqa: E402


def main() -> None:
    embedder = embedding.load(2, "tuned")
    if isinstance(embedder, str) or embedder.query_fallback:
        raise SystemExit(embedder if isinstance(embedder, str) else embedder.query_fallback)
    toolset = load_toolset(ROOT / "tests" / "data" / "tool-schemas")
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    store = VectorStore(embedder, needs=needs.load())
    keys = list(dict.fromkeys(store.keys_for(specs)))  # two servers may carry the same tool
    store.compute(specs, store.keys_for(specs))
    store.export(keys, SHIPPED_VECTORS)
    print(f"{len(keys)} tool vectors -> {SHIPPED_VECTORS} ({SHIPPED_VECTORS.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
