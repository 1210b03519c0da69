"""Tool embeddings computed once per definition, kept across restarts in a bounded cache file.

A tool's vector is the embedding of its text (`tool_text`: server, name, description), keyed by
the sha256 of the model id, the text recipe's version, the server name and the definition's
canonical JSON: a definition that changes gets a new key, so its vector is recomputed, and one
that does not is never embedded twice. The cache holds at most `max_entries` vectors (the least
recently used go first) and is written to `path` (an `.npz` file: keys, float16 vectors, the
model id; written to a temporary file then renamed, so a crash never leaves half a file). A file
of another model or recipe, or one that cannot be read, is ignored and replaced.

Why a file in the codemode service's data directory and not a NATS bucket: the vectors are
derived data that any replica recomputes in seconds, they are only ever read by the replica that
made them, and a shared bucket would give every codemode replica (the service that runs
untrusted scripts) write access to what every other replica ranks with.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson

from .embedding import DIMENSIONS, Embedder
from .toolset import ToolSpec

__all__ = ["RECIPE", "VectorStore", "definition_key", "tool_text"]

log = logging.getLogger(__name__)

RECIPE: Final = "1"
"""Version of `tool_text`: changing how a tool's text is made changes every key."""
_WORDS = re.compile(r"[A-Za-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_DESCRIPTION_CHARS: Final = 1000
"""The model reads 128 tokens: more of a long description would be cut anyway."""

Vector = np.ndarray[Any, np.dtype[np.float32]]


def _readable(name: str) -> str:
    """`maps_elevation` -> maps elevation, `createIssue` -> create Issue."""
    return " ".join(_CAMEL.sub(" ", word) for word in _WORDS.findall(name))


def tool_text(spec: ToolSpec) -> str:
    """What is embedded for a tool: its server, its name as words, then its description."""
    description = " ".join(spec.description.split())[:_DESCRIPTION_CHARS]
    return f"{_readable(spec.server)}: {_readable(spec.tool)}. {description}"


def definition_key(model_id: str, spec: ToolSpec) -> str:
    canonical = orjson.dumps(spec.definition, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(f"{model_id}\0{RECIPE}\0{spec.server}\0".encode() + canonical)
    return digest.hexdigest()


class VectorStore:
    """Vectors by definition key, for one embedder. Thread-safe: computing runs off the event loop."""

    def __init__(self, embedder: Embedder, path: Path | None = None, max_entries: int = 20_000) -> None:
        self.embedder = embedder
        self.path = path
        self.max_entries = max_entries
        self._vectors: OrderedDict[str, Vector] = OrderedDict()
        self._lock = threading.Lock()
        self._dirty = False
        self.computed = 0
        """Vectors this store embedded (not loaded from the file): a definition seen before costs none."""
        if path is not None:
            self._load(path)

    def __len__(self) -> int:
        return len(self._vectors)

    def keys_for(self, specs: Sequence[ToolSpec]) -> list[str]:
        return [definition_key(self.embedder.model_id, spec) for spec in specs]

    def missing(self, keys: Sequence[str]) -> list[int]:
        """Positions in `keys` that have no vector yet."""
        with self._lock:
            return [i for i, key in enumerate(keys) if key not in self._vectors]

    def matrix(self, keys: Sequence[str]) -> Vector | None:
        """The vectors of `keys` as rows, or None while any is missing."""
        with self._lock:
            try:
                rows = [self._vectors[key] for key in keys]
            except KeyError:
                return None
            for key in keys:
                self._vectors.move_to_end(key)
        return np.vstack(rows).astype(np.float32) if rows else np.zeros((0, DIMENSIONS), dtype=np.float32)

    def compute(self, specs: Sequence[ToolSpec], keys: Sequence[str]) -> int:
        """Embed the tools among `specs` (with their `keys`) that have no vector; how many it embedded."""
        todo = [i for i in self.missing(keys)]
        if not todo:
            return 0
        vectors = self.embedder.encode([tool_text(specs[i]) for i in todo])
        with self._lock:
            for row, i in enumerate(todo):
                self._vectors[keys[i]] = vectors[row]
                self._vectors.move_to_end(keys[i])
            while len(self._vectors) > self.max_entries:
                self._vectors.popitem(last=False)
            self._dirty = True
            self.computed += len(todo)
        return len(todo)

    def save(self) -> None:
        """Write the cache file if anything changed since it was read or last written."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            keys = np.array(list(self._vectors), dtype="S64")
            vectors = np.vstack(list(self._vectors.values())).astype(np.float16) if len(keys) else np.zeros((0, 0))
            self._dirty = False
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                np.savez(out, keys=keys, vectors=vectors, model=np.array(self._model()))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("tool search: could not write the vector cache %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _model(self) -> str:
        return f"{self.embedder.model_id}/{RECIPE}"

    def _load(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["model"]) != self._model():
                    log.info("tool search: the vector cache %s is of another model; recomputing", path)
                    return
                keys, vectors = data["keys"], data["vectors"]
                if vectors.shape != (len(keys), DIMENSIONS):
                    raise ValueError(f"vectors of shape {vectors.shape} for {len(keys)} keys")
                for key, vector in zip(keys[-self.max_entries :], vectors[-self.max_entries :], strict=True):
                    self._vectors[key.decode()] = vector.astype(np.float32)
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError) as exc:
            log.warning("tool search: ignoring the unreadable vector cache %s: %s", path, exc)
