"""OIDC federation: an agent's user logs in at an external OpenID provider, the real npm
`oidc-provider` (a certified implementation) on Node 22, and Bastion issues its own token for the
Bastion user the provider's ID token names: tools are listed and called as that user, whose id is
the actor in the audit rows. A provider account with no Bastion user, and a replayed callback, are
refused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest

from tests.support.audit_rows import audit_rows
from tests.support.gateway import Gateway, echoers_config
from tests.support.oauth_browser import s256
from tests.support.oidc_idp import (
    gateway_federated_to_provider,
    sign_in_through_bastion,
)

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:33420/callback"


def config() -> dict:
    teams = [{"id": "eng", "name": "Engineering", "groups": ["echoers"]}]
    return echoers_config(teams=teams, users=[{"id": "alice", "name": "Alice", "team_id": "eng"}])


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


async def test_a_login_at_an_external_openid_provider_yields_a_bastion_token_for_that_user(
    nats_url, redis_url, tmp_path
) -> None:
    async with gateway_federated_to_provider(nats_url, redis_url, tmp_path, config()) as (gateway, public):
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
    rows = await audit_rows(gateway.nats_url, "user:alice", at_least=1)
    assert ("add", "ok") in {(r.tool, r.status) for r in rows}
