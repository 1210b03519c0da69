"""Tool search as the codemode service runs it: the model (or why there is none), the vectors, one index per view.

At start the embedding model loads (about a second, off the event loop); when it cannot, search is
lexical only, the log says why once, `bastion_codemode_search_model_loaded` is 0 and every answer
says "lexical only". The shipped vectors (`vectors.SHIPPED_VECTORS`: the public servers' tools the
needs file covers) are read with it, so those tools rank from the first search exactly as on a
warm replica, without a cache file. Whenever the catalog changes, the definitions without a vector
are embedded in the background and the cache file is rewritten; a view's index is hybrid once
every tool it holds has a vector. A view with few tools missing (a definition just changed) embeds
them on the spot; one with many (tools of the deployment's own servers on a fresh start) waits
for the background embedding, at most `search_warmup_wait` seconds: an agent is better served by
one slow first answer than by a lexical ranking it will act on. Past that, the answer is lexical
and says so ("the tools are still being embedded"); readiness does not wait for it, since a replica
that is not ready takes no call at all, not only no search.

Tools that have no needs get some written by the deployment's LLM when one is configured
(`needs_writer`); each written batch bumps `revision`, and a view's hybrid index is rebuilt with
those tools' new vectors once the background has embedded them (until then it keeps serving).

An index only ever holds the tools of its view, the tools a key may call: the vectors of other
definitions sit in the cache but no search reaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from libs.common.runtime.tasks import cancel_and_wait
from libs.common.settings import CodeModeSettings

from . import embedding, needs
from .metrics import CODEMODE_SEARCH_MODEL, CODEMODE_SEARCH_VECTORS, CODEMODE_SEARCHES
from .needs_writer import NeedsWriter, Written
from .search import SearchIndex
from .toolset import Toolset, ToolSpec
from .vectors import SHIPPED_VECTORS, VectorStore

__all__ = ["Found", "Searcher"]

log = logging.getLogger(__name__)

_EMBED_INLINE: Final = 64
"""A view missing at most this many vectors embeds them before answering (a few ms each)."""


@dataclass(frozen=True, slots=True)
class Found:
    tools: list[ToolSpec]
    lexical_only: str | None = None
    """Why the ranking is lexical only (None: hybrid)."""


class Searcher:
    def __init__(self, settings: CodeModeSettings) -> None:
        self.settings = settings
        self.embedder: embedding.Embedder | None = None
        self.unavailable: str | None = "the embedding model is still loading"
        self.store: VectorStore | None = None
        self.queries: embedding.QueryVectors | None = None
        self._background: asyncio.Task[None] | None = None
        self._pending: list[ToolSpec] = []
        self._warm_by: float | None = None
        """While the background embeds what searches wait for: until when they may wait."""
        self.writer = NeedsWriter(settings, self._needs_written)
        self.revision = 0
        """Batches of needs written since start: an index of an older revision is rebuilt."""
        self._toolset: Toolset | None = None

    async def start(self) -> None:
        if not self.settings.search_embeddings:
            self.unavailable = "embeddings are turned off (BASTION_SEARCH_EMBEDDINGS=false)"
        else:
            started = time.perf_counter()
            loaded = await asyncio.to_thread(
                embedding.load, self.settings.search_threads, self.settings.search_query_model
            )
            if isinstance(loaded, str):
                self.unavailable = loaded
            else:
                self.embedder, self.unavailable = loaded, None
                self.queries = embedding.QueryVectors(loaded, self.settings.search_query_cache)
                path = Path(self.settings.search_cache_file) if self.settings.search_cache_file else None
                known = await asyncio.to_thread(self._needs)
                written = await asyncio.to_thread(self.writer.load)
                known = known.merged(written.lines)
                self.store = await asyncio.to_thread(
                    VectorStore, loaded, path, self.settings.search_cache_entries, known, shipped=SHIPPED_VECTORS
                )
                log.info(
                    "tool search: hybrid, tools by %s, queries by %s, %d lines of needs, loaded in %.2f s, "
                    "%d tool vectors from the cache, %d shipped",
                    loaded.model_id,
                    loaded.query_model_id,
                    len(known),
                    time.perf_counter() - started,
                    len(self.store),
                    self.store.shipped,
                )
        if self.unavailable is not None:
            log.warning("tool search is lexical only: %s", self.unavailable)
        CODEMODE_SEARCH_MODEL.set(0 if self.embedder is None else 1)

    def _needs(self) -> needs.Needs:
        shipped, extra = self.settings.search_needs, self.settings.search_needs_file
        try:
            return needs.load(shipped, Path(extra) if extra else None)
        except needs.NeedsError as exc:
            log.error("tool search: the needs file is left out: %s", exc)
            return needs.load(shipped)

    async def close(self) -> None:
        await self.writer.close()
        await cancel_and_wait(self._background)
        if self.store is not None:
            await asyncio.to_thread(self.store.save)

    def catalog_changed(self, toolset: Toolset) -> None:
        """Embed, in the background, the catalog's definitions that have no vector yet."""
        if self.store is None:
            return
        self._toolset = toolset
        self._embed_later(toolset)
        known = self.store.needs
        self.writer.want(spec for spec in toolset.by_name.values() if not known.of(spec))

    def _embed_later(self, toolset: Toolset) -> None:
        self._pending = list(toolset.by_name.values())
        if self._background is None or self._background.done():
            self._background = asyncio.create_task(self._embed_pending())

    def _needs_written(self, lines: Written) -> None:
        """Rank the tools of `lines` with their new needs: embed them again in the background."""
        if self.store is None:
            return
        self.store.needs = self.store.needs.merged(lines)
        self.revision += 1
        if self._toolset is not None:
            self._embed_later(self._toolset)

    async def _embed_pending(self) -> None:
        assert self.store is not None
        while self._pending:
            specs, self._pending = self._pending, []
            await self._embed(specs)
        self._warm_by = None
        await asyncio.to_thread(self.store.save)

    async def _embed(self, specs: list[ToolSpec]) -> None:
        assert self.store is not None
        keys = self.store.keys_for(specs)
        try:
            computed = await asyncio.to_thread(self.store.compute, specs, keys)
        except Exception:  # a model that fails on some text must not take search down: it stays lexical
            log.exception("tool search: embedding %d tools failed", len(specs))
            return
        CODEMODE_SEARCH_VECTORS.inc(computed)

    async def index(self, toolset: Toolset, current: SearchIndex | None) -> SearchIndex:
        """The view's index: `current` while it is as good as it gets, else a new one."""
        if current is not None and (self.store is None or self._good_enough(current)):
            return current
        if self.store is None:
            return SearchIndex(toolset)
        specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
        revision = self.revision  # taken with the keys: needs written while this waits make it stale
        keys = self.store.keys_for(specs)
        missing = self.store.missing(keys)
        if 0 < len(missing) <= _EMBED_INLINE:
            await self._embed([specs[i] for i in missing])
        elif missing:
            await self._warm_up(toolset)
        vectors = self.store.matrix(keys)
        if vectors is None:
            self._embed_later(toolset)
            return current or SearchIndex(toolset)
        return SearchIndex(toolset, vectors, self.queries, revision=revision)

    def _good_enough(self, index: SearchIndex) -> bool:
        """A hybrid index of the latest needs, or of older ones while the new are being embedded."""
        busy = self._background is not None and not self._background.done()
        return index.engine == "hybrid" and (index.revision == self.revision or busy)

    async def _warm_up(self, toolset: Toolset) -> None:
        """Wait, at most `search_warmup_wait` seconds, for the background embedding of `toolset`."""
        if self._background is None or self._background.done():
            self._embed_later(toolset)
        task = self._background
        if task is None:
            return
        now = time.monotonic()
        if self._warm_by is None:  # one deadline for every search of this warm-up, not one each
            self._warm_by = now + self.settings.search_warmup_wait
        if now >= self._warm_by:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), self._warm_by - now)
        log.info("tool search: a search waited %.2f s for new tools to be embedded", time.monotonic() - now)

    def why_lexical(self, index: SearchIndex) -> str | None:
        if index.engine == "hybrid":
            return None
        if self.unavailable is not None:
            return self.unavailable
        return "the tools are still being embedded for search; ask again in a moment"

    async def search(self, index: SearchIndex, query: str, limit: int) -> Found:
        if index.engine == "hybrid":
            found = await asyncio.to_thread(index.search, query, limit)
        else:
            found = index.search(query, limit)
        CODEMODE_SEARCHES.labels(index.engine).inc()
        return Found(found, self.why_lexical(index))
