"""Tool vectors computed once per definition, kept across restarts in a bounded cache file.

A tool's vector is the embedding of its text (`tool_text`: server, name, description), blended,
when the tool has known needs (`needs.Needs`), with the mean embedding of those needs:
`DEFINITION_SHARE` of the first, the rest of the second. Needs are embedded by the model that
embeds queries, so they sit where agents' queries do. Beside each vector the store keeps the
tool's **hubness**: the mean of its `HUB_NEIGHBOURS` highest cosines with a fixed sample of needs
(`Needs.reference`). A tool whose vector is near needs in general (one with many needs, whose
mean is a hub) would otherwise outrank tools with none for queries meant for neither; search
subtracts a share of it (`search.HUBNESS_WEIGHT`), as CSLS does for cross-lingual retrieval.

Vectors are keyed by the sha256 of the text recipe's version, the text embedded (`tool_text`: the
server's name as words, the tool's name, its description) and its needs: exactly what the vector is
made of, so a definition (or its needs) that changes gets a new key and is embedded again, and one
that does not is never embedded twice, whatever the operator named its server (`gitlab_zereight`
and `gitlab-zereight` read the same).

**Shipped vectors.** `models/tool-vectors.npz` holds the vectors of every tool of the 68 public
servers in `tests/data/tool-schemas` with their shipped needs (`tools/search_model/shipped_vectors.py`
writes it), under the same keys. A store built with `shipped=True` reads them first, so a fresh
start (no cache file, a new replica) ranks those tools exactly as a warm one from its first search,
without embedding them; they are used only while the models, the recipe and the reference needs
are the ones they were made with (`_model`), and a tool whose text or needs differ is embedded as
before. The cache holds at most
`max_entries` vectors (the least recently used go first) and is written to `path` (an `.npz`
file: keys, float16 vectors and hubness, the reference needs' vectors, the models' ids; written to
a temporary file then renamed, so a crash never leaves half a file). A file of other models,
recipe or reference, or one that cannot be read, is ignored and replaced.

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
from typing import Any, Final, NamedTuple

import numpy as np
import orjson

from .embedding import DIMENSIONS, Embedder
from .needs import Needs
from .toolset import ToolSpec

__all__ = ["NEEDS_HUBNESS", "RECIPE", "SHIPPED_VECTORS", "ToolVectors", "VectorStore", "definition_key", "tool_text"]

log = logging.getLogger(__name__)

RECIPE: Final = "4"
"""Version of how a tool's vector is made (`tool_text`, the blend with needs, hubness): changing it
changes every key."""
DEFINITION_SHARE: Final = 0.3
"""Of a tool with needs, the share of its definition's embedding in its vector (the rest: its
needs' mean). Chosen on the even half of the graded set, 0.1 to 0.5 tried (docs/benchmarks.md)."""
NEEDS_HUBNESS: Final = 0.2
"""Added to the hubness of a tool with needs (0.06 off its similarity at `search.HUBNESS_WEIGHT`):
beside tools with needs, a tool without them lost rank 1 to their needs' pull, 2.4 points of
recall@1 on servers held out of the needs (docs/benchmarks.md, "Tools without needs"). A constant
for every tool when all have needs, so it moves nothing then."""
HUB_NEIGHBOURS: Final = 3
"""Of the reference needs (`Needs.reference`, 1,000): the 3 nearest. Against 10 of 3,000, within two
of 200 graded needs either way on the even half, at a third of the start-up cost (docs/benchmarks.md)."""
REFERENCE_VECTORS = Path(__file__).with_name("models") / "reference-needs.npz"
SHIPPED_VECTORS = Path(__file__).with_name("models") / "tool-vectors.npz"
"""The vectors of the public servers' tools in `tests/data/tool-schemas` (see the module's doc)."""
"""The reference needs' vectors by the fine-tuned query model, so a fresh start embeds none of them
(`tools/search_model/reference.py` writes it; used only while its model and needs match)."""
_WORDS = re.compile(r"[A-Za-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_DESCRIPTION_CHARS: Final = 1000
"""The model reads 128 tokens: more of a long description would be cut anyway."""
_ROW: Final = DIMENSIONS + 1
"""A stored row: the vector, then the tool's hubness."""

Vector = np.ndarray[Any, np.dtype[np.float32]]


class ToolVectors(NamedTuple):
    """The vectors of a view's tools (one row each, unit length) and each tool's hubness."""

    vectors: Vector
    hubness: Vector


def _readable(name: str) -> str:
    """`maps_elevation` -> maps elevation, `createIssue` -> create Issue."""
    return " ".join(_CAMEL.sub(" ", word) for word in _WORDS.findall(name))


def tool_text(spec: ToolSpec) -> str:
    """What is embedded for a tool: its server, its name as words, then its description."""
    description = " ".join(spec.description.split())[:_DESCRIPTION_CHARS]
    return f"{_readable(spec.server)}: {_readable(spec.tool)}. {description}"


def definition_key(spec: ToolSpec, needs: Sequence[str] = ()) -> str:
    """What the tool's vector is made of, hashed: the recipe, the text embedded and the needs."""
    digest = hashlib.sha256(f"{RECIPE}\0{tool_text(spec)}\0".encode())
    digest.update(orjson.dumps(list(needs)))
    return digest.hexdigest()


class VectorStore:
    """Vectors by definition key, for one embedder. Thread-safe: computing runs off the event loop."""

    def __init__(
        self,
        embedder: Embedder,
        path: Path | None = None,
        max_entries: int = 20_000,
        needs: Needs | None = None,
        *,
        shipped: Path | None = None,
    ) -> None:
        self.embedder = embedder
        self.path = path
        self.max_entries = max_entries
        self.needs = needs or Needs()
        self._reference_texts = self.needs.reference
        self._reference: Vector | None = shipped_reference(embedder.query_model_id, self._reference_texts)
        self._vectors: OrderedDict[str, Vector] = OrderedDict()
        self._shipped: dict[str, Vector] = {}
        """Read-only, never evicted nor written to the cache file: the vectors `shipped` holds."""
        self._lock = threading.Lock()
        self._dirty = False
        self.computed = 0
        """Vectors this store embedded (not loaded from the file): a definition seen before costs none."""
        if shipped is not None:
            self._load_shipped(shipped)
        if path is not None:
            self._load(path)

    def __len__(self) -> int:
        """Vectors embedded or read from the cache file (the shipped ones not counted)."""
        return len(self._vectors)

    @property
    def shipped(self) -> int:
        """Shipped vectors this store may use (0: none, or not of these models and needs)."""
        return len(self._shipped)

    def keys_for(self, specs: Sequence[ToolSpec]) -> list[str]:
        return [definition_key(spec, self.needs.of(spec)) for spec in specs]

    def missing(self, keys: Sequence[str]) -> list[int]:
        """Positions in `keys` that have no vector yet."""
        with self._lock:
            return [i for i, key in enumerate(keys) if key not in self._vectors and key not in self._shipped]

    def matrix(self, keys: Sequence[str]) -> ToolVectors | None:
        """The vectors of `keys` as rows, or None while any is missing."""
        with self._lock:
            try:
                rows = [self._vectors[key] if key in self._vectors else self._shipped[key] for key in keys]
            except KeyError:
                return None
            for key in keys:
                if key in self._vectors:
                    self._vectors.move_to_end(key)
        table = np.vstack(rows).astype(np.float32) if rows else np.zeros((0, _ROW), dtype=np.float32)
        return ToolVectors(np.ascontiguousarray(table[:, :DIMENSIONS]), np.ascontiguousarray(table[:, DIMENSIONS]))

    def compute(self, specs: Sequence[ToolSpec], keys: Sequence[str]) -> int:
        """Embed the tools among `specs` (with their `keys`) that have no vector; how many it embedded.

        A tool whose needs changed since its key was taken (needs written meanwhile) is left for the next
        call, under its new key: a vector is only ever stored under what it is made of."""
        known = self.needs
        todo = [i for i in self.missing(keys) if definition_key(specs[i], known.of(specs[i])) == keys[i]]
        if not todo:
            return 0
        vectors = self.embedder.encode([tool_text(specs[i]) for i in todo])
        needs = [known.of(specs[i]) for i in todo]
        flat = [need for group in needs for need in group]
        if flat:
            need_vectors = self.embedder.encode_queries(flat)
            start = 0
            for row, group in enumerate(needs):
                if group:
                    mean = need_vectors[start : start + len(group)].mean(axis=0)
                    start += len(group)
                    blend = DEFINITION_SHARE * vectors[row] + (1 - DEFINITION_SHARE) * _unit(mean)
                    vectors[row] = _unit(blend)
        hubness = self._hubness(vectors) + NEEDS_HUBNESS * np.array([bool(group) for group in needs], dtype=np.float32)
        log.info("tool search: embedded %d tools, %d of them with needs", len(todo), sum(map(bool, needs)))
        with self._lock:
            for row, i in enumerate(todo):
                self._vectors[keys[i]] = np.append(vectors[row], hubness[row]).astype(np.float32)
                self._vectors.move_to_end(keys[i])
            while len(self._vectors) > self.max_entries:
                self._vectors.popitem(last=False)
            self._dirty = True
            self.computed += len(todo)
        return len(todo)

    def _hubness(self, vectors: Vector) -> Vector:
        if self._reference is None:
            self._reference = (
                self.embedder.encode_queries(list(self._reference_texts))
                if self._reference_texts
                else np.zeros((0, DIMENSIONS), dtype=np.float32)
            )
            self._dirty = True
        if len(self._reference) < HUB_NEIGHBOURS:
            return np.zeros(len(vectors), dtype=np.float32)
        similarity = vectors @ self._reference.T
        nearest = np.partition(similarity, -HUB_NEIGHBOURS, axis=1)[:, -HUB_NEIGHBOURS:]
        hubness: Vector = nearest.mean(axis=1).astype(np.float32)
        return hubness

    def save(self) -> None:
        """Write the cache file if anything changed since it was read or last written."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            keys = np.array(list(self._vectors), dtype="S64")
            vectors = np.vstack(list(self._vectors.values())).astype(np.float16) if len(keys) else np.zeros((0, 0))
            reference = self._reference if self._reference is not None else np.zeros((0, 0))
            self._dirty = False
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                np.savez(
                    out,
                    keys=keys,
                    vectors=vectors,
                    reference=reference.astype(np.float16),
                    model=np.array(self._model()),
                )
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("tool search: could not write the vector cache %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _model(self) -> str:
        """What the vectors of a cache file depend on besides each tool's own key."""
        reference = reference_digest(self._reference_texts)[:16]
        return f"{self.embedder.model_id}+{self.embedder.query_model_id}/{RECIPE}/{reference}"

    def _load_shipped(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["model"]) != self._model():
                    log.info("tool search: the shipped tool vectors are of other models or needs; not used")
                    return
                keys, vectors = data["keys"], data["vectors"]
                if vectors.shape != (len(keys), _ROW):
                    raise ValueError(f"vectors of shape {vectors.shape} for {len(keys)} keys")
                table = vectors.astype(np.float32)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("tool search: ignoring the shipped tool vectors %s: %s", path, exc)
            return
        self._shipped = {key.decode(): row for key, row in zip(keys, table, strict=True)}

    def export(self, keys: Sequence[str], out: Path) -> None:
        """Write the vectors of `keys` as a shipped-vectors file (`tools/search_model/shipped_vectors.py`)."""
        placed = self.matrix(keys)
        if placed is None:
            raise ValueError("every key needs a vector before it is shipped")
        table = np.hstack([placed.vectors, placed.hubness[:, None]]).astype(np.float16)
        with open(out, "wb") as file:
            np.savez_compressed(file, keys=np.array(keys, dtype="S64"), vectors=table, model=np.array(self._model()))

    def _load(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["model"]) != self._model():
                    log.info("tool search: the vector cache %s is of other models or needs; recomputing", path)
                    return
                keys, vectors, reference = data["keys"], data["vectors"], data["reference"]
                if vectors.shape != (len(keys), _ROW):
                    raise ValueError(f"vectors of shape {vectors.shape} for {len(keys)} keys")
                if reference.shape != (len(self._reference_texts), DIMENSIONS) and reference.size:
                    raise ValueError(f"reference needs of shape {reference.shape}")
                if reference.size:
                    self._reference = reference.astype(np.float32)
                for key, vector in zip(keys[-self.max_entries :], vectors[-self.max_entries :], strict=True):
                    self._vectors[key.decode()] = vector.astype(np.float32)
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError) as exc:
            log.warning("tool search: ignoring the unreadable vector cache %s: %s", path, exc)


def reference_digest(texts: Sequence[str]) -> str:
    return hashlib.sha256(orjson.dumps(list(texts))).hexdigest()


def shipped_reference(query_model_id: str, texts: Sequence[str]) -> Vector | None:
    """The shipped vectors of the reference needs `texts`, if they are of that model and those needs."""
    try:
        with np.load(REFERENCE_VECTORS, allow_pickle=False) as data:
            if str(data["model"]) != query_model_id or str(data["needs"]) != reference_digest(texts):
                return None
            vectors = data["vectors"].astype(np.float32)
    except (OSError, ValueError, KeyError):
        return None
    return vectors if vectors.shape == (len(texts), DIMENSIONS) else None


def _unit(vector: Vector) -> Vector:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
