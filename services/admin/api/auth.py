"""Who is asking.

A principal's API token, a browser session after a login through the oauth service, or (only until the
first owner exists) the bootstrap token; and what that principal may do.

Tokens and sessions are looked up by their sha256 (`libs.common.contracts.admin_principals`), so the bucket
never holds one and a lookup leaks nothing through timing; the bootstrap token is compared in
constant time. A session authenticates through its cookie, which a browser sends on its own: a
request that changes something must then also carry `X-Bastion-CSRF: 1`, a header no other site
can make a browser send (this service answers no CORS preflight), so a page elsewhere cannot act
with a signed-in person's session. A virtual key is recognized only to say so (403). Every 401 is
counted and audited (`libs.common.runtime.refusals`, surface `admin`) by why: missing, invalid (unknown),
expired (a token or session past its time, the spent bootstrap token) or revoked (a revoked token,
a principal disabled or deleted).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any, Literal

from fastapi import Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from libs.common.contracts.admin_principals import Principal, RoleBinding, token_digest
from libs.common.contracts.keys import key_id
from libs.common.contracts.messages import AuditEvent
from libs.common.runtime.refusals import RefusalLog, RefusalReason, credential_label

from ..roles import BUILTIN_ROLES, Grants, grants_of
from .errors import AdminError
from .identity import Identity
from .store import AdminStore

__all__ = ["BOOTSTRAP", "CSRF_HEADER", "SESSION_COOKIE", "Authenticator", "security_schemes"]

SESSION_COOKIE = "bastion_admin_session"
CSRF_HEADER = "X-Bastion-CSRF"
BOOTSTRAP = "bootstrap"
"""The name the bootstrap token acts under (in audit events); never a principal's name (no such role)."""
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="bastion-admin"'}

_bearer = HTTPBearer(auto_error=False, description="A principal's API token (`bat_…`).")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="A browser session (`GET /login`); send `X-Bastion-CSRF: 1`."
)


async def security_schemes(
    _token: HTTPAuthorizationCredentials | None = Security(_bearer),  # noqa: B008 - documents the scheme
    _session: str | None = Security(_cookie),
) -> None:
    """Puts both schemes in the OpenAPI document.

    The checking is `admin_route.AdminRoute`'s (before the body is read)."""


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class Unauthenticated(AdminError):
    """A 401: the answer says `message`; `reason` is how the refusal is counted and audited."""

    def __init__(self, error: str, message: str, reason: RefusalReason) -> None:
        super().__init__(401, error, message, headers=_CHALLENGE)
        self.reason: RefusalReason = reason


def _unauthorized(error: str, message: str, reason: RefusalReason = "invalid") -> AdminError:
    return Unauthenticated(error, message, reason)


class Authenticator:
    """Turns a request's credential into an `Identity`, or raises the `AdminError` saying why not."""

    def __init__(
        self,
        store: AdminStore,
        bootstrap: SecretStr | None = None,
        refusals: RefusalLog | None = None,
        audit: Callable[[AuditEvent], Any] | None = None,
    ) -> None:
        self.store = store
        secret = bootstrap.get_secret_value() if bootstrap is not None else ""
        self._bootstrap = _digest(secret) if secret else None
        self.refusals = refusals
        """Where every 401 is counted and audited (`libs.common.runtime.refusals`)."""
        self._audit = audit

    def forbidden(self, identity: Identity, method: str, path: str, permission: str | None, message: str) -> None:
        """Audit a 403.

        A known principal asked for what its role does not hold (one row each: unlike a stranger's
        guesses, every one is a person or a token of ours trying something)."""
        if self._audit is None:
            return
        self._audit(
            AuditEvent(
                kind="admin",
                actor=identity.principal,
                actor_role=identity.role_label,
                actor_address=identity.address,
                action="refused",
                tool=permission or "forbidden",
                target=f"{method} {path}",
                name=permission or "forbidden",
                status="denied",
                error_kind="forbidden",
                error=message,
                latency_ms=0.0,
            )
        )

    async def identify(self, request: Request) -> Identity:
        address = request.client.host if request.client else "unknown"
        scheme, _, credential = (request.headers.get("authorization") or "").partition(" ")
        credential = credential.strip()
        session = request.cookies.get(SESSION_COOKIE) if not scheme else None
        try:
            return await self._identify(request, scheme, credential, session, address)
        except Unauthenticated as refused:
            if self.refusals is not None:
                label = credential_label(session, "session") if session else credential_label(credential)
                self.refusals.refused("admin", refused.reason, address, label)
            raise

    async def _identify(
        self, request: Request, scheme: str, credential: str, session: str | None, address: str
    ) -> Identity:
        if scheme.lower() == "bearer" and credential:
            return await self._bearer(credential, address)
        if scheme:
            raise _unauthorized(
                "missing_credentials",
                "the admin API takes 'Authorization: Bearer <API token>'",
                "invalid" if credential else "missing",
            )
        if session:
            identity = await self._session(session, address)
            if request.method not in _SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
                raise AdminError(
                    403, "csrf", f"a change made with a session cookie needs the header '{CSRF_HEADER}: 1'"
                )
            return identity
        raise _unauthorized(
            "missing_credentials",
            "the admin API needs 'Authorization: Bearer <API token>' or a signed-in session (GET /login)",
            "missing",
        )

    async def _bearer(self, credential: str, address: str) -> Identity:
        if self._bootstrap is not None and hmac.compare_digest(_digest(credential), self._bootstrap):
            return await self._bootstrap_identity(address)
        digest = token_digest(credential)
        found = await self.store.access.tokens.find(digest)
        if found is None:
            key = await self.store.keys.find(key_id(credential))  # a virtual key sent here by mistake
            if key is not None and not key.value.revoked:
                raise AdminError(403, "forbidden", "a virtual key cannot use the admin API; send an API token")
            raise _unauthorized("invalid_credentials", "the credential is not a valid API token")
        token = found.value
        if token.revoked:
            raise _unauthorized("invalid_credentials", "the API token was revoked", "revoked")
        if token.expires_at <= time.time():
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(token.expires_at))
            raise _unauthorized("expired_credentials", f"the API token expired at {when}; ask for a new one", "expired")
        return await self._principal(token.principal, address, "token", digest)

    async def _session(self, session: str, address: str) -> Identity:
        digest = token_digest(session)
        found = await self.store.access.sessions.find(digest)
        if found is None or found.value.expires_at <= time.time():
            # one answer for both; counted apart (a forged or swept cookie is unknown, a stale one expired)
            reason: RefusalReason = "invalid" if found is None else "expired"
            raise _unauthorized("session_expired", "the session has ended; sign in again (GET /login)", reason)
        return await self._principal(found.value.principal, address, "session", digest)

    async def _principal(self, name: str, address: str, via: Literal["token", "session"], credential: str) -> Identity:
        found = await self.store.access.principals.find(name)
        if found is None:
            raise _unauthorized("invalid_credentials", "the credential's principal no longer exists", "revoked")
        principal: Principal = found.value
        if principal.disabled:
            raise _unauthorized("disabled", f"the principal {name!r} is disabled", "revoked")
        custom = await self.store.access.custom_roles() if any(_custom(b) for b in principal.roles) else {}
        grants = grants_of(principal.roles, custom)
        return Identity(name, principal.kind, tuple(principal.roles), grants, address, via, credential)

    async def _bootstrap_identity(self, address: str) -> Identity:
        """The bootstrap token creates the first owner, and nothing else; once an owner exists it is spent."""
        if await self.store.access.owners():
            raise _unauthorized(
                "bootstrap_spent",
                "the bootstrap token is spent: an owner exists; use a principal's API token",
                "expired",
            )
        grants = Grants(frozenset({"principals:write"}))
        return Identity(BOOTSTRAP, "bootstrap", (), grants, address, "bootstrap")


def _custom(binding: RoleBinding) -> bool:
    return binding.role not in BUILTIN_ROLES
