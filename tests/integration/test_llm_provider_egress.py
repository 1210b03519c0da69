"""An LLM provider is reached under the upstreams' egress rules: a `base_url` an operator points at the
deployment's own network (loopback here; private and metadata addresses alike) gets no connection, and
so never the `Bearer` of the executor's environment variable `api_key_env` names, unless an owner
allowed the host (`egress.allow_private_hosts`), whatever the provider's wire. Real executor provider
client, real listener."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import LlmRequest, ProviderRecord
from libs.common.contracts.llm_config import ProviderConfig
from libs.common.contracts.messages_base import Caller
from libs.common.runtime.sealing import Sealer
from libs.common.web.egress_rules import EgressRules
from services.executor.llm_providers import LlmProviders

pytestmark = pytest.mark.integration

SECRET = "sk-executor-environment-secret-0123456789"
VARIABLE = "BASTION_TEST_PROVIDER_EGRESS_KEY"
WIRES: list[tuple[str, dict[str, Any], str]] = [
    ("openai", {}, f"authorization: Bearer {SECRET}"),
    ("azure", {}, f"api-key: {SECRET}"),
    ("anthropic", {}, f"x-api-key: {SECRET}"),
    ("gemini", {}, f"x-goog-api-key: {SECRET}"),
    ("vertex", {"project": "my-project", "location": "us-central1"}, f"authorization: Bearer {SECRET}"),
    ("bedrock", {"region": "us-east-1"}, f"authorization: Bearer {SECRET}"),
]
"""Each kind, its own fields, and how its key goes (Bedrock's with a Bedrock API key)."""


@contextlib.asynccontextmanager
async def listener() -> AsyncIterator[tuple[int, list[bytes]]]:
    heard: list[bytes] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            heard.append(await reader.read(65536))
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)  # a port the system picks and holds
    try:
        yield server.sockets[0].getsockname()[1], heard
    finally:
        server.close()
        await server.wait_closed()


async def ask(rules: EgressRules, port: int, kind: str = "openai", fields: dict[str, Any] | None = None) -> str:
    """One completion through a provider of `kind` at the listener; the error message it ends with."""

    async def publish(_subject: str, _data: bytes) -> None:
        return None

    providers = LlmProviders(Sealer(), publish, rules)
    url = f"http://127.0.0.1:{port}/v1"
    config = ProviderConfig(kind=kind, base_url=url, api_key_env=VARIABLE, models=["m"], retries=0, **(fields or {}))
    await providers.put("stolen", ProviderRecord(name="stolen", config=config).model_dump_json().encode())
    try:
        caller = Caller(key_id="k", key_name="ci")
        request = LlmRequest(caller=caller, provider="stolen", model="m", body={"model": "m"}, timeout=30)
        outcome = await providers.run(request)
    finally:
        await providers.close()
    assert outcome.error is not None
    assert outcome.error.kind in (ErrorKind.UPSTREAM_UNAVAILABLE, ErrorKind.UPSTREAM_ERROR)
    return outcome.error.message


@pytest.mark.parametrize(("kind", "fields", "sent"), WIRES, ids=[kind for kind, _, _ in WIRES])
async def test_a_provider_on_a_loopback_address_gets_no_connection_and_no_key(
    monkeypatch: pytest.MonkeyPatch, kind: str, fields: dict[str, Any], sent: str
) -> None:
    monkeypatch.setenv(VARIABLE, SECRET)
    async with listener() as (port, heard):
        message = await ask(EgressRules(), port, kind, fields)
        assert "127.0.0.1 is a loopback address" in message and "allow_private_hosts" in message
        assert SECRET not in message
        assert heard == []

        await ask(
            EgressRules(["127.0.0.1"]), port, kind, fields
        )  # an owner's allowance: then it is reached, key and all
        assert heard and sent.lower().encode() in heard[0].lower()  # header names are case-insensitive
