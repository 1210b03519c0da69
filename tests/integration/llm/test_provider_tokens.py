"""Providers called with access tokens Bastion fetches itself: Azure OpenAI with Entra ID client
credentials, Vertex AI with a service account's JSON key. Real executor provider client, a fake
provider speaking Azure's or Vertex's wire, a fake token endpoint speaking Entra's or Google's
(tests/support/provider_wires/tokens.py): the token is fetched once, sent as bearer (never the
secret), reused until shortly before it expires, fetched once for many concurrent requests, and a
failed fetch is a clear error that quotes neither the secret nor the endpoint's words."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import LlmOutcome, LlmRequest, ProviderRecord
from libs.common.contracts.llm_config import ProviderConfig
from libs.common.contracts.messages_base import Caller
from libs.common.runtime.sealing import Sealer
from libs.common.web.egress_rules import EgressRules
from services.executor.llm_http import ProviderHttp
from services.executor.llm_providers import LlmProviders
from services.executor.llm_tokens import access_tokens
from tests.support.llm_provider import Reply, ScriptedProvider, scripted_provider
from tests.support.provider_wires.tokens import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
    TokenServer,
    service_account_key,
    token_server,
)

pytestmark = pytest.mark.integration

LOOPBACK = EgressRules(["127.0.0.1"])


def azure(fake: ScriptedProvider, tokens: TokenServer, secret: str = CLIENT_SECRET) -> ProviderConfig:
    return ProviderConfig(
        kind="azure",
        base_url=fake.base_url,
        api_key=secret,
        azure_auth="entra",
        tenant_id=TENANT,
        client_id=CLIENT_ID,
        token_url=tokens.entra_url,
        models=["m"],
        retries=0,
    )


def vertex(fake: ScriptedProvider, tokens: TokenServer) -> ProviderConfig:
    return ProviderConfig(
        kind="vertex",
        base_url=fake.base_url,
        api_key=service_account_key(tokens.signing),
        vertex_auth="service-account",
        project="my-project",
        location="us-central1",
        token_url=tokens.google_url,
        models=["m"],
        retries=0,
    )


@contextlib.asynccontextmanager
async def serving(config: ProviderConfig, rules: EgressRules = LOOPBACK) -> AsyncIterator[LlmProviders]:
    async def publish(_subject: str, _data: bytes) -> None:
        return None

    providers = LlmProviders(Sealer(), publish, rules)
    await providers.put("p", ProviderRecord(name="p", config=config).model_dump_json().encode())
    try:
        yield providers
    finally:
        await providers.close()


def text(outcome: LlmOutcome) -> str | None:
    assert outcome.error is None and outcome.response is not None, outcome.error
    return outcome.response["choices"][0]["message"]["content"]


async def complete(providers: LlmProviders) -> LlmOutcome:
    caller = Caller(key_id="k", key_name="ci")
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return await providers.run(LlmRequest(caller=caller, provider="p", model="m", body=body, timeout=30))


@pytest.mark.parametrize("kind", ["azure", "vertex"])
async def test_the_token_is_fetched_once_and_sent_as_bearer_never_the_credential(kind: str) -> None:
    async with token_server() as tokens, scripted_provider(kind) as fake:
        config = azure(fake, tokens) if kind == "azure" else vertex(fake, tokens)
        fake.script = [Reply(text="one"), Reply(text="two")]
        async with serving(config) as providers:
            assert [text(await complete(providers)) for _ in range(2)] == ["one", "two"]
        assert len(tokens.asked) == 1  # the second request reused the first token
        for received in fake.received:
            assert received.headers["authorization"] == "Bearer token-1"
            assert "api-key" not in received.headers and "x-goog-api-key" not in received.headers
        if kind == "azure":
            assert tokens.asked[0]["client_secret"] == CLIENT_SECRET
        else:  # the endpoint checked the assertion's signature with the service account's public key
            assert set(tokens.asked[0]) == {"grant_type", "assertion"}


async def test_a_token_is_used_until_shortly_before_it_expires_then_replaced() -> None:
    now = [1000.0]
    async with token_server() as tokens, scripted_provider("azure") as fake:
        http = ProviderHttp(LOOPBACK, 30)
        try:
            source = access_tokens(azure(fake, tokens), CLIENT_SECRET, http.post, lambda: now[0])
            assert source is not None
            assert await source.bearer() == "token-1"
            now[0] += tokens.lifetime - 301  # five minutes and a second before it expires: still used
            assert await source.bearer() == "token-1"
            now[0] += 2
            assert await source.bearer() == "token-2"
            assert await source.bearer() == "token-2"
            assert len(tokens.asked) == source.fetches == 2
        finally:
            await http.aclose()


@pytest.mark.parametrize("kind", ["azure", "vertex"])
async def test_concurrent_requests_wait_for_one_token_fetch(kind: str) -> None:
    async with token_server() as tokens, scripted_provider(kind) as fake:
        config = azure(fake, tokens) if kind == "azure" else vertex(fake, tokens)
        tokens.hold = asyncio.Event()
        fake.always = Reply(text="ok")
        async with serving(config) as providers:
            runs = [asyncio.create_task(complete(providers)) for _ in range(8)]
            await asyncio.wait_for(tokens.arrived.wait(), 30)
            tokens.hold.set()
            outcomes = await asyncio.gather(*runs)
        assert [text(o) for o in outcomes] == ["ok"] * 8
        assert len(tokens.asked) == 1
        assert {r.headers["authorization"] for r in fake.received} == {"Bearer token-1"}


async def test_a_failed_token_fetch_is_a_clear_error_without_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with token_server() as tokens, scripted_provider("azure") as fake:
        wrong = "wrong-secret-do-not-leak-0123456789"
        # an endpoint that quotes what it was sent: its words are not passed on
        tokens.failure = (401, {"error": "invalid_client", "error_description": f"bad secret {wrong}"})
        async with serving(azure(fake, tokens, wrong)) as providers:
            outcome = await complete(providers)
        assert outcome.error is not None and outcome.error.kind == ErrorKind.UPSTREAM_ERROR
        assert f"the token endpoint {tokens.entra_url} answered HTTP 401 (invalid_client)" in outcome.error.message
        assert wrong not in outcome.error.message and wrong not in caplog.text
        assert fake.received == []  # the provider was never called without a token


async def test_the_token_endpoint_is_reached_only_where_the_egress_rules_allow() -> None:
    async with token_server() as tokens, scripted_provider("vertex") as fake:
        # the provider's host allowed, the token endpoint's not: a different address
        config = vertex(fake, tokens).model_copy(update={"token_url": tokens.google_url.replace("127.0.0.1", "[::1]")})
        async with serving(config) as providers:
            outcome = await complete(providers)
        assert outcome.error is not None and outcome.error.kind == ErrorKind.UPSTREAM_UNAVAILABLE
        assert "no access token" in outcome.error.message and "allow_private_hosts" in outcome.error.message
        assert tokens.asked == [] and fake.received == []


@pytest.mark.parametrize(
    ("credential", "why"),
    [("garbage-key-text", "is not JSON"), ('{"private_key": "x"}', "no client_email")],
)
async def test_an_unusable_service_account_key_is_not_served_and_not_logged(
    caplog: pytest.LogCaptureFixture, credential: str, why: str
) -> None:
    async with token_server() as tokens, scripted_provider("vertex") as fake:
        config = vertex(fake, tokens).model_copy(update={"api_key": credential})
        async with serving(config) as providers:
            outcome = await complete(providers)
        assert outcome.error is not None and "no provider serves" in outcome.error.message
        assert why in caplog.text and credential not in caplog.text
