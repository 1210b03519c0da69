"""The OAuth 2.1 client operations Bastion performs against an upstream's authorization server.

Dynamic client registration (RFC 7591), the authorization URL with PKCE S256 and a resource indicator
(RFC 8707), and the token endpoint's three grants it uses: authorization code, refresh (the server may
rotate the refresh token), and token exchange (RFC 8693).

Plain form posts over httpx2: every request and answer is visible here, and errors carry the
server's RFC 6749 `error` code, never a token or secret."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from urllib.parse import urlencode

import httpx2
from mcp.shared.auth import OAuthToken
from pydantic import BaseModel, ValidationError

from ..fetch import why_unreachable
from .discovery import Discovered
from .errors import AuthorizationServerError, UpstreamOAuthError

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "TOKEN_EXCHANGE",
    "ClientRegistration",
    "Pkce",
    "TokenSet",
    "authorization_url",
    "exchange_code",
    "exchange_token",
    "refresh",
    "register",
]

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
_MAX_ANSWER = 64 * 1024


class ClientRegistration(BaseModel):
    """Bastion's client at one authorization server."""

    client_id: str
    client_secret: str | None = None
    auth_method: str = "client_secret_post"
    """`client_secret_post`, `client_secret_basic` or `none` (a public client)."""


class TokenSet(BaseModel):
    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    """Epoch seconds; None when the server gave no lifetime."""
    scope: str | None = None

    def fresh(self, margin: float, now: float | None = None) -> bool:
        """True while the access token is good for at least `margin` more seconds."""
        return self.expires_at is None or self.expires_at - (now or time.time()) > margin


class Pkce(BaseModel):
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)  # 64 unreserved characters: within RFC 7636's 43..128
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier=verifier, challenge=base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


async def register(http: httpx2.AsyncClient, found: Discovered, redirect_uri: str) -> ClientRegistration:
    endpoint = found.metadata.registration_endpoint
    if endpoint is None:
        raise UpstreamOAuthError(
            "the authorization server offers no dynamic client registration: configure a client "
            "(`oauth.client_id` and `oauth.client_secret_env`) for this server"
        )
    methods = found.metadata.token_endpoint_auth_methods_supported or ["client_secret_basic"]
    method = "client_secret_post" if "client_secret_post" in methods else methods[0]
    grants = ["authorization_code", "refresh_token"]
    if found.supports_token_exchange:
        grants.append(TOKEN_EXCHANGE)
    body: dict[str, object] = {
        "client_name": "Bastion MCP gateway",
        "redirect_uris": [redirect_uri],
        "grant_types": grants,
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
        **({"scope": found.scope} if found.scope else {}),
    }
    answer = await _post(http, str(endpoint), json_body=body, expect=(200, 201))
    client_id = answer.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise UpstreamOAuthError("the registration answer has no client_id")
    secret = answer.get("client_secret")
    return ClientRegistration(
        client_id=client_id,
        client_secret=secret if isinstance(secret, str) else None,
        auth_method=str(answer.get("token_endpoint_auth_method") or method),
    )


def authorization_url(found: Discovered, client: ClientRegistration, redirect_uri: str, state: str, pkce: Pkce) -> str:
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "resource": found.resource,
        **({"scope": found.scope} if found.scope else {}),
    }
    endpoint = str(found.metadata.authorization_endpoint)
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"


async def exchange_code(
    http: httpx2.AsyncClient,
    found: Discovered,
    client: ClientRegistration,
    code: str,
    redirect_uri: str,
    verifier: str,
) -> TokenSet:
    return await _token(
        http,
        found,
        client,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "resource": found.resource,
        },
    )


async def refresh(
    http: httpx2.AsyncClient, found: Discovered, client: ClientRegistration, tokens: TokenSet
) -> TokenSet:
    if not tokens.refresh_token:
        raise AuthorizationServerError("invalid_grant", "no refresh token was issued")
    renewed = await _token(
        http,
        found,
        client,
        {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token, "resource": found.resource},
    )
    if renewed.refresh_token is None:  # the server did not rotate it: the old one stays valid
        renewed = renewed.model_copy(update={"refresh_token": tokens.refresh_token})
    return renewed


async def exchange_token(
    http: httpx2.AsyncClient, found: Discovered, client: ClientRegistration, subject_token: str
) -> TokenSet:
    """RFC 8693: a user's live access token exchanged for one bound to `found.resource`.

    The live token is for another resource at the same authorization server: no second login."""
    return await _token(
        http,
        found,
        client,
        {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "requested_token_type": ACCESS_TOKEN_TYPE,
            "resource": found.resource,
        },
    )


async def _token(
    http: httpx2.AsyncClient, found: Discovered, client: ClientRegistration, form: dict[str, str]
) -> TokenSet:
    auth: tuple[str | bytes, str | bytes] | None = None
    form = {**form}
    if client.auth_method == "client_secret_basic" and client.client_secret:
        auth = (client.client_id, client.client_secret)
    else:
        form["client_id"] = client.client_id
        if client.auth_method == "client_secret_post" and client.client_secret:
            form["client_secret"] = client.client_secret
    answer = await _post(http, str(found.metadata.token_endpoint), form=form, auth=auth)
    try:
        token = OAuthToken.model_validate(answer)
    except ValidationError:
        raise UpstreamOAuthError("the token endpoint answered without a bearer access token") from None
    return TokenSet(
        access_token=token.access_token,
        refresh_token=token.refresh_token,
        expires_at=time.time() + token.expires_in if token.expires_in is not None else None,
        scope=token.scope,
    )


async def _post(
    http: httpx2.AsyncClient,
    url: str,
    *,
    form: dict[str, str] | None = None,
    json_body: dict[str, object] | None = None,
    auth: tuple[str | bytes, str | bytes] | None = None,
    expect: tuple[int, ...] = (200,),
) -> dict[str, object]:
    try:
        response = await http.post(
            url,
            data=form,
            json=json_body,
            auth=auth if auth is not None else httpx2.USE_CLIENT_DEFAULT,
            headers={"Accept": "application/json"},
        )
    except httpx2.HTTPError as exc:
        raise UpstreamOAuthError(f"cannot reach the authorization server: {why_unreachable(exc)}") from None
    try:
        answer = response.json() if len(response.content) <= _MAX_ANSWER else None
    except ValueError:
        answer = None
    if response.status_code not in expect:
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            description = answer.get("error_description")
            raise AuthorizationServerError(answer["error"], description if isinstance(description, str) else None)
        raise UpstreamOAuthError(f"the authorization server answered HTTP {response.status_code}")
    if not isinstance(answer, dict):
        raise UpstreamOAuthError("the authorization server's answer is not a JSON object")
    return answer
