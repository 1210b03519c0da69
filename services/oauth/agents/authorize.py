"""The authorization endpoint and the login form (OAuth 2.1 §4.1.1, PKCE S256 only).

Until the client and its redirect URI are known to be good, errors are shown to the user and never
redirected (a forged request must not turn Bastion into an open redirector); after that they go
back to the client as `error=` on its redirect URI, with its `state` and our `iss` (RFC 9207).
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from typing import Final
from urllib.parse import urlencode, urlsplit

from nats.js.kv import KeyValue

from libs.common.contracts.entities import entity_key
from libs.common.contracts.oauth import HttpExchangeRequest, HttpExchangeResponse

from ..http import HttpError, form_of, html_page, query_of, redirect
from ..store import Records
from .client_metadata import ClientMetadataError
from .clients import ClientAuthenticator
from .metadata import SCOPES, issuer_of, resource_of
from .password_hashing import hash_password, verify_password
from .records import (
    AuthorizationCode,
    ClientRecord,
    LoginFailures,
    PasswordRecord,
    PendingLogin,
    digest,
    new_secret,
)

__all__ = ["Authorize", "password_key"]

_CHALLENGE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
_MAX_STATE = 1024
_MAX_USERNAME = 64
_DUMMY_HASH: Final = hash_password("timing-equaliser-not-a-password")
"""Hashed for unknown users too, so response times do not reveal which user names exist."""


def password_key(user_id: str) -> str:
    return f"password.{user_id}"


class _Redirectable(Exception):
    """An error reported to the client on its (validated) redirect URI."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


class Authorize:
    def __init__(
        self,
        records: Records,
        clients: ClientAuthenticator,
        policy: KeyValue,
        code_ttl: int,
        login_ttl: int,
        federated: str | None = None,
        max_failures: int = 10,
        failure_window: int = 900,
    ) -> None:
        self.records, self.clients, self.policy = records, clients, policy
        self.code_ttl, self.login_ttl = code_ttl, login_ttl
        self.max_failures, self.failure_window = max_failures, failure_window
        self.federated = federated
        """The external identity provider's name when OIDC federation is on (the form links to it)."""

    # ------------------------------------------------------------------ GET /oauth/authorize

    async def start(self, request: HttpExchangeRequest) -> HttpExchangeResponse:
        try:
            params = query_of(request)
        except HttpError as exc:
            return _error_page(exc.description)
        try:
            client = await self.clients.lookup(params.get("client_id", ""))
        except ClientMetadataError as exc:
            return _error_page(str(exc))
        if client is None:
            return _error_page("unknown client_id: the application is not registered with this gateway")
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is None and len(client.redirect_uris) == 1:
            redirect_uri = client.redirect_uris[0]
        if redirect_uri is None or redirect_uri not in client.redirect_uris:
            return _error_page("redirect_uri does not match any redirect URI registered for this application")
        state = params.get("state")
        try:
            pending = self._validated(request, params, client.client_id, redirect_uri, state)
        except _Redirectable as exc:
            out = {"error": exc.error, "error_description": exc.description, "iss": issuer_of(request)}
            return redirect(redirect_uri, out | ({"state": state} if state is not None else {}))
        login_id = new_secret()
        await self.records.put(_pending_key(login_id), pending)
        return _login_form(login_id, client.client_name or client.client_id, redirect_uri, None, self.federated)

    def _validated(
        self,
        request: HttpExchangeRequest,
        params: dict[str, str],
        client_id: str,
        redirect_uri: str,
        state: str | None,
    ) -> PendingLogin:
        if params.get("response_type") != "code":
            raise _Redirectable("unsupported_response_type", "response_type must be 'code'")
        if state is not None and len(state) > _MAX_STATE:
            raise _Redirectable("invalid_request", f"state may have at most {_MAX_STATE} characters")
        challenge = params.get("code_challenge")
        if not challenge:
            raise _Redirectable("invalid_request", "code_challenge is required (PKCE)")
        if params.get("code_challenge_method") != "S256":
            raise _Redirectable("invalid_request", "code_challenge_method must be S256 ('plain' is not accepted)")
        if not _CHALLENGE.match(challenge):
            raise _Redirectable("invalid_request", "code_challenge must be 43-128 characters of [A-Za-z0-9._~-]")
        scopes = params.get("scope", "").split() or list(SCOPES)
        if unknown := [s for s in scopes if s not in SCOPES]:
            raise _Redirectable("invalid_scope", f"unknown scope(s) {unknown}; this gateway offers {list(SCOPES)}")
        resource = params.get("resource", resource_of(request))
        if resource.rstrip("/") != resource_of(request):
            raise _Redirectable("invalid_target", f"this authorization server issues tokens for {resource_of(request)}")
        return PendingLogin(
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=state,
            code_challenge=challenge,
            scope=" ".join(dict.fromkeys(scopes)),
            resource=resource_of(request),
            expires_at=time.time() + self.login_ttl,
        )

    # ------------------------------------------------------------------ POST /oauth/login

    async def login(self, request: HttpExchangeRequest) -> HttpExchangeResponse:
        try:
            form = form_of(request)
        except HttpError as exc:
            return _error_page(exc.description)
        login_id = form.get("request", "")
        pending = await self.pending(login_id)
        if pending is None:
            return _error_page("this login page has expired or was already used; start again from your application")
        username = form.get("username", "").strip().lower()[: _MAX_USERNAME + 1]
        if await self._locked(username):
            client = await self._client_or_none(pending.client_id)
            name = (client.client_name or client.client_id) if client else pending.client_id
            problem = "too many failed sign-ins for this user name: wait a few minutes and try again"
            return _login_form(login_id, name, pending.redirect_uri, problem, self.federated, status=429)
        user_id = await self._check_password(username, form.get("password", ""))
        if user_id is None:
            await self._failed(username)
            client = await self._client_or_none(pending.client_id)
            name = (client.client_name or client.client_id) if client else pending.client_id
            problem = "wrong user name or password"
            return _login_form(login_id, name, pending.redirect_uri, problem, self.federated, status=401)
        await self.records.delete(_failures_key(username))
        return await self.complete(request, login_id, user_id)

    async def _client_or_none(self, client_id: str) -> ClientRecord | None:
        try:
            return await self.clients.lookup(client_id)
        except ClientMetadataError:
            return None

    async def _locked(self, username: str) -> bool:
        """Too many wrong passwords for this name lately.

        Refused before any hashing (password guessing, and CPU spent on scrypt, are bounded per name)."""
        found = await self.records.get(_failures_key(username), LoginFailures)
        return (
            found is not None
            and found[0].count >= self.max_failures
            and time.time() - found[0].since < self.failure_window
        )

    async def _failed(self, username: str) -> None:
        found = await self.records.get(_failures_key(username), LoginFailures)
        now = time.time()
        fresh = found is None or now - found[0].since >= self.failure_window
        failures = LoginFailures(count=1, since=now) if fresh or found is None else found[0]
        if not fresh:
            failures.count += 1
        await self.records.put(_failures_key(username), failures)

    async def pending(self, login_id: str) -> PendingLogin | None:
        """The authorization request waiting behind a login page, unless it expired or was used."""
        found = await self.records.get(_pending_key(login_id), PendingLogin) if login_id else None
        if found is None or found[0].expires_at < time.time():
            return None
        return found[0]

    async def complete(self, request: HttpExchangeRequest, login_id: str, user_id: str) -> HttpExchangeResponse:
        """`user_id` has proven who they are (password, or an identity provider): a code for the client."""
        pending = await self.pending(login_id)
        if pending is None:
            return _error_page("this login page has expired or was already used; start again from your application")
        await self.records.delete(_pending_key(login_id))
        code = new_secret()
        await self.records.create(
            f"code.{digest(code)}",
            AuthorizationCode(
                client_id=pending.client_id,
                redirect_uri=pending.redirect_uri,
                user_id=user_id,
                code_challenge=pending.code_challenge,
                scope=pending.scope,
                resource=pending.resource,
                expires_at=time.time() + self.code_ttl,
            ),
        )
        params = {"code": code, "iss": issuer_of(request)}
        if pending.state is not None:
            params["state"] = pending.state
        return redirect(pending.redirect_uri, params)

    async def _check_password(self, username: str, password: str) -> str | None:
        """The user id when `password` is that user's and the user still exists, else None."""
        valid_name = 0 < len(username) <= _MAX_USERNAME and username.replace("-", "").replace("_", "").isalnum()
        stored = await self.records.get(password_key(username), PasswordRecord) if valid_name else None
        hashed = stored[0].hash if stored is not None else _DUMMY_HASH
        ok = await asyncio.to_thread(verify_password, password, hashed)
        if not ok or stored is None:
            return None
        return username if await self.user_exists(username) else None

    async def user_exists(self, user_id: str) -> bool:
        """A deleted user entity cannot log in, whatever proves who they are."""
        try:
            entry = await self.policy.get(entity_key("user", user_id))
        except Exception:
            return False
        return bool(entry.value)


def _failures_key(username: str) -> str:
    return f"failures.{digest(username)}"


def _pending_key(login_id: str) -> str:
    return f"pending.{digest(login_id)}"


def _error_page(message: str) -> HttpExchangeResponse:
    return html_page("Cannot sign in", f"<h1>Cannot sign in</h1><p>{html.escape(message)}</p>", status=400)


def _login_form(
    login_id: str,
    client_name: str,
    redirect_uri: str,
    problem: str | None,
    federated: str | None = None,
    status: int = 200,
) -> HttpExchangeResponse:
    target = urlsplit(redirect_uri)
    where = target.hostname or target.scheme
    warning = f"<p role='alert'><strong>{html.escape(problem)}</strong></p>" if problem else ""
    body = (
        "<h1>Sign in to Bastion</h1>"
        f"<p><strong>{html.escape(client_name)}</strong> wants to use this MCP gateway as you. "
        f"After you sign in you are sent back to <code>{html.escape(where)}</code>.</p>"
        f"{warning}"
        "<form method='post' action='/oauth/login'>"
        f"<input type='hidden' name='request' value='{html.escape(login_id, quote=True)}'>"
        "<label>User name <input name='username' autocomplete='username' required maxlength='64'></label>"
        "<label>Password <input name='password' type='password' autocomplete='current-password' required></label>"
        "<button type='submit'>Sign in</button></form>"
    )
    if federated:
        start = html.escape(f"/oauth/federated/start?{urlencode({'request': login_id})}", quote=True)
        body += f"<p><a id='federated' href='{start}'>Sign in with {html.escape(federated)}</a></p>"
    return html_page("Sign in to Bastion", body, status=status)
