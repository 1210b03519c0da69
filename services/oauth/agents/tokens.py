"""The token endpoint (authorization code + PKCE, rotating refresh tokens) and revocation (RFC 7009).

Refresh tokens are `<family id>.<secret>`. A family holds every token descended from one
authorization code; only its newest refresh token is valid. An authorization code used twice, or
a superseded refresh token presented again, means a copy is in someone else's hands: the family
and every access token it issued are revoked (OAuth 2.1 §4.3.1, RFC 6749 §4.1.2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from typing import Any

from libs.common.contracts.oauth import HttpExchangeRequest, HttpExchangeResponse, RevokedToken

from ..http import HttpError, form_of, json_response
from ..metrics import OAUTH_TOKEN_REFUSALS, OAUTH_TOKENS_ISSUED
from ..store import Conflict, Records
from .authorize import _CHALLENGE
from .clients import ClientAuthenticator
from .metadata import issuer_of, resource_of
from .records import AuthorizationCode, ClientRecord, IssuedAccess, RefreshFamily, digest, new_secret
from .token_signing import SigningKey

__all__ = ["Tokens"]

log = logging.getLogger(__name__)


_FAMILY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _invalid_grant(description: str) -> HttpError:
    return HttpError(400, "invalid_grant", description)


class Tokens:
    def __init__(
        self,
        records: Records,
        revoked: Records,
        clients: ClientAuthenticator,
        signing: SigningKey,
        access_ttl: int,
        refresh_ttl: int,
    ) -> None:
        self.records, self.revoked, self.clients, self.signing = records, revoked, clients, signing
        self.access_ttl, self.refresh_ttl = access_ttl, refresh_ttl

    # ------------------------------------------------------------------ POST /oauth/token

    async def token(self, request: HttpExchangeRequest) -> HttpExchangeResponse:
        try:
            grant, response = await self._token(request)
        except HttpError as exc:
            OAUTH_TOKEN_REFUSALS.labels(exc.error).inc()
            raise
        OAUTH_TOKENS_ISSUED.labels(grant).inc()
        return response

    async def _token(self, request: HttpExchangeRequest) -> tuple[str, HttpExchangeResponse]:
        form = form_of(request)
        client = await self.clients.authenticate(request, form)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return grant, await self._code(request, form, client)
        if grant == "refresh_token":
            return grant, await self._refresh(request, form, client)
        if not grant:
            raise HttpError(400, "invalid_request", "grant_type is required")
        raise HttpError(400, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")

    async def _code(
        self, request: HttpExchangeRequest, form: dict[str, str], client: ClientRecord
    ) -> HttpExchangeResponse:
        code, verifier = form.get("code"), form.get("code_verifier")
        if not code:
            raise HttpError(400, "invalid_request", "code is required")
        key = f"code.{digest(code)}"
        found = await self.records.get(key, AuthorizationCode)
        if found is None:
            raise _invalid_grant("the authorization code is unknown")
        record, revision = found
        if record.used:
            await self._revoke_family(record.family_id, "authorization code replayed")
            raise _invalid_grant("the authorization code was already used; the tokens it issued are revoked")
        if record.expires_at < time.time():
            raise _invalid_grant("the authorization code has expired")
        if record.client_id != client.client_id:
            raise _invalid_grant("the authorization code was issued to another client")
        if form.get("redirect_uri", record.redirect_uri) != record.redirect_uri:
            raise _invalid_grant("redirect_uri differs from the one in the authorization request")
        if not verifier:
            raise HttpError(400, "invalid_request", "code_verifier is required (PKCE)")
        if not _CHALLENGE.match(verifier) or not hmac.compare_digest(s256(verifier), record.code_challenge):
            raise _invalid_grant("code_verifier does not match the code_challenge")
        self._check_resource(request, form, record.resource)
        family_id = new_secret()[:22]
        try:  # mark it used first: of two concurrent exchanges exactly one wins
            await self.records.update(key, record.model_copy(update={"used": True, "family_id": family_id}), revision)
        except Conflict:
            raise _invalid_grant("the authorization code was already used") from None
        await self.clients.adopt(client)
        refresh = f"{family_id}.{new_secret()}"
        family = RefreshFamily(
            family_id=family_id,
            client_id=client.client_id,
            user_id=record.user_id,
            scope=record.scope,
            resource=record.resource,
            current_digest=digest(refresh),
            expires_at=time.time() + self.refresh_ttl,
        )
        return await self._issue(request, family, refresh, None)

    async def _refresh(
        self, request: HttpExchangeRequest, form: dict[str, str], client: ClientRecord
    ) -> HttpExchangeResponse:
        presented = form.get("refresh_token")
        if not presented:
            raise HttpError(400, "invalid_request", "refresh_token is required")
        family_id = presented.partition(".")[0]
        found = await self.records.get(_family_key(family_id), RefreshFamily) if _FAMILY_ID.match(family_id) else None
        if found is None or found[0].revoked or found[0].expires_at < time.time():
            raise _invalid_grant("the refresh token is unknown, expired or revoked")
        family, revision = found
        if family.client_id != client.client_id:
            raise _invalid_grant("the refresh token was issued to another client")
        if digest(presented) != family.current_digest:
            await self._revoke_family(family_id, "superseded refresh token presented again")
            raise _invalid_grant("the refresh token was already used; its whole family is now revoked")
        self._check_resource(request, form, family.resource)
        scope = family.scope
        if requested := form.get("scope"):
            if not set(requested.split()) <= set(family.scope.split()):
                raise HttpError(400, "invalid_scope", "a refresh may only narrow the granted scope")
            scope = requested
        refresh = f"{family_id}.{new_secret()}"
        rotated = family.model_copy(
            update={"current_digest": digest(refresh), "expires_at": time.time() + self.refresh_ttl}
        )
        return await self._issue(request, rotated, refresh, revision, scope)

    async def _issue(
        self,
        request: HttpExchangeRequest,
        family: RefreshFamily,
        refresh: str,
        revision: int | None,
        scope: str | None = None,
    ) -> HttpExchangeResponse:
        scope = scope or family.scope
        token, jti, expires_at = self.signing.access_token(
            issuer=issuer_of(request),
            audience=family.resource,
            user_id=family.user_id,
            client_id=family.client_id,
            scope=scope,
            ttl=self.access_ttl,
        )
        now = time.time()
        live = [a for a in family.access if a.expires_at > now]
        family = family.model_copy(update={"access": [*live, IssuedAccess(jti=jti, expires_at=expires_at)]})
        try:
            if revision is None:
                await self.records.create(_family_key(family.family_id), family)
            else:
                await self.records.update(_family_key(family.family_id), family, revision)
        except Conflict:  # a concurrent refresh with the same token won: this one is a replay
            await self._revoke_family(family.family_id, "concurrent refresh with one token")
            raise _invalid_grant("the refresh token was already used; its whole family is now revoked") from None
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
            "refresh_token": refresh,
            "scope": scope,
        }
        return json_response(body)

    def _check_resource(self, request: HttpExchangeRequest, form: dict[str, str], granted: str) -> None:
        resource = form.get("resource")
        if resource is not None and resource.rstrip("/") != granted:
            raise HttpError(400, "invalid_target", f"tokens of this grant are for {resource_of(request)} only")

    async def _revoke_family(self, family_id: str | None, why: str) -> None:
        if not family_id:
            return
        for _ in range(5):  # compare-and-set, retried while a concurrent refresh moves the family
            found = await self.records.get(_family_key(family_id), RefreshFamily)
            if found is None:
                return
            family, revision = found
            try:
                await self.records.update(_family_key(family_id), family.model_copy(update={"revoked": True}), revision)
            except Conflict:
                continue
            now = time.time()
            for access in family.access:
                if access.expires_at > now:
                    await self.revoked.put(access.jti, RevokedToken(jti=access.jti, expires_at=access.expires_at))
            log.warning("revoked token family %s…: %s", family_id[:6], why)
            return

    # ------------------------------------------------------------------ POST /oauth/revoke

    async def revoke(self, request: HttpExchangeRequest) -> HttpExchangeResponse:
        form = form_of(request)
        client = await self.clients.authenticate(request, form)
        token = form.get("token")
        if not token:
            raise HttpError(400, "invalid_request", "token is required")
        if token.count(".") == 2:
            await self._revoke_access(token, client)
        else:
            family_id = token.partition(".")[0]
            found = (
                await self.records.get(_family_key(family_id), RefreshFamily) if _FAMILY_ID.match(family_id) else None
            )
            # RFC 7009 §2.2: unknown tokens, and tokens of other clients, are answered 200 all the same
            if found is not None and found[0].client_id == client.client_id:
                await self._revoke_family(family_id, "revoked by its client")
        return json_response({})

    async def _revoke_access(self, token: str, client: ClientRecord) -> None:
        claims = self.signing.verified_claims(token)
        if claims is None:
            return
        jti, exp = claims.get("jti"), claims.get("exp")
        if claims.get("client_id") == client.client_id and isinstance(jti, str) and isinstance(exp, int | float):
            if exp > time.time():
                await self.revoked.put(jti, RevokedToken(jti=jti, expires_at=float(exp)))


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a verifier: BASE64URL(SHA256(verifier)), unpadded (RFC 7636 §4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def _family_key(family_id: str) -> str:
    return f"family.{family_id}"
