"""Authorization links of upstream servers that need OAuth, for `GET /admin/v1/servers`.

A server whose health is `needs_auth` and that uses Bastion's OAuth client (a remote server without a
configured `Authorization` header) gets a fresh link from the oauth service (`OAUTH_UPSTREAM_LINK`):
an admin opens it to authorize the server's shared token (`bastion servers list` prints it). The link
is minted on each read, carries a sealed, expiring ticket, and is never shown to anyone but an admin;
each one minted is an admin audit event (which server, for whom; not the link).
"""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from libs.common.contracts import subjects
from libs.common.contracts.config import ServerConfig
from libs.common.contracts.oauth_upstream import AuthorizeLink, AuthorizeLinkQuery, oauth_target

from .changes import ChangeLog

__all__ = ["UpstreamLinks"]

log = logging.getLogger(__name__)

_TIMEOUT = 5.0


class UpstreamLinks:
    def __init__(self, nc: NATS, changes: ChangeLog | None = None) -> None:
        self._nc = nc
        self._changes = changes
        """Records each link minted as an admin event (`server.authorize_link`): who, for which server;
        never the link, whose ticket binds an upstream account for as long as it is valid."""

    async def link(self, server: str, config: ServerConfig) -> str | None:
        """A link to authorize `server`, or None (no OAuth for it, or the oauth service is not running)."""
        target = oauth_target(config)
        if target is None:
            return None
        query = AuthorizeLinkQuery(server=server, url=target[0], transport=target[1])
        try:
            reply = await self._nc.request(subjects.OAUTH_UPSTREAM_LINK, query.model_dump_json().encode(), _TIMEOUT)
            answer = AuthorizeLink.model_validate_json(reply.data)
        except (NoRespondersError, NatsTimeout, ValidationError) as exc:
            log.warning("no authorization link for server %r: %s", server, type(exc).__name__)
            return None
        if answer.url is not None and self._changes is not None:
            self._changes.record("server", "authorize_link", server, None, None)
        return answer.url
