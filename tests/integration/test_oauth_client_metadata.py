"""Client ID metadata documents: a client that never registered uses the URL of its metadata
document as its `client_id` (MCP authorization 2025-11-25). Bastion fetches the document, holds the
client to the redirect URIs it lists, and issues tokens that work on `/mcp`. Documents that lie about
their own URL, plain-http URLs and oversized documents are refused, and never redirected to.
And pre-registered clients: declared by an operator in `BASTION_OAUTH_CLIENTS_FILE`, with only the
SHA-256 of their secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from libs.common.runtime.sealing import new_key
from tests.support.documents import serving_documents
from tests.support.gateway import Gateway, echoers_config, running_gateway
from tests.support.oauth_browser import Browser, authorization_url, s256, set_password

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:33421/callback"
PASSWORD = "dora's long enough password"


def config() -> dict:
    return echoers_config(users=[{"id": "dora", "name": "Dora", "groups": ["echoers"]}])


@contextlib.asynccontextmanager
async def gateway_for_dora(
    nats_url: str, redis_url: str, workdir: Path, oauth_options: dict[str, Any]
) -> AsyncIterator[Gateway]:
    """The gateway with its OAuth service (`oauth_options`), where Dora has her password."""
    async with running_gateway(
        nats_url, redis_url, workdir, config(), oauth=True, secrets_key=new_key(), oauth_options=oauth_options
    ) as gateway:
        assert (await set_password(gateway.nats_url, "dora", PASSWORD)).ok
        yield gateway


def authorize_at(base: str, client_id: str, challenge: str, redirect_uri: str = REDIRECT) -> str:
    return authorization_url(base, client_id, redirect_uri, challenge, state="s-1")


async def test_a_client_known_only_by_its_metadata_document_logs_in_and_calls_tools(
    nats_url, redis_url, tmp_path
) -> None:
    documents: dict[str, Any] = {}
    with serving_documents(documents) as site:
        good = f"{site}/clients/good.json"
        documents["/clients/good.json"] = {"client_id": good, "client_name": "Doc Client", "redirect_uris": [REDIRECT]}
        documents["/clients/liar.json"] = {"client_id": f"{site}/clients/good.json", "redirect_uris": [REDIRECT]}
        documents["/clients/huge.json"] = b"{" + b" " * 10_000 + b"}"
        # the documents are served by the test on 127.0.0.1 over plain http: development settings
        development = {"client_metadata_allow_http_loopback": True, "client_metadata_allow_private": True}
        async with gateway_for_dora(nats_url, redis_url, tmp_path, development) as gateway:
            base = gateway.url.removesuffix("/mcp")
            async with httpx2.AsyncClient(timeout=30) as http:
                server = (await http.get(f"{base}/.well-known/oauth-authorization-server")).json()
            assert server["client_id_metadata_document_supported"] is True

            verifier = secrets.token_urlsafe(48)
            challenge = s256(verifier)
            browser = Browser("dora", PASSWORD)
            back = await browser.login(authorize_at(base, good, challenge))
            assert "Doc Client" in browser.pages[0]
            async with httpx2.AsyncClient(timeout=30) as http:
                tokens = await http.post(
                    f"{base}/oauth/token",
                    data={
                        "grant_type": "authorization_code",
                        "code": back.params["code"],
                        "redirect_uri": REDIRECT,
                        "client_id": good,
                        "code_verifier": verifier,
                    },
                )
            assert tokens.status_code == 200, tokens.text
            async with gateway.client(tokens.json()["access_token"]) as client:
                assert (await client.call_tool("echo__add", {"a": 2, "b": 40})).structured_content == {"result": 42}

            refusals = {
                f"{site}/clients/liar.json": "names another client_id",
                f"{site}/clients/huge.json": "over 5120 bytes",
                f"{site}/clients/missing.json": "HTTP 404",
                "http://clients.example/doc.json": "must use https",
            }
            async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
                for client_id, reason in refusals.items():
                    page = await http.get(authorize_at(base, client_id, challenge))
                    assert page.status_code == 400 and reason in page.text, (client_id, page.text[:300])
                    assert "location" not in page.headers  # never redirected anywhere
                unlisted = await http.get(authorize_at(base, good, challenge, "http://127.0.0.1:1/elsewhere"))
            assert unlisted.status_code == 400 and "location" not in unlisted.headers


async def test_a_client_an_operator_declared_in_a_file_authenticates_with_its_secret(
    nats_url, redis_url, tmp_path
) -> None:
    secret = "the-internal-agents-secret-0000"
    clients = tmp_path / "clients.yaml"
    clients.write_text(
        "- client_id: internal-agent\n"
        "  client_name: Internal agent\n"
        f"  redirect_uris: ['{REDIRECT}']\n"
        "  token_endpoint_auth_method: client_secret_basic\n"
        f"  client_secret_sha256: {hashlib.sha256(secret.encode()).hexdigest()}\n"
    )
    async with gateway_for_dora(nats_url, redis_url, tmp_path, {"oauth_clients_file": str(clients)}) as gateway:
        base = gateway.url.removesuffix("/mcp")
        verifier = secrets.token_urlsafe(48)
        challenge = s256(verifier)

        async def exchange(password: str) -> httpx2.Response:
            back = await Browser("dora", PASSWORD).login(authorize_at(base, "internal-agent", challenge))
            form = {
                "grant_type": "authorization_code",
                "code": back.params["code"],
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            }
            async with httpx2.AsyncClient(timeout=30) as http:
                return await http.post(f"{base}/oauth/token", data=form, auth=("internal-agent", password))

        refused = await exchange("not-the-secret")
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        issued = await exchange(secret)
        assert issued.status_code == 200, issued.text
        async with gateway.client(issued.json()["access_token"]) as client:
            assert (await client.call_tool("echo__echo", {"text": "hi"})).content[0].text == "hi"  # type: ignore[union-attr]
        assert secret not in clients.read_text()
