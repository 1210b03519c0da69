"""The browser step of an OAuth login, driven programmatically against Bastion's real login form.

`Browser.login(authorization_url)` does what a person does: opens the authorization URL, fills
the form it gets with a user name and password, submits it, and reads where it is sent back to
(the client's redirect URI with `code`, `state`, `iss`). Nothing is short-circuited: every step is
an HTTP request to the gateway.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.oauth import PasswordChange, PasswordChanged
from libs.common.web.guarded_http import shared_tls

__all__ = ["Browser", "LoginResult", "authorization_url", "log_in_for_tokens", "s256", "set_password"]

FIXED_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
"""A valid PKCE S256 challenge, for flows a test never takes to the token endpoint."""


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of `verifier` (RFC 7636)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorization_url(
    base: str, client_id: str, redirect_uri: str, challenge: str = FIXED_CHALLENGE, **more: str
) -> str:
    """The gateway's authorization endpoint for `client_id`, as a client sends the browser there
    (`more`: further query parameters, such as `state`)."""
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **more,
    }
    return f"{base}/oauth/authorize?{urlencode(query)}"


_HIDDEN = re.compile(r"name='request' value='([^']*)'")


@dataclass
class LoginResult:
    status: int
    location: str | None
    page: str

    @property
    def params(self) -> dict[str, str]:
        assert self.location is not None, f"no redirect (HTTP {self.status}): {self.page[:300]}"
        return {k: v[0] for k, v in parse_qs(urlsplit(self.location).query).items()}


class Browser:
    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password
        self.pages: list[str] = []

    async def login(self, authorization_url: str) -> LoginResult:
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False, verify=shared_tls()) as http:
            page = await http.get(authorization_url)
            if page.status_code != 200:
                return LoginResult(page.status_code, page.headers.get("location"), page.text)
            self.pages.append(page.text)
            found = _HIDDEN.search(page.text)
            assert found, f"no login form on the authorization page: {page.text[:300]}"
            submitted = await http.post(
                urljoin(authorization_url, "/oauth/login"),
                data={"request": html.unescape(found.group(1)), "username": self.username, "password": self.password},
            )
            return LoginResult(submitted.status_code, submitted.headers.get("location"), submitted.text)


async def set_password(nats_url: str, user_id: str, password: str) -> PasswordChanged:
    """What `bastion users create --password` does, through the admin API, in one NATS request."""
    nc = await connect(nats_url, "test-password")
    try:
        change = PasswordChange.model_validate({"user_id": user_id, "password": password})
        reply = await nc.request(subjects.OAUTH_PASSWORD, change.model_dump_json().encode(), timeout=10)
    finally:
        await nc.close()
    return PasswordChanged.model_validate_json(reply.data)


async def log_in_for_tokens(base: str, username: str, password: str) -> dict[str, Any]:
    """A whole authorization code flow against the gateway at `base`, as a minimal public client
    does it: register (RFC 7591), log in through the form with PKCE S256, exchange the code. Returns
    the token endpoint's answer (`access_token`, `refresh_token`, ...)."""
    redirect = "http://127.0.0.1:33420/callback"
    verifier = secrets.token_urlsafe(48)
    challenge = s256(verifier)
    async with httpx2.AsyncClient(timeout=30, verify=shared_tls()) as http:
        registered = await http.post(f"{base}/oauth/register", json={"redirect_uris": [redirect]})
        assert registered.status_code == 201, registered.text
        client_id = registered.json()["client_id"]
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": f"{base}/mcp",
        }
        code = (await Browser(username, password).login(f"{base}/oauth/authorize?{urlencode(query)}")).params["code"]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "client_id": client_id,
            "code_verifier": verifier,
        }
        answer = await http.post(f"{base}/oauth/token", data=form)
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    return tokens
