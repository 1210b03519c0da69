"""`BASTION_SECRETS_KEY` rotation on the oauth service, against real NATS KV: the access token signing
key is kept sealed, a restart with a new key in front seals it again under that key, and once the
old key is dropped everything still works (tokens issued before the rotation included). The upstream
records are covered by `test_upstream_oauth_authorizer.py`, which reseals them the same way."""

from __future__ import annotations

import json
import sys

import pytest

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.runtime.sealing import SEALED_PREFIX, Sealer, new_key
from libs.common.settings import OAuthSettings
from services.oauth.service import OAuthService
from tests.support.gateway import SERVERS, Gateway, running_gateway
from tests.support.oauth_browser import log_in_for_tokens, set_password

pytestmark = pytest.mark.integration

PASSWORD = "frank's long enough password"


async def _sealed_signing_key(nats_url: str) -> str:
    nc = await connect(nats_url, "test-signing-record")
    try:
        entry = await (await nc.jetstream().key_value(subjects.KV_OAUTH)).get("signing")
    finally:
        await nc.close()
    assert entry.value is not None
    sealed: str = json.loads(entry.value)["private_jwk"]
    return sealed


async def _restart_oauth(gateway: Gateway, secrets_key: str) -> None:
    old = next(s for s in gateway.services if isinstance(s, OAuthService))
    await old.stop()
    new = OAuthService(OAuthSettings(nats_url=gateway.nats_url, secrets_key=secrets_key))
    await new.start()
    gateway.services[gateway.services.index(old)] = new


async def _accepted(gateway: Gateway, token: str) -> bool:
    """Whether the official client gets a session with `token` as its bearer (a refused one raises)."""
    async with gateway.client(token) as client:
        await client.list_tools()
    return True


async def test_the_signing_key_is_resealed_under_a_new_key_and_the_old_one_can_go(nats_url, redis_url, tmp_path):
    old_key, new = new_key(), new_key()
    config = {
        "mcpServers": {"echo": {"command": sys.executable, "args": [str(SERVERS / "echo_server.py")]}},
        "users": [{"id": "frank", "name": "Frank"}],
    }
    async with running_gateway(nats_url, redis_url, tmp_path, config, oauth=True, secrets_key=old_key) as gateway:
        base = gateway.url.removesuffix("/mcp")
        assert (await set_password(nats_url, "frank", PASSWORD)).ok
        before = (await log_in_for_tokens(base, "frank", PASSWORD))["access_token"]
        sealed = await _sealed_signing_key(nats_url)
        assert sealed.startswith(SEALED_PREFIX) and Sealer(old_key).current(sealed)

        await _restart_oauth(gateway, f"{new},{old_key}")  # step 1: the new key in front
        resealed = await _sealed_signing_key(nats_url)
        assert resealed != sealed and Sealer(new).current(resealed), "sealed again under the newest key"

        await _restart_oauth(gateway, new)  # step 2: the old key dropped
        assert await _accepted(gateway, before), "a token issued before the rotation still verifies"
        after = (await log_in_for_tokens(base, "frank", PASSWORD))["access_token"]
        assert await _accepted(gateway, after)
        with pytest.raises(ValueError, match="none of the keys"):
            Sealer(old_key).open_value(resealed)
