"""A person signs in through Bastion's own authorization server.

The admin service is an OAuth client of the oauth service, and a successful login becomes a session here.

`GET /login` sends the browser to the gateway's `/oauth/authorize` (the built-in user store's form,
or the OpenID provider behind it) with PKCE and a one-time `state`; `GET /login/callback` exchanges
the code over NATS (`OAUTH_HTTP`, as ingress forwards the agents' requests), verifies the access
token against the oauth service's public keys (KV `bastion_oauth_public`), takes its subject (the
Bastion user), revokes the tokens at once (they were only the proof of who signed in), and opens a
session for the person principal bound to that user. The session is a random id in an HttpOnly,
SameSite=Lax cookie; KV keeps its sha256 and expiry. `POST /logout` ends it.

The client registers itself (RFC 7591, `POST /oauth/register`) under its redirect URI and keeps the
registration in KV `bastion_admin`; one unused for half a day is registered again (the oauth service
forgets registrations unused for a day).
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from libs.common.bus.nats import kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.admin_principals import Principal, token_digest
from libs.common.contracts.oauth import (
    ACCESS_TOKEN_TYP,
    JWKS_KEY,
    AccessTokenKeys,
    HttpExchangeRequest,
    HttpExchangeResponse,
)
from libs.common.settings import AdminSettings
from libs.common.web.page_security import page_headers

from .api.access_store import OAuthClient, PendingLogin, Session
from .api.admin_route import bound_route
from .api.auth import SESSION_COOKIE, Authenticator
from .api.changes import ChangeLog
from .api.errors import needs
from .api.identity import CURRENT, Identity, current
from .api.store import AdminStore
from .api.tables import Conflict
from .roles import AUTHENTICATED, PUBLIC, Grants

__all__ = ["LOGIN_PATH", "OAuthLogin", "login_router", "safe_next"]

log = logging.getLogger(__name__)

LOGIN_PATH = "/login"
CALLBACK_PATH = "/login/callback"
_LOGIN_TTL = 600.0
_REGISTRATION_REFRESH = 12 * 3600.0
_TIMEOUT = 10.0
_LEEWAY = 30


class LoginFailed(Exception):
    """Why a sign-in did not succeed, in words fit for the person at the browser."""


def _page(title: str, message: str, status: int) -> HTMLResponse:
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>"
        f"{html.escape(title)}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34rem;"
        "margin:4rem auto;padding:0 1rem}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p><p><a href='{LOGIN_PATH}'>Sign in again</a></p>"
        "</body></html>"
    )
    return HTMLResponse(body, status_code=status, headers={**page_headers(), "Cache-Control": "no-store"})


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this service only (never another site)."""
    if not value or len(value) > 512 or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


class OAuthLogin:
    def __init__(
        self,
        nc: NATS,
        store: AdminStore,
        settings: AdminSettings,
        changes: ChangeLog | None,
        local_url: Callable[[], str],
    ) -> None:
        self._nc, self._store, self._changes = nc, store, changes
        self.gateway = settings.public_url.rstrip("/")
        """The gateway's public URL: the issuer, where the browser signs in."""
        self._public = settings.admin_public_url.rstrip("/")
        self._local = local_url
        """This replica's own address (known once it listens): the redirect URI's without a public URL."""
        self.session_ttl = settings.admin_session_ttl

    @property
    def admin_url(self) -> str:
        return self._public or self._local().rstrip("/")

    @property
    def enabled(self) -> bool:
        return bool(self.gateway)

    @property
    def redirect_uri(self) -> str:
        return self.admin_url + CALLBACK_PATH

    async def _oauth(self, method: str, path: str, body: str, content_type: str) -> HttpExchangeResponse:
        request = HttpExchangeRequest(
            method=method,
            path=path,
            headers={"content-type": content_type, "accept": "application/json"},
            body=body,
            client_address="admin-service",
            base_url=self.gateway,
        )
        try:
            reply = await self._nc.request(subjects.OAUTH_HTTP, request.model_dump_json().encode(), _TIMEOUT)
        except (NoRespondersError, NatsTimeout):
            raise LoginFailed("the oauth service is not running; sign-in is unavailable") from None
        return HttpExchangeResponse.model_validate_json(reply.data)

    async def client(self) -> OAuthClient:
        clients = self._store.access.clients
        found = await clients.find("client")
        fresh = found is not None and found.value.redirect_uri == self.redirect_uri
        if (
            found is not None
            and fresh
            and (found.value.used or time.time() - found.value.registered_at < _REGISTRATION_REFRESH)
        ):
            return found.value
        metadata = {
            "redirect_uris": [self.redirect_uri],
            "client_name": "Bastion admin",
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        }
        answer = await self._oauth("POST", "/oauth/register", orjson.dumps(metadata).decode(), "application/json")
        if answer.status != 201:
            raise LoginFailed(f"the authorization server refused this service as a client: {answer.body[:200]}")
        record = OAuthClient(client_id=orjson.loads(answer.body)["client_id"], redirect_uri=self.redirect_uri)
        try:
            if found is None:
                await clients.create("client", record)
            else:
                await clients.update("client", record, found.revision)
        except Conflict:  # another replica registered meanwhile: use its registration
            return (await clients.get("client")).value
        return record

    async def start(self, next_path: str | None) -> str:
        """The authorization URL to send the browser to."""
        client = await self.client()
        state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        pending = PendingLogin(verifier=verifier, next=safe_next(next_path), expires_at=time.time() + _LOGIN_TTL)
        await self._store.access.logins.create(token_digest(state), pending)
        query = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": self.redirect_uri,
            "state": state,
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
            "scope": "mcp",
            "resource": f"{self.gateway}/mcp",
        }
        return f"{self.gateway}/oauth/authorize?{urlencode(query)}"

    async def finish(self, code: str, state: str, address: str) -> tuple[str, str]:
        """The session id for a person who signed in, and where to send them."""
        logins = self._store.access.logins
        found = await logins.find(token_digest(state))
        if found is None or found.value.expires_at < time.time():
            raise LoginFailed("this sign-in has expired or was already used; start again")
        await logins.delete(token_digest(state))  # once
        client = await self.client()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": client.client_id,
            "code_verifier": found.value.verifier,
            "resource": f"{self.gateway}/mcp",
        }
        answer = await self._oauth("POST", "/oauth/token", urlencode(form), "application/x-www-form-urlencoded")
        if answer.status != 200:
            raise LoginFailed(f"the authorization server refused the sign-in: {_oauth_error(answer.body)}")
        tokens = orjson.loads(answer.body)
        user = await self._user_of(str(tokens.get("access_token", "")), client.client_id)
        if refresh := tokens.get("refresh_token"):  # the tokens only proved who signed in
            revoke = urlencode({"token": refresh, "client_id": client.client_id})
            await self._oauth("POST", "/oauth/revoke", revoke, "application/x-www-form-urlencoded")
        if not client.used:
            stored = await self._store.access.clients.get("client")
            await self._store.access.clients.update(
                "client", stored.value.model_copy(update={"used": True}), stored.revision
            )
        principal = await self._person(user)
        session = secrets.token_urlsafe(32)
        record = Session(principal=principal.name, expires_at=time.time() + self.session_ttl, address=address)
        await self._store.access.sessions.create(token_digest(session), record)
        self._record(principal, address, "login")
        return session, found.value.next

    async def _user_of(self, token: str, client_id: str) -> str:
        """The user an access token from the token endpoint names, once its signature and claims check out."""
        public = await kv_bucket(self._nc.jetstream(), subjects.KV_OAUTH_PUBLIC)
        try:
            entry = await public.get(JWKS_KEY)
            keys = KeySet.import_key_set({"keys": AccessTokenKeys.model_validate_json(entry.value or b"").keys})
            decoded = jwt.decode(token, keys, algorithms=["ES256"])
            jwt.JWTClaimsRegistry(
                leeway=_LEEWAY,
                iss={"essential": True, "value": self.gateway},
                aud={"essential": True, "value": f"{self.gateway}/mcp"},
                sub={"essential": True},
                client_id={"essential": True, "value": client_id},
                exp={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            log.warning("login: an access token that does not verify (%s)", type(exc).__name__)
            raise LoginFailed("the authorization server's answer did not verify") from None
        if decoded.header.get("typ") != ACCESS_TOKEN_TYP:
            raise LoginFailed("the authorization server's answer did not verify")
        return str(decoded.claims["sub"])

    async def _person(self, user_id: str) -> Principal:
        for _, found in await self._store.access.principals.list():
            if found.value.kind == "person" and found.value.user_id == user_id:
                if found.value.disabled:
                    raise LoginFailed(f"the principal {found.value.name!r} is disabled")
                return found.value
        raise LoginFailed(f"user {user_id!r} signed in, but is no admin principal: ask an owner to add you")

    def _record(self, principal: Principal, address: str, action: str) -> None:
        if self._changes is None:
            return
        identity = Identity(principal.name, principal.kind, tuple(principal.roles), Grants(), address, "session")
        token = CURRENT.set(identity)
        try:
            self._changes.record("session", action, principal.name, None, None)
        finally:
            CURRENT.reset(token)

    def cookie(self, response: Response, session: str | None) -> None:
        secure = urlsplit(self.admin_url).scheme == "https"
        if session is None:
            response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
            return
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=int(self.session_ttl),
            path="/",
            secure=secure,
            httponly=True,
            samesite="lax",
        )

    async def logout(self, identity: Identity) -> None:
        if identity.via == "session":
            await self._store.access.sessions.delete(identity.credential)
            found = await self._store.access.principals.find(identity.principal)
            if found is not None:
                self._record(found.value, identity.address, "logout")


def _oauth_error(body: str) -> str:
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "no reason given"
    return str(parsed.get("error_description") or parsed.get("error") or "no reason given")[:300]


def login_router(login: OAuthLogin, auth: Authenticator) -> APIRouter:
    router = APIRouter(route_class=bound_route(auth), tags=["sign-in"])

    @router.get(LOGIN_PATH, include_in_schema=False, openapi_extra=needs(PUBLIC))
    async def start(next: str | None = None) -> Response:
        if not login.enabled:
            message = (
                "browser sign-in needs BASTION_PUBLIC_URL (the gateway's, where the oauth service signs people in)"
            )
            return _page("Sign-in is off", message, 503)
        try:
            return RedirectResponse(await login.start(next), status_code=302, headers={"Cache-Control": "no-store"})
        except LoginFailed as exc:
            return _page("Cannot sign in", str(exc), 503)

    @router.get(CALLBACK_PATH, include_in_schema=False, openapi_extra=needs(PUBLIC))
    async def callback(
        request: Request, code: str | None = None, state: str | None = None, error: str | None = None
    ) -> Response:
        if error is not None or not code or not state:
            return _page("Cannot sign in", f"the authorization server said: {(error or 'no code')[:100]}", 400)
        address = request.client.host if request.client else "unknown"
        try:
            session, next_path = await login.finish(code[:512], state[:512], address)
        except LoginFailed as exc:
            return _page("Cannot sign in", str(exc), 403)
        response = RedirectResponse(next_path, status_code=302, headers={"Cache-Control": "no-store"})
        login.cookie(response, session)
        return response

    @router.post("/logout", status_code=204, openapi_extra=needs(AUTHENTICATED))
    async def logout() -> Response:
        """End this browser session (the cookie's); an API token is revoked instead (`.../revoke`)."""
        await login.logout(current())
        response = Response(status_code=204)
        login.cookie(response, None)
        return response

    return router
