"""Fixtures of the `/v1` tests: a scripted OpenAI-compatible provider (two for run-time changes) and
the whole gateway in front of it, with or without the codemode service."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from libs.common.runtime.sealing import new_key
from libs.common.settings import CodeModeSettings
from services.codemode.service import CodeModeService
from tests.support.gateway import Gateway, running_gateway
from tests.support.llm_gateway import MODEL, PROVIDER_KEY, closing_clients, llm_config, module_gateway
from tests.support.llm_provider import ScriptedProvider, scripted_provider
from tests.support.polling import poll_until


@pytest.fixture
async def provider() -> AsyncIterator[ScriptedProvider]:
    async with scripted_provider() as scripted:
        yield scripted


@pytest.fixture(scope="module")
async def shared_provider() -> AsyncIterator[ScriptedProvider]:
    """One provider for a module's gateway; its `provider` fixture resets it for each test."""
    async with scripted_provider() as scripted:
        yield scripted


@pytest.fixture
def began() -> float:
    """When the test began: its audit rows are those stamped from then on (`audit_rows_since`)."""
    return time.time()


@pytest.fixture
async def second_provider() -> AsyncIterator[ScriptedProvider]:
    async with scripted_provider() as scripted:
        yield scripted


@pytest.fixture
async def gateway(nats_url, redis_url, tmp_path, provider, monkeypatch) -> AsyncIterator[Gateway]:
    """With the admin API on, and provider keys sealed at rest."""
    monkeypatch.setenv("BASTION_TEST_PROVIDER_KEY", PROVIDER_KEY)
    settings = {"admin": True, "secrets_key": new_key(), "audit_journal_dir": str(tmp_path / "journal")}
    async with running_gateway(nats_url, redis_url, tmp_path, llm_config(provider), **settings) as gw:
        await poll_until(lambda: MODEL in gw.ingress.models.models, "the provider in the ingress view")
        async with closing_clients(gw):
            yield gw


@pytest.fixture
async def code_gateway(nats_url, redis_url, tmp_path, provider, monkeypatch) -> AsyncIterator[Gateway]:
    """The gateway with the codemode service (real sandbox workers) for the Code Mode keys."""
    monkeypatch.setenv("BASTION_TEST_PROVIDER_KEY", PROVIDER_KEY)
    settings = CodeModeSettings(sandbox_workers=1, sandbox_wall_seconds=20)
    async with running_gateway(nats_url, redis_url, tmp_path, llm_config(provider), codemode=settings) as gw:
        codemode = next(s for s in gw.services if isinstance(s, CodeModeService))
        await poll_until(lambda: MODEL in gw.ingress.models.models, "the provider in the ingress view")
        await poll_until(lambda: {"echo", "notes"} <= {s for s, _ in codemode.catalog.pairs}, "the codemode catalog")
        async with closing_clients(gw):
            yield gw


@pytest.fixture
def scripted(shared_provider: ScriptedProvider) -> ScriptedProvider:
    """The fronts' modules' provider, with a script and a record of requests of this test's own."""
    shared_provider.reset()
    return shared_provider


FRONT_BODY_LIMIT = 256 * 1024
"""The body limit of `front_gateway`'s ingress: an oversized request is cheap to send."""


@pytest.fixture(scope="module")
async def front_stack(
    tmp_path_factory: pytest.TempPathFactory, shared_provider: ScriptedProvider
) -> AsyncIterator[Gateway]:
    """The gateway the fronts' modules share (`/v1/messages`, `/v1/responses`), started once per module:
    no admin API, no codemode, no notes server (no test there uses them)."""
    workdir = tmp_path_factory.mktemp("fronts")
    config = llm_config(shared_provider)
    del config["mcpServers"]["notes"]
    config["llm"]["providers"]["scripted"]["failure_threshold"] = 10
    settings = {"secrets_key": new_key(), "audit_journal_dir": str(workdir / "journal")}
    async with module_gateway(workdir, config, max_body_bytes=FRONT_BODY_LIMIT, **settings) as gw:
        yield gw


@pytest.fixture
async def front_gateway(front_stack: Gateway) -> AsyncIterator[Gateway]:
    """`front_stack` for one test; the SDK clients it made are closed after it."""
    async with closing_clients(front_stack) as gw:
        yield gw
