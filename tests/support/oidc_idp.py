"""A real OpenID provider for tests: npm `oidc-provider` on Node 22, both installed into `.tools/` on
first use exactly as the conformance suite installs its Node and npm package (tests/conformance).

`running_oidc_provider(client_id, secret, redirect_uri)` yields the provider's issuer URL; its
development login form signs in any login (the account id) and then asks for consent;
`sign_in_at_provider` drives both forms like a person with a browser (cookies kept);
`sign_in_through_bastion` starts one step earlier, at Bastion's own authorization page, and takes its
"Sign in with <provider>" link there. `gateway_federated_to_provider` runs the gateway with its oauth
service federated to a running provider.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx2

from cli.ports import hold_ports
from tests.support.gateway import Gateway, running_oauth_gateway
from tests.support.node_tools import ensure_node, ensure_package
from tests.support.processes import serving_process

__all__ = [
    "OIDC_PROVIDER_VERSION",
    "gateway_federated_to_provider",
    "running_oidc_provider",
    "sign_in_at_provider",
    "sign_in_through_bastion",
]

OIDC_PROVIDER_VERSION = "9.13.3"
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
_FORM = re.compile(r"<form[^>]*action=\"([^\"]+)\"[^>]*>(.*?)</form>", re.S)
_HIDDEN = re.compile(r"<input type=\"hidden\" name=\"([^\"]+)\" value=\"([^\"]*)\"")
_FEDERATED_LINK = re.compile(r"id='federated' href='([^']+)'")


@contextmanager
def running_oidc_provider(client_id: str, client_secret: str, redirect_uri: str) -> Iterator[str]:
    node = ensure_node()
    package = ensure_package("oidc", "oidc-provider", OIDC_PROVIDER_VERSION)
    entry = package / json.loads((package / "package.json").read_text())["main"]
    argv = [str(node), str(SCRIPT), str(entry), client_id, client_secret, redirect_uri]
    # stderr: its development-mode warnings
    with serving_process(argv, "oidc-provider", stderr=subprocess.DEVNULL) as issuer:
        yield issuer


async def sign_in_at_provider(browser: httpx2.AsyncClient, authorization_url: str, login: str) -> str:
    """Follow the provider's pages from `authorization_url`, sign in as `login`, consent; returns the
    URL it finally sends the browser to (the relying party's callback with `code` and `state`)."""
    url, issuer = authorization_url, authorization_url.split("/auth")[0]
    for _ in range(12):  # auth -> login form -> auth -> consent form -> auth -> callback
        if not url.startswith(issuer):
            return url
        page = await browser.get(url)
        if page.status_code in (302, 303):
            url = urljoin(url, page.headers["location"])
            continue
        assert page.status_code == 200, f"HTTP {page.status_code} at {url}: {page.text[:300]}"
        form = _FORM.search(page.text)
        assert form is not None, f"no form at {url}: {page.text[:300]}"
        fields = {name: unescape(value) for name, value in _HIDDEN.findall(form.group(2))}
        if fields.get("prompt") == "login":
            fields |= {"login": login, "password": "any password: the development form takes any"}
        posted = await browser.post(urljoin(url, unescape(form.group(1))), data=fields)
        assert posted.status_code in (302, 303), f"HTTP {posted.status_code} posting at {url}: {posted.text[:300]}"
        url = urljoin(url, posted.headers["location"])
    raise AssertionError("the provider kept the browser going in circles")


async def sign_in_through_bastion(browser: httpx2.AsyncClient, authorize_url: str, login: str, label: str) -> str:
    """From Bastion's `/oauth/authorize` page, "Sign in with `label`" and the provider's forms as `login`;
    returns the URL the provider sends the browser back to (Bastion's federated callback)."""
    page = await browser.get(authorize_url)
    assert page.status_code == 200 and f"Sign in with {label}" in page.text, page.text[:300]
    link = _FEDERATED_LINK.search(page.text)
    assert link is not None, page.text[:300]
    started = await browser.get(urljoin(authorize_url, unescape(link.group(1))))
    assert started.status_code == 302, started.text
    to_provider = started.headers["location"]
    assert "code_challenge_method=S256" in to_provider and "nonce=" in to_provider
    return await sign_in_at_provider(browser, to_provider, login)


CLIENT_ID = "bastion-gateway"
CLIENT_SECRET = "oidc-test-client-secret-not-a-real-one"


def federation_options(issuer: str) -> dict[str, str]:
    """The oauth service's settings that federate its logins to the test provider at `issuer`."""
    return {
        "oidc_issuer": issuer,
        "oidc_name": "Test IdP",
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
    }


@asynccontextmanager
async def gateway_federated_to_provider(
    nats_url: str, redis_url: str, workdir: Path, raw_config: dict[str, Any], **options: Any
) -> AsyncIterator[tuple[Gateway, str]]:
    """The gateway whose oauth service offers "Sign in with Test IdP", a provider running for it;
    yields the gateway and its public URL. `options` go to `running_gateway` (`admin=True`, ...)."""
    with hold_ports(1) as held:  # the gateway's, no one else's while the provider starts (`cli.ports`)
        (port,) = held.ports
        callback = f"http://127.0.0.1:{port}/oauth/federated/callback"
        with running_oidc_provider(CLIENT_ID, CLIENT_SECRET, callback) as issuer:
            async with running_oauth_gateway(
                nats_url, redis_url, workdir, raw_config, port, oauth_options=federation_options(issuer), **options
            ) as (gateway, public):
                yield gateway, public
