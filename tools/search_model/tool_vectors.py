"""Step 1 (the project's .venv): the tools to train against, as the service embeds them.

    .venv/bin/python tools/search_model/tool_vectors.py OUT.npz

Writes every tool of tests/data/tool-schemas: its qualified name (`<server>__<tool>`), its text
(`services.codemode.vectors.tool_text`) and its vector from the published model the service embeds
tools with (its definition's alone, without needs). The fine-tuned query model is trained to land
next to these vectors, so they must be the service's own, not a re-implementation's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tool_search import load_toolset  # noqa: E402

from services.codemode import embedding  # noqa: E402
from services.codemode.vectors import VectorStore, tool_text  # noqa: E402


def main(out: Path) -> None:
    toolset = load_toolset(ROOT / "tests" / "data" / "tool-schemas")
    embedder = embedding.load(2, "base")
    if isinstance(embedder, str):
        raise SystemExit(embedder)
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    store = VectorStore(embedder)  # no needs: the definitions' own vectors
    keys = store.keys_for(specs)
    store.compute(specs, keys)
    placed = store.matrix(keys)
    assert placed is not None
    np.savez(
        out,
        names=np.array([f"{spec.server}__{spec.tool}" for spec in specs]),
        texts=np.array([tool_text(spec) for spec in specs]),
        vectors=placed.vectors,
    )
    print(f"{len(specs)} tools -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
