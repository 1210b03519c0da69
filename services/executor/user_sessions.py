"""Per-user sessions to upstream servers configured `per_user: true` (OAuth; docs/oauth.md).

Each (server, user) pair gets its own `Upstream`: its own connection, whose requests carry that
user's own access token (asked for with the user named, so the oauth service can only answer that
user's token). A call never travels over another user's session, and a call that names no user is
refused. The server's shared `Upstream` keeps publishing the catalog; these sessions publish nothing.

Bounded: beyond `limit` sessions per executor the least recently used one is closed (its user's
next call opens a new one). A session whose user has not authorized is closed right after the
refused call, so the user's next call asks again (after they followed the link) instead of a
background loop asking for a token nobody has. That refusal carries the user's link as data, never
in its message (`libs.common.contracts.oauth_upstream.AUTHORIZE_URL`).

Each session's listing is also that user's catalog of the server (`user_listings`): asked for by
ingress, and announced as changed (`changed`) whenever what it lists changes (the upstream said so
on that session, a pin or interceptor verdict changed), its user's token changes, or the server's
configuration does."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome, Routed, ServerCatalog

from .replies import refusal
from .upstream import Upstream

__all__ = ["UserSessions"]

log = logging.getLogger(__name__)

Changed = Callable[[str, str | None], None]
"""(server, user or None for every user): what ingress keeps of that listing is stale."""

MakeSession = Callable[[str, ServerConfig, str], Upstream]
"""(server, config, user) -> a new, not yet started, `Upstream` carrying that user's token."""


def _listed(catalog: ServerCatalog) -> tuple[Any, ...]:
    """What of a session's entry its user is listed (not its health, breaker, heartbeat)."""
    return (
        catalog.status,
        [tool.definition for tool in catalog.tools],
        catalog.prompts,
        catalog.resources,
        catalog.resource_templates,
    )


class UserSessions:
    def __init__(self, make: MakeSession, limit: int, changed: Changed | None = None) -> None:
        self._make = make
        self._limit = limit
        self._sessions: OrderedDict[tuple[str, str], Upstream] = OrderedDict()
        self._closing: set[asyncio.Task[Any]] = set()
        self.changed: Changed = changed or (lambda _server, _user: None)
        self._listings: dict[tuple[str, str], tuple[Any, ...]] = {}
        """What each open session last listed: a listing that differs is announced (`changed`)."""

    def publisher(self, server: str, user: str) -> Callable[[Upstream, ServerCatalog], Awaitable[bool]]:
        """The `publish` of `user`'s session to `server`: nothing is written, a changed listing is announced."""

        async def publish(upstream: Upstream, catalog: ServerCatalog) -> bool:
            key = (server, user)
            if self._sessions.get(key) is not upstream:
                return False
            listed, before = _listed(catalog), self._listings.get(key)
            if before != listed:
                self._listings[key] = listed
                # a session that never listed (its user has not authorized) changes nothing ingress keeps
                if before is not None or catalog.status == "ready":
                    self.changed(server, user)
            return True

        return publish

    def open(self, shared: Upstream, user: str) -> tuple[tuple[str, str], Upstream]:
        """`user`'s own session to the per-user server `shared` (and its key for `close`), opened if need be."""
        return (shared.name, user), self._session(shared, user)

    def forget_user(self, server: str, user: str) -> None:
        """`user`'s token for `server` changed: their session goes, and ingress lists them anew."""
        self.close((server, user))
        self.changed(server, user)

    def __len__(self) -> int:
        return len(self._sessions)

    def session_for(self, shared: Upstream, request: Routed) -> tuple[tuple[str, str], Upstream] | CallOutcome:
        """The calling user's own session to the per-user server `shared` (and its key for `close`).

        Or the refusal of a request that names no user."""
        user = request.caller.user_id
        if user is None:
            message = (
                f"server {shared.name!r} is called with each user's own credentials: call it as a user "
                "(an OAuth login, or a key bound to a user)"
            )
            return refusal(request, ErrorKind.FORBIDDEN, message)
        return (shared.name, user), self._session(shared, user)

    def _session(self, shared: Upstream, user: str) -> Upstream:
        key = (shared.name, user)
        session = self._sessions.get(key)
        if session is not None and session.config != shared.config:
            self.close(key)
            session = None
        if session is None:
            session = self._sessions[key] = self._make(shared.name, shared.config, user)
            session.start()
            log.info("server %s: opened a per-user session (%d open)", shared.name, len(self._sessions))
            while len(self._sessions) > self._limit:
                self.close(next(iter(self._sessions)))
        self._sessions.move_to_end(key)
        return session

    def close(self, key: tuple[str, str]) -> None:
        self._listings.pop(key, None)
        session = self._sessions.pop(key, None)
        if session is not None:
            task = asyncio.create_task(session.stop())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def close_server(self, server: str) -> None:
        """The server was removed or reconfigured: its users' sessions go with it."""
        for key in [k for k in self._sessions if k[0] == server]:
            self.close(key)
        self.changed(server, None)

    def relist(self, server: str | None = None) -> None:
        """Every open session (of `server`, or of every server) lists its server again.

        (The listing interceptors changed, or their verdict on that server did)."""
        for (name, _user), session in self._sessions.items():
            if server is None or name == server:
                session.relist()

    async def stop(self) -> None:
        for key in list(self._sessions):
            self.close(key)
        if self._closing:
            await asyncio.gather(*set(self._closing), return_exceptions=True)
