"""Access tokens a provider is called with, fetched with its sealed credential and kept until shortly before expiry.

Azure OpenAI with Entra ID client credentials: the app's client secret goes to the tenant's token
endpoint (`grant_type=client_credentials`, scope `https://cognitiveservices.azure.com/.default`).
Vertex AI with a service account: its JSON key signs a JWT assertion (RS256, joserfc) exchanged at
Google's token endpoint (RFC 7523's `jwt-bearer` grant). Either way the credential itself never goes
to the provider, only the access token does, as bearer.

A token is reused until `_MARGIN` before it expires; requests arriving while it is being fetched wait
for that one fetch (and share its failure). Fetches go through the provider's own HTTP, so the egress
rules decide whether the token endpoint may be reached, as they do for the provider. A failed fetch
says which endpoint answered what (its OAuth `error` code), never the credential, the assertion or a
token: the answer's body is not quoted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm_config import ProviderConfig

from .llm_http import Answer, Broken, Unreachable
from .llm_wires import Outgoing, Wire, WireFailure

__all__ = ["AccessTokens", "CredentialProblem", "TokenAuthWire", "access_tokens"]

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_ASSERTION_SECONDS = 3600
"""An assertion's lifetime: Google accepts at most an hour."""
_MARGIN = 300.0
"""Seconds before expiry a token is replaced (at most half its lifetime): a request sent with it must
still find it valid when the provider checks it."""
_MAX_TOKEN_CHARS = 16 * 1024
_MAX_ERROR_CHARS = 200

Post = Callable[[str, bytes, Mapping[str, str]], AbstractAsyncContextManager[Answer]]
Fetch = Callable[[], Awaitable[tuple[str, float]]]


class CredentialProblem(ValueError):
    """A provider's credential that cannot be used (its message says why, never what it holds)."""


class AccessTokens:
    """One provider's current access token: fetched on first use, replaced shortly before it expires."""

    def __init__(self, fetch: Fetch, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch, self._clock = fetch, clock
        self._token: str | None = None
        self._replace_at = 0.0
        self._pending: asyncio.Future[str] | None = None
        self.fetches = 0
        """Tokens fetched so far (tried, failed ones included)."""

    async def bearer(self) -> str:
        if self._token is not None and self._clock() < self._replace_at:
            return self._token
        if self._pending is None:  # one fetch however many requests need a token now
            self._pending = asyncio.ensure_future(self._refreshed())
            self._pending.add_done_callback(self._settled)
        return await asyncio.shield(self._pending)

    async def _refreshed(self) -> str:
        self.fetches += 1
        started = self._clock()
        token, lifetime = await self._fetch()
        self._token, self._replace_at = token, started + lifetime - min(_MARGIN, lifetime / 2)
        return token

    def _settled(self, future: asyncio.Future[str]) -> None:
        self._pending = None
        if not future.cancelled():
            future.exception()  # read: a failure no request waited for is not an unretrieved error


def access_tokens(
    config: ProviderConfig, credential: str | None, post: Post, clock: Callable[[], float] = time.monotonic
) -> AccessTokens | None:
    """The token source of a provider whose key is exchanged for tokens; None when the key is sent itself."""
    if not config.fetches_tokens:
        return None
    if not credential:
        raise CredentialProblem("no credential to fetch access tokens with (set api_key or api_key_env)")
    if config.kind == "azure":
        tenant = quote(config.tenant_id or "", safe="")
        url = config.token_url or f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
        form = {
            "grant_type": "client_credentials",
            "client_id": config.client_id or "",
            "client_secret": credential,
            "scope": ENTRA_SCOPE,
        }
        return AccessTokens(lambda: _token_from(post, url, form), clock)
    url = config.token_url or GOOGLE_TOKEN_URL
    email, key, key_id = _service_account(credential)

    async def fetch() -> tuple[str, float]:
        return await _token_from(
            post, url, {"grant_type": _JWT_BEARER, "assertion": _assertion(email, key, key_id, url)}
        )

    return AccessTokens(fetch, clock)


def _service_account(credential: str) -> tuple[str, RSAKey, str | None]:
    """A service account's JSON key: its email, its private key and that key's id."""
    try:
        info = orjson.loads(credential)
    except orjson.JSONDecodeError:
        raise CredentialProblem("the service account key is not JSON (give the key file's whole content)") from None
    if not isinstance(info, dict) or not isinstance(info.get("client_email"), str):
        raise CredentialProblem("the service account key has no client_email")
    try:
        key = RSAKey.import_key(str(info.get("private_key") or ""))
    except (JoseError, ValueError, TypeError):
        raise CredentialProblem("the service account key's private_key is not an RSA private key") from None
    if not key.is_private:
        raise CredentialProblem("the service account key's private_key is not an RSA private key")
    key_id = info.get("private_key_id")
    return info["client_email"], key, key_id if isinstance(key_id, str) else None


def _assertion(email: str, key: RSAKey, key_id: str | None, audience: str) -> str:
    now = int(time.time())
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT", **({"kid": key_id} if key_id else {})}
    claims = {"iss": email, "scope": GOOGLE_SCOPE, "aud": audience, "iat": now, "exp": now + _ASSERTION_SECONDS}
    return jwt.encode(header, claims, key)


async def _token_from(post: Post, url: str, form: dict[str, str]) -> tuple[str, float]:
    """(access token, seconds it lives) from an OAuth token endpoint's answer to `form`."""
    headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
    where = f"the token endpoint {url.split('?', 1)[0]}"
    try:
        async with post(url, urlencode(form).encode(), headers) as answer:
            status, body = answer.status, await answer.read()
    except (Unreachable, Broken) as exc:
        raise WireFailure(ErrorKind.UPSTREAM_UNAVAILABLE, f"no access token: {where} is unreachable ({exc})") from None
    except TimeoutError:
        raise WireFailure(ErrorKind.UPSTREAM_TIMEOUT, f"no access token: {where} did not answer in time") from None
    payload: Any = None
    with contextlib.suppress(orjson.JSONDecodeError):
        payload = orjson.loads(body)
    payload = payload if isinstance(payload, dict) else {}
    if status != 200:
        code = str(payload.get("error") or "no OAuth error code")[:_MAX_ERROR_CHARS]
        kind = ErrorKind.UPSTREAM_UNAVAILABLE if status >= 500 or status == 429 else ErrorKind.UPSTREAM_ERROR
        raise WireFailure(kind, f"no access token: {where} answered HTTP {status} ({code})", status)
    token, lifetime = payload.get("access_token"), payload.get("expires_in")
    if isinstance(lifetime, str) and lifetime.isdigit():  # some endpoints send it as a string
        lifetime = int(lifetime)
    if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN_CHARS or not isinstance(lifetime, int | float):
        raise WireFailure(
            ErrorKind.UPSTREAM_ERROR, f"no access token: {where} answered without access_token and expires_in"
        )
    return token, max(float(lifetime), 1.0)


class TokenAuthWire:
    """A wire whose requests carry the provider's current access token as bearer."""

    def __init__(self, wire: Wire, tokens: AccessTokens) -> None:
        self._wire, self.tokens = wire, tokens
        self.endpoint = wire.endpoint
        self.completion, self.decoder, self.failure = wire.completion, wire.decoder, wire.failure

    async def request(self, body: dict[str, Any], streaming: bool) -> Outgoing:
        outgoing = await self._wire.request(body, streaming)
        headers = {**outgoing.headers, "authorization": f"Bearer {await self.tokens.bearer()}"}
        return Outgoing(outgoing.url, headers, outgoing.content)
