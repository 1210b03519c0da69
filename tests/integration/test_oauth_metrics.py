"""The oauth service's Prometheus metrics, scraped over HTTP from its own `/metrics` port after real
sign-ins, token requests and upstream token queries: each counter moves by exactly what was done.

The whole gateway (oauth service included) runs in-process with every service's `/metrics` on a
free port; the agent side is driven as a browser and a public client would (the login form, the
token endpoint), the upstream side as an executor asks (`OAUTH_UPSTREAM_TOKEN` over NATS).
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx2
import pytest

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.oauth_upstream import UpstreamToken, UpstreamTokenQuery
from libs.common.runtime.sealing import new_key
from services.oauth.service import OAuthService
from tests.support.gateway import SERVERS, running_gateway
from tests.support.metrics import moved, scrape
from tests.support.oauth_browser import Browser, authorization_url, log_in_for_tokens, set_password

pytestmark = pytest.mark.integration

PASSWORD = "ola's long enough password"
REDIRECT = "http://127.0.0.1:33421/callback"


async def test_sign_ins_tokens_refusals_and_upstream_token_queries_are_counted(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    config = {
        "mcpServers": {"echo": {"command": sys.executable, "args": [str(SERVERS / "echo_server.py")]}},
        "users": [{"id": "ola", "name": "Ola"}],
    }
    async with running_gateway(
        nats_url, redis_url, tmp_path, config, oauth=True, secrets_key=new_key(), metrics=True
    ) as gateway:
        oauth = next(s for s in gateway.services if isinstance(s, OAuthService))
        assert oauth.metrics_server is not None
        url = oauth.metrics_server.url
        base = gateway.url.removesuffix("/mcp")
        assert (await set_password(nats_url, "ola", PASSWORD)).ok
        before = await scrape(url)

        tokens = await log_in_for_tokens(base, "ola", PASSWORD)  # a sign-in and an authorization code grant
        async with httpx2.AsyncClient(timeout=30) as http:
            for form in ({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, {}):
                refused = await http.post(f"{base}/oauth/token", data=form)  # no client_id: invalid_request
                assert refused.status_code == 400 and refused.json()["error"] == "invalid_request", refused.text
            client_id = (await http.post(f"{base}/oauth/register", json={"redirect_uris": [REDIRECT]})).json()[
                "client_id"
            ]
        wrong = await Browser("ola", "not the password").login(authorization_url(base, client_id, REDIRECT))
        assert wrong.status == 401

        nc = await connect(nats_url, "test-executor")
        try:
            asked = UpstreamTokenQuery(
                server="tracker", url="https://tracker.example/mcp", transport="http", per_user=True
            )
            reply = await nc.request(subjects.OAUTH_UPSTREAM_TOKEN, asked.model_dump_json().encode(), timeout=10)
            assert UpstreamToken.model_validate_json(reply.data).error  # per user, and no user named
        finally:
            await nc.close()

        after = await scrape(url)
        assert moved(before, after, "bastion_oauth_logins_total", method="password", outcome="ok") == 1
        assert moved(before, after, "bastion_oauth_logins_total", method="password", outcome="refused") == 1
        assert moved(before, after, "bastion_oauth_tokens_issued_total", grant="authorization_code") == 1
        assert moved(before, after, "bastion_oauth_tokens_issued_total", grant="refresh_token") == 0
        assert moved(before, after, "bastion_oauth_token_refusals_total", reason="invalid_request") == 2
        assert moved(before, after, "bastion_oauth_upstream_token_fetches_total", outcome="refused") == 1
