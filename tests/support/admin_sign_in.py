"""A person signs in to the admin service as with a browser: `/login` there, the oauth service's
authorization page, the person's proof (the password form, or "Sign in with <provider>" and that
OpenID provider's forms), and back to the admin service's `/login/callback`.

`sign_in_to_admin(admin, public, proof)` walks the whole way and returns the browser (its cookies
hold the admin session) and the admin service's last answer, or the oauth service's when that one
refuses first; `with_password(user, password)` and `with_openid_provider(login)` are the two proofs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx2

from libs.common.web.guarded_http import shared_tls
from tests.support.oauth_browser import Browser
from tests.support.oidc_idp import sign_in_through_bastion

__all__ = ["Proof", "sign_in_to_admin", "with_openid_provider", "with_password"]

Proof = Callable[[httpx2.AsyncClient, str], Awaitable[str | httpx2.Response]]
"""Given the browser and the oauth service's authorization URL: the URL the person is sent back to
(the admin service's callback), or the oauth service's answer when it refuses the person."""


async def sign_in_to_admin(admin: str, public: str, proof: Proof) -> tuple[httpx2.AsyncClient, httpx2.Response]:
    """The browser (based at `admin`; the caller closes it) and the last answer of the sign-in."""
    browser = httpx2.AsyncClient(base_url=admin, timeout=30, follow_redirects=False, verify=shared_tls())
    started = await browser.get(f"{admin}/login", params={"next": "/dashboard"})
    assert started.status_code == 302, started.text
    authorize = started.headers["location"]
    assert authorize.startswith(f"{public}/oauth/authorize?"), authorize
    back = await proof(browser, authorize)
    if isinstance(back, httpx2.Response):
        return browser, back
    assert back.startswith(f"{admin}/login/callback?"), back
    return browser, await browser.get(back)


def with_password(user: str, password: str) -> Proof:
    """The oauth service's own login form, filled with `user` and `password`."""

    async def proof(_browser: httpx2.AsyncClient, authorize: str) -> str:
        result = await Browser(user, password).login(authorize)
        assert result.location is not None, f"HTTP {result.status}: {result.page[:300]}"
        return result.location

    return proof


def with_openid_provider(login: str, label: str = "Test IdP") -> Proof:
    """ "Sign in with `label`" on the oauth service's page, the provider's forms as `login`, and the
    oauth service's federated callback, which either sends the browser on or refuses."""

    async def proof(browser: httpx2.AsyncClient, authorize: str) -> str | httpx2.Response:
        at_bastion = await sign_in_through_bastion(browser, authorize, login, label)
        public = authorize.split("/oauth/authorize?")[0]
        assert at_bastion.startswith(f"{public}/oauth/federated/callback?"), at_bastion
        federated = await browser.get(at_bastion)
        return federated.headers["location"] if federated.status_code == 302 else federated

    return proof
