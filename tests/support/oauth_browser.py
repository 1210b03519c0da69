"""The browser step of an OAuth login, driven programmatically against Bastion's real login form.

`Browser.login(authorization_url)` does what a person does: opens the authorization URL, fills
the form it gets with a user name and password, submits it, and reads where it is sent back to
(the client's redirect URI with `code`, `state`, `iss`). Nothing is short-circuited: every step is
an HTTP request to the gateway.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2

from bastion_common import subjects
from bastion_common.nats import connect
from bastion_common.oauth import PasswordChange, PasswordChanged

__all__ = ["Browser", "LoginResult", "set_password"]

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
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
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
