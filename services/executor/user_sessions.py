"""Per-user sessions to upstream servers configured `per_user: true` (OAuth; docs/oauth.md).

Each (server, user) pair gets its own `Upstream`: its own connection, whose requests carry that
user's own access token (asked for with the user named, so the oauth service can only answer that
user's token). A call never travels over another user's session, and a call that names no user is
refused. The server's shared `Upstream` keeps publishing the catalog; these sessions publish nothing.

Bounded: beyond `limit` sessions per executor the least recently used one is closed (its user's
next call opens a new one). A session whose user has not authorized is closed right after the
refused call, so the user's next call asks again (after they followed the link) instead of a
background loop asking for a token nobody has. That refusal carries the user's link as data, never
in its message (`libs.common.contracts.oauth_upstream.AUTHORIZE_URL`)."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome, Routed, ServerCatalog

from .replies import refusal
from .upstream import Upstream

__all__ = ["UserSessions", "no_catalog"]

log = logging.getLogger(__name__)

MakeSession = Callable[[str, ServerConfig, str], Upstream]
"""(server, config, user) -> a new, not yet started, `Upstream` carrying that user's token."""


async def no_catalog(_upstream: Upstream, _catalog: ServerCatalog) -> bool:
    """A per-user session's catalog is not published: the shared session's is the server's."""
    return False


class UserSessions:
    def __init__(self, make: MakeSession, limit: int) -> None:
        self._make = make
        self._limit = limit
        self._sessions: OrderedDict[tuple[str, str], Upstream] = OrderedDict()
        self._closing: set[asyncio.Task[Any]] = set()

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
        session = self._sessions.pop(key, None)
        if session is not None:
            task = asyncio.create_task(session.stop())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def close_server(self, server: str) -> None:
        """The server was removed or reconfigured: its users' sessions go with it."""
        for key in [k for k in self._sessions if k[0] == server]:
            self.close(key)

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
