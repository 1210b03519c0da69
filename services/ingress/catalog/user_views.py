"""What one caller is listed when some servers are `per_user`: the shared catalog merged with their own.

A per-user server's tools, prompts and resources are not the shared listing's (made with the token an
owner authorized) but what the caller's own session lists (`EXEC_USER_CATALOG`, answered by an executor
from that user's session, `libs.common.contracts.user_catalogs`):
- the caller's listing is ready: the server's entries are theirs, named as the shared catalog would
  name them (an entry whose name another server holds is left out), and no shared entry of that
  server is theirs to call;
- the caller has not authorized the server: the shared tools, each marked with `_meta`
  `io.bastion/authorization` (`AUTHORIZATION_META`); calling one answers the caller's own link;
- the caller names no user, or their session is unavailable: none of the server's entries.

Kept in memory, bounded: each (server, user) listing (`max_listings`; not one in `_NOT_KEPT`),
dropped when an executor says it changed (`EXEC_USER_CATALOG_CHANGED`) or the shared catalog's
revision moves on; each caller's merged view (`max_views`), rebuilt when any listing it was made of
is replaced.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from libs.common.contracts import subjects
from libs.common.contracts.messages import Caller
from libs.common.contracts.user_catalogs import AUTHORIZATION_META, UserCatalog, UserCatalogChanged, UserCatalogQuery
from services.ingress.catalog.aggregated import Catalog, CatalogEntry, Listing, entry_of

__all__ = ["CallerView", "KeptListings", "UserCatalogs", "build_view", "entry_for"]

log = logging.getLogger(__name__)

_KINDS = ("tools", "app_tools", "prompts", "resources", "templates")

_NOT_KEPT = frozenset({"unavailable", "needs_auth"})
"""Answers asked again on the next listing. "needs_auth": the user is about to authorize, and their
listing must show it as soon as the oauth callback has answered them; the announcement that would
drop a kept answer (`EXEC_USER_CATALOG_CHANGED`) crosses two services after that answer."""

_revisions = itertools.count(-1, -1)
"""A view's revision is negative: the cached tools arrays it names (`tool_lists`) never share a name
with the shared catalog's (whose revisions count up from 1)."""


@dataclass(frozen=True, slots=True)
class CallerView:
    """The catalog one caller is listed, in the shape `Catalog` lists it."""

    revision: int
    tools: Listing
    app_tools: Listing
    prompts: Listing
    resources: Listing
    templates: Listing
    app_only: frozenset[str]
    own: frozenset[str]
    """Per-user servers listed from the caller's own listing: their shared entries are not the caller's."""
    per_user: frozenset[str] = frozenset()
    """Every per-user server this view was made for (listed the caller's own, marked, or none)."""
    by_name: dict[str, CatalogEntry] = field(default_factory=dict)
    prompt_by_name: dict[str, CatalogEntry] = field(default_factory=dict)
    resource_by_uri: dict[str, CatalogEntry] = field(default_factory=dict)
    withheld_by_name: dict[str, CatalogEntry] = field(default_factory=dict)
    """Tools held back (pins) by the name they would be listed: routed, so the executor names why."""


def _marked(entry: CatalogEntry) -> CatalogEntry:
    """`entry` listed to a caller who must first authorize its server."""
    meta = entry.definition.get("_meta")
    marked = {
        **(meta if isinstance(meta, dict) else {}),
        AUTHORIZATION_META: {"required": True, "server": entry.server},
    }
    return entry_of(entry.name, entry.server, entry.tool, {**entry.definition, "_meta": marked}, entry.target)


def _own_entries(shared: Catalog, answer: UserCatalog) -> dict[str, list[CatalogEntry]]:
    """The entries of each kind `answer` (a ready listing) gives its server, named as `shared` would.

    A tool or prompt whose name another server holds in `shared` is left out: that name is theirs.
    Kind "withheld": the tools the user's listing holds back (pins)."""
    assert answer.catalog is not None
    own = Catalog()
    own.put(answer.server, answer.catalog.model_dump_json().encode())
    held = {"tools": shared.by_name, "app_tools": shared.by_name, "prompts": shared.prompt_by_name}
    held["withheld"] = shared.by_name
    lists = {kind: getattr(own, kind).entries for kind in _KINDS} | {"withheld": list(own.withheld_by_name.values())}
    return {
        kind: [e for e in entries if (taken := held.get(kind, {}).get(e.name)) is None or taken.server == answer.server]
        for kind, entries in lists.items()
    }


def entry_for(
    view: CallerView | None, shared: dict[str, CatalogEntry], own: dict[str, CatalogEntry], name: str
) -> CatalogEntry | None:
    """The entry a caller's call of `name` goes to: theirs in `own` (their view's), else the shared one.

    Unless the shared one is of a server the caller is listed their own listing of (not theirs to call)."""
    if view is None:
        return shared.get(name)
    entry = own.get(name) or shared.get(name)
    return None if entry is not None and entry.server in view.own and own.get(name) is None else entry


def build_view(shared: Catalog, answers: dict[str, UserCatalog | None]) -> CallerView:
    """The view of a caller whose listing of each per-user server is `answers[server]` (None: no user)."""
    per_user = set(answers)
    kinds = {kind: [e for e in getattr(shared, kind).entries if e.server not in per_user] for kind in _KINDS}
    own: set[str] = set()
    app_only = {name for name in shared.app_only if shared.by_name[name].server not in per_user}
    withheld = {name: e for name, e in shared.withheld_by_name.items() if e.server not in per_user}
    for server, answer in sorted(answers.items()):
        if answer is not None and answer.status == "ready" and answer.catalog is not None:
            own.add(server)
            entries = _own_entries(shared, answer)
            withheld |= {e.name: e for e in entries["withheld"]}
            for kind in _KINDS:
                kinds[kind] += entries[kind]
            model = {e.name for e in entries["tools"]}
            app_only |= {e.name for e in entries["app_tools"] if e.name not in model}
        elif answer is not None and answer.status in ("needs_auth", "shared"):
            mark = _marked if answer.status == "needs_auth" else (lambda e: e)
            withheld |= {name: e for name, e in shared.withheld_by_name.items() if e.server == server}
            for kind in ("tools", "app_tools") if answer.status == "needs_auth" else _KINDS:
                kinds[kind] += [mark(e) for e in getattr(shared, kind).entries if e.server == server]
    listings = {kind: Listing.of(kinds[kind]) for kind in _KINDS}
    return CallerView(
        next(_revisions),
        listings["tools"],
        listings["app_tools"],
        listings["prompts"],
        listings["resources"],
        listings["templates"],
        app_only=frozenset(app_only),
        own=frozenset(own),
        per_user=frozenset(per_user),
        by_name={e.name: e for e in kinds["app_tools"]},
        prompt_by_name={e.name: e for e in kinds["prompts"]},
        resource_by_uri={e.name: e for e in kinds["resources"]},
        withheld_by_name=withheld,
    )


class KeptListings:
    """(server, user) -> the executor's answer, for one shared catalog revision: at most `limit` kept.

    The least recently used is dropped first. Each kept answer has a serial of its own, so a view made
    of it can tell it was replaced."""

    def __init__(self, limit: int) -> None:
        self._kept: LRUCache[tuple[str, str], tuple[int, int, UserCatalog]] = LRUCache(maxsize=limit)
        self._serials = itertools.count(1)
        self.drops = 0
        """Drops so far: an answer asked for before a drop may be stale, so it is used once, not kept."""

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, server: str, user: str, revision: int) -> tuple[int, UserCatalog] | None:
        """(serial, answer) kept for `revision` of the shared catalog, else None."""
        kept = self._kept.get((server, user))
        return (kept[1], kept[2]) if kept is not None and kept[0] == revision else None

    def put(self, server: str, user: str, revision: int, answer: UserCatalog) -> int:
        """Keep `answer`; its serial."""
        serial = next(self._serials)
        self._kept[(server, user)] = (revision, serial, answer)
        return serial

    def drop(self, server: str, user: str | None) -> None:
        """What is kept of `server`'s listing for `user` (None: for every user) is stale."""
        self.drops += 1
        for key in [k for k in self._kept if k[0] == server and user in (None, k[1])]:
            self._kept.pop(key, None)


class UserCatalogs:
    """Each caller's view (`view`), from per-user listings asked of the executors and kept, bounded."""

    def __init__(
        self, nc: NATS, catalog: Catalog, *, max_listings: int = 1024, max_views: int = 256, timeout: float = 35.0
    ) -> None:
        self._nc, self._catalog, self._timeout = nc, catalog, timeout
        self.listings = KeptListings(max_listings)
        self._views: LRUCache[tuple[str | None, str | None], tuple[tuple[Any, ...], CallerView]]
        self._views = LRUCache(maxsize=max_views)
        """(user, `only`) -> the view and what it was made of."""

    async def start(self) -> None:
        await self._nc.subscribe(subjects.EXEC_USER_CATALOG_CHANGED, cb=self._on_changed)

    async def _on_changed(self, msg: Msg) -> None:
        changed = UserCatalogChanged.parsed(msg.data)
        if changed is not None:
            self.listings.drop(changed.server, changed.user)

    async def view(self, caller: Caller, only: str | None = None) -> CallerView | None:
        """What `caller` is listed; None when no server is per user (the shared catalog is everyone's).

        `only`: just that server's listing is the caller's own (what resolving a call of one of its
        tools needs, without opening the caller's sessions to every other per-user server); None when
        it is not per user."""
        servers = sorted(self._catalog.per_user) if only is None else [only] if only in self._catalog.per_user else []
        if not servers:
            return None
        user, revision = caller.user_id, self._catalog.revision
        if user is None:
            answers: dict[str, tuple[int, UserCatalog | None]] = {server: (0, None) for server in servers}
        else:
            fetched = await asyncio.gather(*(self._listing(server, user, revision) for server in servers))
            answers = dict(zip(servers, fetched, strict=True))
        key = (revision, tuple((server, serial) for server, (serial, _) in answers.items()))
        kept = self._views.get((user, only))
        if kept is not None and kept[0] == key:
            return kept[1]
        view = build_view(self._catalog, {server: answer for server, (_, answer) in answers.items()})
        kept_all = user is None or all(serial for serial, _ in answers.values())
        if kept_all and revision == self._catalog.revision:  # made of what is kept, so it holds as long
            self._views[(user, only)] = (key, view)
        return view

    async def _listing(self, server: str, user: str, revision: int) -> tuple[int, UserCatalog]:
        """(serial, answer) of `server`'s listing for `user`: kept, else asked (serial 0: not kept)."""
        kept = self.listings.get(server, user, revision)
        if kept is not None:
            return kept
        drops = self.listings.drops
        answer = await self._ask(server, user)
        if drops != self.listings.drops or answer.status in _NOT_KEPT:
            return 0, answer
        return self.listings.put(server, user, revision, answer), answer

    async def _ask(self, server: str, user: str) -> UserCatalog:
        query = UserCatalogQuery(server=server, user=user).model_dump_json().encode()
        try:
            reply = await self._nc.request(subjects.EXEC_USER_CATALOG, query, timeout=self._timeout)
            return UserCatalog.model_validate_json(reply.data)
        except (NoRespondersError, NatsTimeout, ValidationError) as exc:
            log.warning("server %s: no per-user listing for a user (%s)", server, type(exc).__name__)
            return UserCatalog(server=server, user=user, status="unavailable", error="no executor answered")
