"""Server-side request forgery through the oauth service is refused: a URL someone else
chose is never fetched when its host resolves to a loopback, private, link-local or multicast
address, unless a development setting says so.

- A stranger's `client_id` is the URL of its metadata document: one on 127.0.0.1 or `localhost` is
  refused before any connection, and the person sees why (never a redirect).
- An upstream's 401 names its metadata and authorization server: on a private address, discovery is
  refused, the server stays `needs_auth` with the reason, and nothing is registered there.
Everything is real: the gateway, the document server, and the authlib-protected upstream.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx2
import pytest

from tests.support.documents import serving_documents
from tests.support.gateway import Gateway, default_config, running_oauth_gateway
from tests.support.oauth_browser import authorization_url
from tests.support.polling import poll_until
from tests.support.upstream_login import gateway_for_oauth_upstreams, running_oauth_upstream

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:33422/callback"


def _authorize_url(base: str, client_id: str) -> str:
    return authorization_url(base, client_id, REDIRECT)


async def test_a_metadata_document_on_an_internal_address_is_never_fetched(nats_url, redis_url, tmp_path) -> None:
    hits: Counter[str] = Counter()
    documents: dict[str, Any] = {}
    # no servers, as the test calls none; not `{}`, which running_gateway reads as the default config
    config: dict[str, Any] = {"mcpServers": {}}
    with serving_documents(documents, hits) as site:
        port = site.rsplit(":", 1)[1]
        for host in ("127.0.0.1", "localhost"):
            url = f"http://{host}:{port}/clients/{host}.json"
            documents[f"/clients/{host}.json"] = {"client_id": url, "redirect_uris": [REDIRECT]}
        # plain http on loopback is allowed (development), internal addresses are not
        options = {"client_metadata_allow_http_loopback": True}
        async with running_oauth_gateway(nats_url, redis_url, tmp_path, config, oauth_options=options) as (_, base):
            async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
                for host in ("127.0.0.1", "localhost"):
                    page = await http.get(_authorize_url(base, f"http://{host}:{port}/clients/{host}.json"))
                    assert page.status_code == 400 and "location" not in page.headers, page.text
                    assert f"refused to connect to {host}" in page.text and "loopback address" in page.text
    assert not hits, f"the guard must refuse before connecting, yet the server saw {dict(hits)}"


def _config(servers: dict[str, Any]) -> dict[str, Any]:
    """The default keys in front of `servers` only: no test here calls the example stdio servers."""
    return {**default_config(), "mcpServers": servers}


def _server(gateway: Gateway, name: str) -> tuple[str | None, str | None]:
    status = gateway.ingress.catalog.server_status(name)
    return (status.health, status.error) if status is not None else (None, None)


async def test_an_upstreams_metadata_on_an_internal_address_is_refused(nats_url, redis_url, tmp_path) -> None:
    server = "down-internal"  # "down*": running_gateway does not wait for it to be ready
    with running_oauth_upstream() as upstream:
        async with gateway_for_oauth_upstreams(
            nats_url,
            redis_url,
            tmp_path,
            _config({server: {"url": f"{upstream}/mcp"}}),
            allow_private=False,
        ) as (gateway, _public):
            health, error = await poll_until(
                lambda: (found := _server(gateway, server))[1] and "refused to connect" in found[1] and found,
                "needs_auth naming the refusal",
                30,
            )
            assert health == "needs_auth" and "127.0.0.1 is a loopback address" in (error or "")
            async with httpx2.AsyncClient(headers=gateway.admin_headers, timeout=20) as admin:
                link = (await admin.get(f"{gateway.admin_api}/servers/{server}")).json()["authorize_url"]
            async with httpx2.AsyncClient(timeout=20, follow_redirects=False) as browser:
                started = await browser.get(link)
            assert started.status_code == 502 and "refused to connect to 127.0.0.1" in started.text
            async with httpx2.AsyncClient(timeout=10) as http:
                stats = (await http.get(f"{upstream}/test/stats")).json()
            assert stats["clients"] == 0, "nothing may be registered at an authorization server that was refused"


async def test_an_allow_listed_internal_host_is_reached_and_the_others_still_refused(
    nats_url, redis_url, tmp_path
) -> None:
    """An operator lists the internal hosts the oauth service may reach (`BASTION_UPSTREAM_OAUTH_ALLOW_HOSTS`,
    `BASTION_CLIENT_METADATA_ALLOW_HOSTS`) instead of switching the guard off: the upstream and the
    metadata document under the listed name work; the same servers under an unlisted name are refused."""
    hits: Counter[str] = Counter()
    documents: dict[str, Any] = {}
    listed, other = "down-listed", "down-unlisted"  # "down*": running_gateway does not wait for them
    with running_oauth_upstream(host="localhost") as upstream, serving_documents(documents, hits) as site:
        port = site.rsplit(":", 1)[1]
        for host in ("127.0.0.1", "localhost"):
            url = f"http://{host}:{port}/clients/{host}.json"
            documents[f"/clients/{host}.json"] = {"client_id": url, "redirect_uris": [REDIRECT]}
        renamed = upstream.replace("localhost", "127.0.0.1")  # the same server under a name not listed
        servers = {listed: {"url": f"{upstream}/mcp"}, other: {"url": f"{renamed}/mcp"}}
        async with gateway_for_oauth_upstreams(
            nats_url,
            redis_url,
            tmp_path,
            _config(servers),
            allow_private=False,
            oauth_options={
                "upstream_oauth_allow_hosts": ["localhost"],
                "client_metadata_allow_hosts": ["localhost"],
                "client_metadata_allow_http_loopback": True,
            },
        ) as (gateway, public):
            # the upstream side: the listed one registers Bastion and sends the admin on to its login page
            await poll_until(lambda: _server(gateway, listed)[0] == "needs_auth", "needs_auth", 30)
            async with httpx2.AsyncClient(headers=gateway.admin_headers, timeout=20) as admin:
                link = (await admin.get(f"{gateway.admin_api}/servers/{listed}")).json()["authorize_url"]
            async with httpx2.AsyncClient(timeout=20, follow_redirects=False) as browser:
                started = await browser.get(link)
            assert started.status_code == 302 and started.headers["location"].startswith(upstream), started.text
            health, error = await poll_until(
                lambda: (found := _server(gateway, other))[1] and "refused to connect" in found[1] and found,
                "the unlisted name refused",
                30,
            )
            assert health == "needs_auth" and "refused to connect to 127.0.0.1" in (error or "")

            # the agents' side: the metadata document under the listed name is fetched, under another not
            async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
                form = await http.get(_authorize_url(public, f"http://localhost:{port}/clients/localhost.json"))
                assert form.status_code == 200 and "Sign in to Bastion" in form.text, form.text
                refused = await http.get(_authorize_url(public, f"http://127.0.0.1:{port}/clients/127.0.0.1.json"))
                assert refused.status_code == 400 and "refused to connect to 127.0.0.1" in refused.text
    assert hits == Counter({"/clients/localhost.json": 1}), "only the listed document may be fetched"
