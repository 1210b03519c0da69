"""After a new query model (the project's .venv): the shipped reference needs' vectors.

    .venv/bin/python tools/search_model/reference.py

Writes services/codemode/models/reference-needs.npz: the vectors the fine-tuned query model gives
the reference sample of the shipped needs (`services.codemode.needs.sample`), which every tool's
hubness is measured against. Shipping them spares each fresh start embedding a thousand needs; the
service recomputes them itself whenever its query model or the shipped needs are not these.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.codemode import embedding, needs  # noqa: E402
from services.codemode.vectors import REFERENCE_VECTORS, reference_digest  # noqa: E402


def main() -> None:
    embedder = embedding.load(2, "tuned")
    if isinstance(embedder, str) or embedder.query_fallback:
        raise SystemExit(embedder if isinstance(embedder, str) else embedder.query_fallback)
    texts = needs.load().reference
    vectors = embedder.encode_queries(list(texts)).astype(np.float16)
    with open(REFERENCE_VECTORS, "wb") as out:
        np.savez(out, vectors=vectors, model=np.array(embedder.query_model_id), needs=np.array(reference_digest(texts)))
    print(f"{len(texts)} reference needs -> {REFERENCE_VECTORS}")


if __name__ == "__main__":
    main()
