"""Hostile input to Bastion's authorization server and protected resource: each refused with its RFC error.

Every step is a real HTTP request to the gateway (ingress -> NATS -> oauth service); forged tokens
are signed either with a key of the test's own or with the gateway's real signing key read from
KV and unsealed, so only the claim under test is wrong.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from nats.js.errors import KeyNotFoundError

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.oauth import REGISTRATION_TTL
from libs.common.runtime.sealing import Sealer, new_key
from services.oauth.agents.clients import client_key
from tests.support.gateway import (
    Gateway,
    example_server_over_http,
    gateway_on_own_servers,
    legacy_initialize,
    running_gateway,
)
from tests.support.oauth_browser import Browser, s256, set_password
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:33419/callback"
PASSWORD = "hunter2-but-longer"


def config() -> dict[str, Any]:
    """No upstream: these tests sign in, trade tokens and initialize, and never call a tool."""
    return {
        "mcpServers": {},
        "groups": [{"id": "echoers", "tools": ["echo/*"]}],
        "users": [{"id": "carol", "name": "Carol", "groups": ["echoers"]}],
        "keys": [{"name": "admin", "key": "bk_test_admin_key_000000000000", "tools": ["*"]}],
    }


@dataclass
class Env:
    gateway: Any
    http: httpx2.AsyncClient
    secrets_key: str

    @property
    def base(self) -> str:
        return self.gateway.url.removesuffix("/mcp")

    async def register(self, redirect_uris: list[str] | None = None, **extra: Any) -> httpx2.Response:
        body = {"redirect_uris": redirect_uris or [REDIRECT], "client_name": "hostile test", **extra}
        return await self.http.post(f"{self.base}/oauth/register", json=body)

    async def client_id(self) -> str:
        answer = await self.register()
        assert answer.status_code == 201, answer.text
        return answer.json()["client_id"]

    def authorize_url(self, client_id: str, challenge: str | None, **overrides: str | None) -> str:
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "state": "st-" + secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": self.gateway.url,
            "scope": "mcp",
        } | overrides
        return f"{self.base}/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})

    async def code(self, client_id: str) -> tuple[str, str]:
        """A fresh authorization code for carol and its PKCE verifier."""
        verifier = secrets.token_urlsafe(48)
        result = await Browser("carol", PASSWORD).login(self.authorize_url(client_id, s256(verifier)))
        return result.params["code"], verifier

    async def exchange(self, client_id: str, code: str, verifier: str | None, **extra: str) -> httpx2.Response:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": client_id}
        if verifier is not None:
            form["code_verifier"] = verifier
        return await self.http.post(f"{self.base}/oauth/token", data=form | extra)

    async def tokens(self, client_id: str) -> dict[str, Any]:
        code, verifier = await self.code(client_id)
        answer = await self.exchange(client_id, code, verifier)
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def mcp(self, token: str) -> httpx2.Response:
        return await self.http.post(
            self.gateway.url,
            headers={"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream"},
            json=legacy_initialize(),
        )

    async def refused_eventually(self, token: str) -> httpx2.Response:
        """Revocations reach ingress through a KV watch: wait (bounded) until it holds this one."""
        payload = token.split(".")[1]
        jti = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]
        tokens = self.gateway.ingress.access_tokens
        await poll_until(lambda: tokens.is_revoked(jti), f"revocation of {jti} in ingress")
        answer = await self.mcp(token)
        assert answer.status_code == 401, answer.text
        return answer

    async def gateway_key(self) -> ECKey:
        nc = await connect(self.gateway.nats_url, "test-signing-key")
        try:
            entry = await (await nc.jetstream().key_value(subjects.KV_OAUTH)).get("signing")
        finally:
            await nc.close()
        sealed = json.loads(entry.value)["private_jwk"]
        assert sealed.startswith("sealed:"), "the signing key must be sealed at rest"
        return ECKey.import_key(json.loads(Sealer(self.secrets_key).open_value(sealed)))

    def forge(self, key: ECKey, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.base,
            "sub": "carol",
            "aud": self.gateway.url,
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(8),
        } | claims
        header = {"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}
        return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, key, algorithms=["ES256"])


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


_addresses = itertools.count()


def _own_address() -> str:
    """A loopback address no earlier `env` test used (127.0.0.1 is the other tests')."""
    n = next(_addresses)
    return f"127.0.{n // 250}.{n % 250 + 2}"


class Shared:
    """The `env` tests' gateway: each of them registers clients of its own and revokes only the tokens
    it was issued, and carol's one wrong password is far below the lockout. Started by the first of
    them, stopped before a test starts a gateway of its own: the embedded audit store is one per
    process, so two gateways cannot run side by side (the next `env` test starts a fresh one)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.key = workdir, new_key()
        self.gateway: Gateway | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._starts = itertools.count()

    async def start(self) -> Gateway:
        if self.gateway is None:
            async with contextlib.AsyncExitStack() as stack:
                workdir = self.workdir / f"gateway-{next(self._starts)}"
                gateway = await stack.enter_async_context(
                    gateway_on_own_servers(workdir, config(), oauth=True, secrets_key=self.key)
                )
                assert (await set_password(gateway.nats_url, "carol", PASSWORD)).ok
                self._stack, self.gateway = stack.pop_all(), gateway
        return self.gateway

    async def stop(self) -> None:
        stack, self._stack, self.gateway = self._stack, None, None
        if stack is not None:
            await stack.aclose()


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Shared]:
    holder = Shared(tmp_path_factory.mktemp("oauth-hostile"))
    try:
        yield holder
    finally:
        await holder.stop()


@pytest.fixture
async def env(shared: Shared) -> AsyncIterator[Env]:
    """Each test from an address of its own: registrations are counted per address and hour, and the
    tests together register more clients than one address may."""
    gateway = await shared.start()
    own_address = httpx2.AsyncHTTPTransport(local_address=_own_address())
    async with httpx2.AsyncClient(timeout=30, follow_redirects=False, transport=own_address) as http:
        yield Env(gateway, http, shared.key)


@pytest.fixture
async def alone(shared: Shared) -> None:
    """For a test that starts a gateway of its own: the shared one stopped first."""
    await shared.stop()


# ---------------------------------------------------------------- the authorization request


async def test_plain_or_missing_pkce_is_refused_on_the_redirect(env):
    client_id = await env.client_id()
    for overrides in ({"code_challenge_method": "plain"}, {"code_challenge": None}, {"code_challenge_method": None}):
        answer = await env.http.get(env.authorize_url(client_id, s256("x" * 43), **overrides))
        assert answer.status_code == 302, overrides
        params = query(answer.headers["location"])
        assert params["error"] == "invalid_request" and params["iss"] == env.base, overrides
        assert answer.headers["location"].startswith(REDIRECT + "?")


async def test_unregistered_redirect_uri_is_never_redirected_to(env):
    client_id = await env.client_id()
    for target in ("https://evil.example/cb", REDIRECT + "/../evil", REDIRECT + "?x=1", "//evil.example/cb"):
        answer = await env.http.get(env.authorize_url(client_id, s256("y" * 43), redirect_uri=target))
        assert answer.status_code == 400 and "location" not in answer.headers, target
        assert "redirect_uri does not match" in answer.text
    unknown = await env.http.get(env.authorize_url("bc_nobody", s256("y" * 43), redirect_uri="https://evil.example"))
    assert unknown.status_code == 400 and "location" not in unknown.headers


async def test_registration_refuses_open_redirect_targets(env):
    for uri in ("http://evil.example/cb", "javascript:alert(1)", "https://ok.example/cb#frag", "relative/cb"):
        answer = await env.register([uri])
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_redirect_uri", uri
    malformed = await env.http.post(
        f"{env.base}/oauth/register", content=b"{", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400 and malformed.json()["error"] == "invalid_client_metadata"
    assert (await env.register(["cursor://anysphere.cursor-retrieval/oauth/callback"])).status_code == 201


async def test_wrong_resource_is_invalid_target(env):
    client_id = await env.client_id()
    answer = await env.http.get(env.authorize_url(client_id, s256("z" * 43), resource="https://other.example/mcp"))
    assert query(answer.headers["location"])["error"] == "invalid_target"


async def test_state_comes_back_unchanged_and_wrong_passwords_get_no_code(env):
    client_id = await env.client_id()
    state = "opaque/state+with=odd&chars"
    url = env.authorize_url(client_id, s256("s" * 43), state=state)
    assert (await Browser("carol", PASSWORD).login(url)).params["state"] == state
    wrong = await Browser("carol", "not-the-password").login(env.authorize_url(client_id, s256("s" * 43)))
    assert wrong.status == 401 and wrong.location is None and "wrong user name or password" in wrong.page
    nobody = await Browser("mallory", PASSWORD).login(env.authorize_url(client_id, s256("s" * 43)))
    assert nobody.status == 401 and nobody.location is None


# ---------------------------------------------------------------- the token endpoint


async def test_missing_or_wrong_verifier(env):
    client_id = await env.client_id()
    code, verifier = await env.code(client_id)
    missing = await env.exchange(client_id, code, None)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    wrong = await env.exchange(client_id, code, secrets.token_urlsafe(48))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert (await env.exchange(client_id, code, verifier)).status_code == 200  # the code was not burnt by failures


async def test_mismatched_redirect_uri_or_client_at_the_token_endpoint(env):
    client_id, other = await env.client_id(), await env.client_id()
    code, verifier = await env.code(client_id)
    moved = await env.exchange(client_id, code, verifier, redirect_uri="http://127.0.0.1:1/elsewhere")
    assert moved.status_code == 400 and moved.json()["error"] == "invalid_grant"
    stolen = await env.exchange(other, code, verifier)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    unknown = await env.exchange("bc_unknown", code, verifier)
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"


async def test_reused_code_is_refused_and_revokes_what_it_issued(env):
    client_id = await env.client_id()
    code, verifier = await env.code(client_id)
    first = await env.exchange(client_id, code, verifier)
    assert first.status_code == 200
    tokens = first.json()
    assert (await env.mcp(tokens["access_token"])).status_code == 200
    replay = await env.exchange(client_id, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    refused = await env.refused_eventually(tokens["access_token"])
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    refresh = await env.http.post(
        f"{env.base}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id},
    )
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


async def test_refresh_tokens_rotate_and_a_replayed_one_revokes_the_family(env):
    client_id = await env.client_id()
    first = await env.tokens(client_id)

    async def refresh(token: str) -> httpx2.Response:
        form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
        return await env.http.post(f"{env.base}/oauth/token", data=form)

    second = await refresh(first["refresh_token"])
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"] and rotated["access_token"] != first["access_token"]
    assert (await env.mcp(rotated["access_token"])).status_code == 200
    replay = await refresh(first["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert (await refresh(rotated["refresh_token"])).json()["error"] == "invalid_grant"  # the whole family
    await env.refused_eventually(rotated["access_token"])


async def test_unsupported_grant_and_repeated_parameters(env):
    client_id = await env.client_id()
    grant = await env.http.post(f"{env.base}/oauth/token", data={"grant_type": "password", "client_id": client_id})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    repeated = await env.http.post(
        f"{env.base}/oauth/token",
        content=f"grant_type=authorization_code&client_id={client_id}&client_id={client_id}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert repeated.status_code == 400 and repeated.json()["error"] == "invalid_request"


# ---------------------------------------------------------------- the protected resource


async def test_revoked_access_token_is_refused(env):
    client_id = await env.client_id()
    tokens = await env.tokens(client_id)
    assert (await env.mcp(tokens["access_token"])).status_code == 200
    revoked = await env.http.post(
        f"{env.base}/oauth/revoke", data={"token": tokens["access_token"], "client_id": client_id}
    )
    assert revoked.status_code == 200
    answer = await env.refused_eventually(tokens["access_token"])
    assert "revoked" in answer.json()["error"]["message"]


async def test_forged_expired_and_misaddressed_tokens_are_refused(env):
    real = await env.gateway_key()
    assert (await env.mcp(env.forge(real))).status_code == 200  # the control: only the claim under test is wrong
    cases = {
        "foreign key": (env.forge(ECKey.generate_key("P-256", private=True, auto_kid=True)), "not issued by this"),
        "expired": (env.forge(real, exp=int(time.time()) - 3600, iat=int(time.time()) - 4000), "expired"),
        "wrong audience": (env.forge(real, aud="https://upstream.example/mcp"), "another resource"),
        "foreign issuer": (env.forge(real, iss="https://idp.example"), "another authorization server"),
        "no audience": (env.forge(real, aud=None), "lacks a claim"),
    }
    for case, (token, says) in cases.items():
        answer = await env.mcp(token)
        assert answer.status_code == 401, case
        assert says in answer.json()["error"]["message"], (case, answer.json())
        challenge = answer.headers["www-authenticate"]
        assert 'error="invalid_token"' in challenge and "resource_metadata=" in challenge, case


UPSTREAM_TOKEN = "upstream-only-token-5b1e"


@pytest.mark.usefixtures("alone")
async def test_a_bastion_token_is_never_passed_to_an_upstream(nats_url, redis_url, tmp_path):
    """The upstream answers 401 to anything but its own credential: a call that works proves it received
    the configured header, not the agent's Bastion token."""
    async with example_server_over_http("--http", "--bearer", UPSTREAM_TOKEN) as url:
        raw = config()
        raw["mcpServers"]["guarded"] = {"url": url, "headers": {"Authorization": f"Bearer {UPSTREAM_TOKEN}"}}
        raw["groups"][0]["tools"].append("guarded/*")
        key = new_key()
        async with running_gateway(nats_url, redis_url, tmp_path, raw, oauth=True, secrets_key=key) as gw:
            assert (await set_password(nats_url, "carol", PASSWORD)).ok
            async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
                env = Env(gw, http, key)
                access = (await env.tokens(await env.client_id()))["access_token"]
            async with gw.client(access) as client:
                result = await client.call_tool("guarded__echo", {"text": "through"})
            assert result.content[0].text == "through"
            status = gw.ingress.catalog.server_status("guarded")
            assert status is not None and status.health == "healthy"


@pytest.mark.usefixtures("alone")
async def test_password_guessing_is_cut_off_per_user_name(nats_url, redis_url, tmp_path):
    options = {"login_max_failures": 3}
    async with running_gateway(
        nats_url, redis_url, tmp_path, config(), oauth=True, secrets_key=new_key(), oauth_options=options
    ) as gw:
        assert (await set_password(nats_url, "carol", PASSWORD)).ok
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
            env = Env(gw, http, "")
            client_id = await env.client_id()
            for guess in ("guess-1-wrong", "guess-2-wrong", "guess-3-wrong"):
                wrong = await Browser("carol", guess).login(env.authorize_url(client_id, s256("g" * 43)))
                assert wrong.status == 401 and "wrong user name or password" in wrong.page
            # the right password no longer helps within the window: no code, no hashing
            locked = await Browser("carol", PASSWORD).login(env.authorize_url(client_id, s256("g" * 43)))
            assert locked.status == 429 and locked.location is None and "too many failed sign-ins" in locked.page
            # another user name is not affected
            other = await Browser("dave", "whatever-password").login(env.authorize_url(client_id, s256("g" * 43)))
            assert other.status == 401


# ---------------------------------------------------------------- anonymous registration


@pytest.mark.usefixtures("alone")
async def test_registration_is_bounded_in_size_and_rate_per_address_and_in_all(nats_url, redis_url, tmp_path):
    """2,000 anonymous registrations of 17 KB each once grew the NATS store by 34 MB in 39 s: a
    registration is now at most 4 KiB of redirect URIs, an address may register a few clients an
    hour and the gateway a bounded number in all."""
    options = {"registrations_per_address": 3, "registrations_per_hour": 5}
    async with running_gateway(
        nats_url, redis_url, tmp_path, config(), oauth=True, secrets_key=new_key(), oauth_options=options
    ) as gw:
        other_address = httpx2.AsyncHTTPTransport(local_address="127.0.0.2")
        async with (
            httpx2.AsyncClient(timeout=30) as http,
            httpx2.AsyncClient(timeout=30, transport=other_address) as elsewhere,
        ):
            env, env2 = Env(gw, http, ""), Env(gw, elsewhere, "")
            bulky = [f"https://client.example/{i}/" + "a" * 1900 for i in range(3)]
            refused = await env.register(bulky)
            assert refused.status_code == 400 and "4096 characters" in refused.json()["error_description"]
            for _ in range(3):
                assert (await env.register()).status_code == 201
            throttled = await env.register()
            assert throttled.status_code == 429, throttled.text
            assert throttled.json()["error"] == "too_many_requests"
            assert "this address registered too many clients" in throttled.json()["error_description"]
            assert 0 < int(throttled.headers["retry-after"]) <= 3600
            # another address still may, until the gateway's hourly total is reached
            assert (await env2.register()).status_code == 201
            assert (await env2.register()).status_code == 201
            full = await env2.register()
            assert full.status_code == 429 and "the gateway accepted too many" in full.json()["error_description"]


async def test_an_unused_registration_expires_and_a_used_one_is_kept(env):
    """A registration waits in a bucket that forgets it a day after it was written; the client's first
    token moves it to the oauth state for good, and it keeps working after that."""
    nc = await connect(env.gateway.nats_url, "test-registrations")
    try:
        js = nc.jetstream()
        waiting = await js.key_value(subjects.KV_OAUTH_REGISTRATIONS)
        assert (await waiting.status()).ttl == REGISTRATION_TTL == 24 * 3600
        client_id = await env.client_id()
        key = client_key(client_id)
        assert (await waiting.get(key)).value is not None
        with pytest.raises(KeyNotFoundError):
            await (await js.key_value(subjects.KV_OAUTH)).get(key)
        tokens = await env.tokens(client_id)
        assert (await (await js.key_value(subjects.KV_OAUTH)).get(key)).value is not None
        with pytest.raises(KeyNotFoundError):
            await waiting.get(key)
        refreshed = await env.http.post(
            f"{env.base}/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id},
        )
        assert refreshed.status_code == 200, refreshed.text
    finally:
        await nc.close()
