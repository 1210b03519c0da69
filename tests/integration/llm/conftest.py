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
from tests.support.llm_fixtures import serving
from tests.support.llm_gateway import PROVIDER_KEY, llm_config
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
    async with running_gateway(nats_url, redis_url, tmp_path, llm_config(provider), **settings) as gw, serving(gw):
        yield gw


@pytest.fixture
async def code_gateway(nats_url, redis_url, tmp_path, provider, monkeypatch) -> AsyncIterator[Gateway]:
    """The gateway with the codemode service (real sandbox workers) for the Code Mode keys."""
    monkeypatch.setenv("BASTION_TEST_PROVIDER_KEY", PROVIDER_KEY)
    settings = CodeModeSettings(sandbox_workers=1, sandbox_wall_seconds=20)
    async with running_gateway(nats_url, redis_url, tmp_path, llm_config(provider), codemode=settings) as gw:
        codemode = next(s for s in gw.services if isinstance(s, CodeModeService))
        async with serving(gw):
            await poll_until(
                lambda: {"echo", "notes"} <= {s for s, _ in codemode.catalog.pairs}, "the codemode catalog"
            )
            yield gw
