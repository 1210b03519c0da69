"""Each user's catalog of a `per_user` server, over NATS (docs/oauth.md, "Per-user servers").

Ingress asks `EXEC_USER_CATALOG` what a per-user server lists for one user; the answer is what that
user's own session (`user_sessions`, their own token) lists, after the same listing checks as the
shared session's (pins, interceptors, the server's `tools` patterns), or why there is none. The
sessions are the cache: at most `BASTION_MAX_USER_SESSIONS` are open, least recently used closed.
What ingress keeps is announced stale on `EXEC_USER_CATALOG_CHANGED` when a user's listing changes,
their token does (`OAUTH_UPSTREAM_CHANGED`, from the oauth service), or the server's configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError

from libs.common.contracts import subjects
from libs.common.contracts.user_catalogs import UpstreamUserChanged, UserCatalog, UserCatalogChanged, UserCatalogQuery

from .upstream import State, Upstream
from .user_sessions import UserSessions

__all__ = ["UserListings", "user_catalog"]

log = logging.getLogger(__name__)


async def user_catalog(
    upstreams: Mapping[str, Upstream], users: UserSessions, query: UserCatalogQuery, wait: float
) -> UserCatalog:
    """What `query.server` lists for `query.user`, waiting up to `wait` seconds for a session to open."""
    server, user = query.server, query.user
    shared = upstreams.get(server)
    if shared is None:
        return UserCatalog(server=server, user=user, status="unavailable", error=f"no server named {server!r}")
    if not shared.config.per_user:
        return UserCatalog(server=server, user=user, status="shared")
    key, session = users.open(shared, user)
    if not await session.settled(asyncio.get_running_loop().time() + wait):
        error = f"server {server!r}: the user's session is still connecting"
        return UserCatalog(server=server, user=user, status="unavailable", error=error)
    if session.needs_auth:  # closed, as after a refused call: their next listing asks for a token again
        users.close(key)
        return UserCatalog(server=server, user=user, status="needs_auth")
    if session.state is not State.READY:
        return UserCatalog(server=server, user=user, status="unavailable", error=session.unavailable_reason())
    return UserCatalog(server=server, user=user, status="ready", catalog=session.listing())


class UserListings:
    """The executor's side of per-user catalogs on the bus: answers queries, announces changes."""

    def __init__(self, upstreams: Mapping[str, Upstream], users: UserSessions, wait: float) -> None:
        self._upstreams, self._users, self._wait = upstreams, users, wait
        self._nc: NATS | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        users.changed = self.changed

    async def start(self, nc: NATS) -> None:
        self._nc = nc
        await nc.subscribe(subjects.EXEC_USER_CATALOG, queue=subjects.QUEUE_EXECUTOR, cb=self._on_query)
        await nc.subscribe(subjects.OAUTH_UPSTREAM_CHANGED, cb=self._on_token_changed)

    def changed(self, server: str, user: str | None) -> None:
        """Tell every ingress that what it keeps of `server`'s listing for `user` (None: everyone) is stale."""
        if self._nc is not None and not self._nc.is_closed:
            message = UserCatalogChanged(server=server, user=user).model_dump_json().encode()
            self._spawn(self._nc.publish(subjects.EXEC_USER_CATALOG_CHANGED, message))

    async def _on_query(self, msg: Msg) -> None:
        """nats-py awaits this per message in order: a session may take seconds to open, so answer in a task."""
        self._spawn(self._answer(msg))

    async def _answer(self, msg: Msg) -> None:
        try:
            query = UserCatalogQuery.model_validate_json(msg.data)
        except ValidationError as exc:
            log.warning("ignoring a malformed user catalog query (%d problem(s))", exc.error_count())
            return
        answer = await user_catalog(self._upstreams, self._users, query, self._wait)
        encoded = answer.model_dump_json().encode()
        if self._nc is not None and len(encoded) > self._nc.max_payload:  # NATS would refuse it: say why instead
            error = f"server {query.server!r}: the user's listing ({len(encoded)} bytes) exceeds one bus message"
            refused = UserCatalog(server=query.server, user=query.user, status="unavailable", error=error)
            encoded = refused.model_dump_json().encode()
        if msg.reply:
            await msg.respond(encoded)

    async def _on_token_changed(self, msg: Msg) -> None:
        changed = UpstreamUserChanged.parsed(msg.data)
        if changed is not None:
            self._users.forget_user(changed.server, changed.user)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
