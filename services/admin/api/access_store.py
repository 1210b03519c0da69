"""Principals, their API tokens and browser sessions, custom roles, and the state of a browser login.

The tables of KV `bastion_admin` (`libs.common.contracts.admin_principals` holds the records `bastion up`
writes too). Tokens and sessions are stored under their sha256 only; the secret exists in the answer that
made it, never here."""

from __future__ import annotations

import time

from pydantic import Field

from libs.common.contracts import subjects
from libs.common.contracts.admin_principals import OWNER, ApiToken, Principal, new_token, token_digest
from libs.common.contracts.messages_base import BusMessage

from .changes import ChangeLog
from .tables import Buckets, Conflict, NotFound, Table, Versioned, revoke_replaced

__all__ = ["AccessStore", "CustomRole", "OAuthClient", "PendingLogin", "Session"]


_DAY = 24 * 3600.0


class CustomRole(BusMessage):
    name: str
    description: str = ""
    permissions: list[str]
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)


class Session(BusMessage):
    """A browser session after a login through the oauth service (the cookie holds its secret id)."""

    principal: str
    created_at: float = Field(default_factory=time.time)
    expires_at: float
    address: str = ""


class PendingLogin(BusMessage):
    """A login started here and not yet back from the authorization server (under its `state`)."""

    verifier: str = Field(repr=False)
    """The PKCE code verifier: it never leaves this service until the code is exchanged."""
    next: str = "/"
    expires_at: float


class OAuthClient(BusMessage):
    """This service as an OAuth client of Bastion's own authorization server."""

    client_id: str
    redirect_uri: str
    registered_at: float = Field(default_factory=time.time)
    used: bool = False
    """A registration nobody used is forgotten by the oauth service after a day; one used is kept."""


class AccessStore:
    """Every table of `bastion_admin`; `changes` records each write to principals, tokens and roles."""

    def __init__(self, buckets: Buckets, changes: ChangeLog | None = None) -> None:
        bucket = subjects.KV_ADMIN
        self.principals: Table[Principal] = Table(
            buckets, bucket, Principal, "principal", prefix="principal.", changes=changes, hex_ids=True
        )
        self.tokens: Table[ApiToken] = Table(buckets, bucket, ApiToken, "api token", prefix="token.", changes=changes)
        self.roles: Table[CustomRole] = Table(buckets, bucket, CustomRole, "role", prefix="role.", changes=changes)
        self.sessions: Table[Session] = Table(buckets, bucket, Session, "session", prefix="session.")
        self.logins: Table[PendingLogin] = Table(buckets, bucket, PendingLogin, "login", prefix="login.")
        self.clients: Table[OAuthClient] = Table(buckets, bucket, OAuthClient, "oauth client", prefix="oauth.")

    async def custom_roles(self) -> dict[str, frozenset[str]]:
        return {name: frozenset(found.value.permissions) for name, found in await self.roles.list()}

    async def owners(self) -> list[str]:
        """Principals that hold the owner role everywhere and are not disabled."""
        return [
            name
            for name, found in await self.principals.list()
            if not found.value.disabled and any(b.role == OWNER and not b.scoped for b in found.value.roles)
        ]

    async def issue_token(
        self, principal: str, label: str, days: float, created_by: str
    ) -> tuple[str, Versioned[ApiToken]]:
        secret = new_token()
        digest = token_digest(secret)
        record = ApiToken(
            id=digest, principal=principal, label=label, expires_at=time.time() + days * _DAY, created_by=created_by
        )
        return secret, Versioned(record, await self.tokens.create(digest, record))

    async def rotate_token(self, old: Versioned[ApiToken], days: float, by: str) -> tuple[str, Versioned[ApiToken]]:
        """A new token for the same principal and label.

        Then the old one revoked (as keys rotate: if the revocation fails, the new token is deleted again
        and the old one keeps working)."""
        if old.value.revoked:
            raise Conflict(f"api token {old.value.id[:12]}… is revoked; issue a new one instead of rotating it")
        secret, new = await self.issue_token(old.value.principal, old.value.label, days, by)
        revoked = old.value.model_copy(update={"revoked": True})
        await revoke_replaced(self.tokens, old.value.id, old, revoked, new.value.id, new.revision)
        return secret, new

    async def tokens_of(self, principal: str) -> list[Versioned[ApiToken]]:
        return [found for _, found in await self.tokens.list() if found.value.principal == principal]

    async def sweep(self) -> int:
        """Delete the sessions and unfinished sign-ins past their expiry (a refused one is never used again).

        Returns how many."""
        now, swept = time.time(), 0
        for table in (self.sessions, self.logins):
            for record_id, found in await table.list():
                if found.value.expires_at < now:
                    try:
                        await table.delete(record_id, found.revision)
                    except (NotFound, Conflict):
                        continue  # gone or renewed meanwhile
                    swept += 1
        return swept

    async def forget(self, principal: str) -> None:
        """Delete a deleted principal's tokens and sessions (its audit events stay)."""
        for found in await self.tokens_of(principal):
            await self.tokens.delete(found.value.id)
        for session_id, session in await self.sessions.list():
            if session.value.principal == principal:
                await self.sessions.delete(session_id)
