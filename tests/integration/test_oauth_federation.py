"""OIDC federation: an agent's user logs in at an external OpenID provider, the real npm
`oidc-provider` (a certified implementation) on Node 22, and Bastion issues its own token for the
Bastion user the provider's ID token names: tools are listed and called as that user, whose id is
the actor in the audit rows. A provider account with no Bastion user, and a replayed callback, are
refused.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest

from cli.stack import free_port
from libs.common import subjects
from libs.common.messages import AuditEvent, AuditQuery, AuditRows
from libs.common.nats import connect
from libs.common.sealing import new_key
from tests.support.gateway import SERVERS, Gateway, running_gateway
from tests.support.oauth_browser import s256
from tests.support.oidc_idp import (
    CLIENT_ID,
    CLIENT_SECRET,
    federation_options,
    running_oidc_provider,
    sign_in_through_bastion,
)
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:33420/callback"


def config() -> dict:
    return {
        "mcpServers": {"echo": {"command": sys.executable, "args": [str(SERVERS / "echo_server.py")]}},
        "groups": [{"id": "echoers", "tools": ["echo/echo", "echo/add"]}],
        "teams": [{"id": "eng", "name": "Engineering", "groups": ["echoers"]}],
        "users": [{"id": "alice", "name": "Alice", "team_id": "eng"}],
    }


@dataclass
class FederatedLogin:
    answer: httpx2.Response
    """Bastion's answer to the provider's callback."""
    callback: str
    client_id: str
    verifier: str


async def _federated_login(public: str, login: str) -> FederatedLogin:
    """A client's authorization request, then "Sign in with Test IdP" and the provider's forms as `login`."""
    async with httpx2.AsyncClient(timeout=30) as http:
        client_id = (await http.post(f"{public}/oauth/register", json={"redirect_uris": [REDIRECT]})).json()[
            "client_id"
        ]
    verifier = secrets.token_urlsafe(48)
    challenge = s256(verifier)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "client-state-1",
    }
    async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as browser:
        authorize = f"{public}/oauth/authorize?{urlencode(query)}"
        callback = await sign_in_through_bastion(browser, authorize, login, "Test IdP")
        assert callback.startswith(f"{public}/oauth/federated/callback?"), callback
        answer = await browser.get(callback)
    return FederatedLogin(answer, callback, client_id, verifier)


async def _audit_rows(nats_url: str, actor: str) -> list[AuditEvent]:
    nc = await connect(nats_url, "test-audit-query")
    query = AuditQuery(limit=100, key_name=actor).model_dump_json().encode()

    async def rows() -> list[AuditEvent] | None:
        found = AuditRows.model_validate_json((await nc.request(subjects.AUDIT_QUERY, query, timeout=10)).data).rows
        return found or None

    try:
        return await poll_until(rows, f"audit rows of {actor}", every=0.1)
    finally:
        await nc.close()


async def test_a_login_at_an_external_openid_provider_yields_a_bastion_token_for_that_user(
    nats_url, redis_url, tmp_path
) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    with running_oidc_provider(CLIENT_ID, CLIENT_SECRET, f"{public}/oauth/federated/callback") as issuer:
        options = federation_options(issuer)
        async with running_gateway(
            nats_url,
            redis_url,
            tmp_path,
            config(),
            oauth=True,
            oauth_options=options,
            secrets_key=new_key(),
            port=port,
            public_url=public,
        ) as gateway:
            await _alice_signs_in_and_calls_tools(gateway, public)

            # the provider vouches for mallory, but Bastion has no such user: no token
            refused = await _federated_login(public, "mallory")
            assert refused.answer.status_code == 403 and "no Bastion user matches" in refused.answer.text
            async with httpx2.AsyncClient(timeout=30) as browser:  # the state was single-use
                replayed = await browser.get(refused.callback)
            assert replayed.status_code == 400 and "unknown or expired sign-in state" in replayed.text


async def _alice_signs_in_and_calls_tools(gateway: Gateway, public: str) -> None:
    login = await _federated_login(public, "alice")
    assert login.answer.status_code == 302, login.answer.text
    back = urlsplit(login.answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT
    params = {k: v[0] for k, v in parse_qs(back.query).items()}
    assert params["state"] == "client-state-1" and params["iss"] == public
    async with httpx2.AsyncClient(timeout=30) as http:
        tokens = await http.post(
            f"{public}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": REDIRECT,
                "client_id": login.client_id,
                "code_verifier": login.verifier,
            },
        )
    assert tokens.status_code == 200, tokens.text
    async with gateway.client(tokens.json()["access_token"]) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"echo__echo", "echo__add"}
        assert (await client.call_tool("echo__add", {"a": 1, "b": 41})).structured_content == {"result": 42}
    rows = await _audit_rows(gateway.nats_url, "user:alice")
    assert ("add", "ok") in {(r.tool, r.status) for r in rows}
