"""Contracts of per-user catalogs: what a `per_user` server lists for one user (docs/oauth.md).

    ingress  -> executor  `UserCatalogQuery` -> `UserCatalog`           on `EXEC_USER_CATALOG` (queue)
    executor -> ingress   `UserCatalogChanged`                          on `EXEC_USER_CATALOG_CHANGED`
    oauth    -> executor  `UpstreamUserChanged`                         on `OAUTH_UPSTREAM_CHANGED`

The listing is made over that user's own session (their own token); it passed the same listing checks
(pins, interceptors, `tools` patterns) as the server's shared listing. Ingress merges it into the
caller's `tools/list`, `prompts/list` and `resources/list`, and policy still filters it by grants.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field

from libs.common.contracts.messages_base import BusMessage
from libs.common.contracts.messages_records import ServerCatalog

__all__ = [
    "AUTHORIZATION_META",
    "UpstreamUserChanged",
    "UserCatalog",
    "UserCatalogChanged",
    "UserCatalogQuery",
]

AUTHORIZATION_META: Final = "io.bastion/authorization"
"""`_meta` key of a listed tool (prompt, resource) of a per-user server the caller has not authorized
yet: `{"required": true, "server": <server>}`. Calling it answers the caller's own link."""

_Name = Annotated[str, Field(min_length=1, max_length=256)]


class UserCatalogQuery(BusMessage):
    """ingress -> executor: what per-user `server` lists for `user`."""

    server: _Name
    user: _Name


class UserCatalog(BusMessage):
    """executor -> ingress: the answer to a `UserCatalogQuery`.

    ready: `catalog` is the user's own listing; needs_auth: the user has not authorized the server
    (or their token was refused and cannot be renewed); unavailable: the user's session could not be
    had (`error` says why); shared: the server is not per user, its shared listing is everyone's."""

    server: str
    user: str
    status: Literal["ready", "needs_auth", "unavailable", "shared"]
    error: Annotated[str | None, Field(max_length=4096)] = None
    catalog: ServerCatalog | None = None


class UserCatalogChanged(BusMessage):
    """executor -> every ingress: drop what is kept of `server`'s listing for `user` (None: every user)."""

    server: _Name
    user: _Name | None = None


class UpstreamUserChanged(BusMessage):
    """oauth -> every executor: `user`'s token for `server` was stored anew or forgotten.

    Their session (and their listing) is made again with what is stored now."""

    server: _Name
    user: _Name
