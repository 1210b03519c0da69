"""Credentials on a REST API's requests, per `openapi.auth`.

Bearer tokens, HTTP basic and API keys (header, query or cookie) are added to each request as it is
built (`apply_static`). OAuth 2 client credentials are an httpx2 auth flow (`ClientCredentials`): the
token is fetched from the token endpoint on first use (through the same client, so the same limits
apply), kept until `EARLY` seconds before it expires, fetched once more when the API answers 401 to it,
and shared by concurrent calls (one fetch at a time). Bastion's own upstream OAuth (`type: oauth`,
shared or per user) is the executor's `OAuthTokens` flow, handed to the session from outside.
Secrets never reach a message: a failed token request says the status and the OAuth error code only.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncGenerator
from typing import Any, Final
from urllib.parse import quote, urlencode

import httpx2
import orjson

from libs.common.contracts.openapi_config import (
    OpenApiApiKey,
    OpenApiAuth,
    OpenApiBasic,
    OpenApiBearer,
    OpenApiClientCredentials,
)

from .http_request import PreparedRequest

__all__ = ["EARLY", "ClientCredentials", "TokenError", "apply_static"]

EARLY: Final = 30.0
"""Seconds before its expiry a kept token is replaced."""
_DEFAULT_LIFETIME: Final = 300.0
"""A token answered without `expires_in` is kept this long."""


class TokenError(httpx2.HTTPError):
    """The token endpoint did not give a token; the message says why, without secrets."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def apply_static(auth: OpenApiAuth | None, request: PreparedRequest) -> None:
    """Add a bearer token, basic credentials or an API key to `request`."""
    if isinstance(auth, OpenApiBearer):
        request.headers.append(("Authorization", f"Bearer {auth.token}"))
    elif isinstance(auth, OpenApiBasic):
        pair = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
        request.headers.append(("Authorization", f"Basic {pair}"))
    elif isinstance(auth, OpenApiApiKey):
        if auth.in_ == "header":
            request.headers.append((auth.name, auth.value))
        elif auth.in_ == "query":
            separator = "&" if "?" in request.url else "?"
            request.url += f"{separator}{quote(auth.name, safe='')}={quote(auth.value, safe='')}"
        else:
            cookie = f"{auth.name}={quote(auth.value, safe='')}"
            for index, (name, value) in enumerate(request.headers):
                if name.lower() == "cookie":
                    request.headers[index] = (name, f"{value}; {cookie}")
                    break
            else:
                request.headers.append(("Cookie", cookie))


class ClientCredentials(httpx2.Auth):
    """OAuth 2 client credentials as an httpx2 auth flow (RFC 6749 section 4.4)."""

    def __init__(self, spec: OpenApiClientCredentials, token_url: str) -> None:
        self._spec = spec
        self._token_url = token_url
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0
        """Tokens fetched so far (tests count them)."""

    def _fresh(self) -> bool:
        return self._token is not None and time.time() < self._expires_at - EARLY

    def _token_request(self) -> httpx2.Request:
        spec = self._spec
        form: dict[str, str] = {"grant_type": "client_credentials"}
        if spec.scopes:
            form["scope"] = " ".join(spec.scopes)
        if spec.audience:
            form["audience"] = spec.audience
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if spec.client_auth == "client_secret_basic":
            pair = f"{quote(spec.client_id, safe='')}:{quote(spec.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form |= {"client_id": spec.client_id, "client_secret": spec.client_secret}
        return httpx2.Request("POST", self._token_url, headers=headers, content=urlencode(form).encode())

    def _take(self, response: httpx2.Response) -> None:
        try:
            answer: Any = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = None
        if (
            response.status_code != 200
            or not isinstance(answer, dict)
            or not isinstance(answer.get("access_token"), str)
        ):
            code = answer.get("error") if isinstance(answer, dict) and isinstance(answer.get("error"), str) else None
            detail = f" ({code[:64]})" if code else ""
            raise TokenError(
                f"OAuth client credentials: the token endpoint answered HTTP {response.status_code}{detail}, no token"
            )
        lifetime = answer.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else _DEFAULT_LIFETIME
        self._token, self._expires_at = answer["access_token"], time.time() + seconds
        self.fetched += 1

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        async with self._lock:
            if not self._fresh():
                response = yield self._token_request()
                await response.aread()
                self._take(response)
        used = self._token
        request.headers["Authorization"] = f"Bearer {used}"
        response = yield request
        if response.status_code != 401:
            return
        async with self._lock:
            if self._token == used:  # nobody replaced it meanwhile: this one was refused
                response = yield self._token_request()
                await response.aread()
                self._take(response)
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request
