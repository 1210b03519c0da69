"""Fixtures of the `/v1` tests: a scripted OpenAI-compatible provider (two for run-time changes) and
the whole gateway in front of it, started once per module.

A module whose tests need another shape of gateway (no admin API, the codemode service) names it as
`STACK`; one with other providers overrides `shared_gateway`. `gateway` hands the module's to one test."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.gateway import Gateway
from tests.support.llm_gateway import StackShape, closing_clients, shaped_gateway
from tests.support.llm_provider import ScriptedProvider, scripted_provider


@pytest.fixture(scope="module")
async def shared_provider() -> AsyncIterator[ScriptedProvider]:
    """One provider for a module's gateway; the `provider` fixture resets it for each test."""
    async with scripted_provider() as scripted:
        yield scripted


@pytest.fixture
def provider(shared_provider: ScriptedProvider) -> ScriptedProvider:
    """The module's provider, with a script and a record of requests of this test's own."""
    shared_provider.reset()
    return shared_provider


@pytest.fixture
def began() -> float:
    """When the test began: its audit rows are those stamped from then on (`audit_rows_since`)."""
    return time.time()


@pytest.fixture
async def second_provider() -> AsyncIterator[ScriptedProvider]:
    async with scripted_provider() as scripted:
        yield scripted


@pytest.fixture(scope="module")
def journal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The audit journal of the module's gateway."""
    return tmp_path_factory.mktemp("llm-journal")


@pytest.fixture(scope="module")
async def shared_gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    shared_provider: ScriptedProvider,
    journal_dir: Path,
) -> AsyncIterator[Gateway]:
    """The module's gateway, started once, shaped as its `STACK` says (by default the admin API on and
    provider keys sealed at rest): a key the admin API makes has a name of its own, and no test reads
    another's notes."""
    shape = getattr(request.module, "STACK", StackShape())
    workdir = tmp_path_factory.mktemp("llm")
    async with shaped_gateway(workdir, shared_provider, shape, audit_journal_dir=str(journal_dir)) as gw:
        yield gw


@pytest.fixture
async def gateway(shared_gateway: Gateway) -> AsyncIterator[Gateway]:
    """The module's `shared_gateway` for one test; the SDK clients it made are closed after it."""
    async with closing_clients(shared_gateway) as gw:
        yield gw


FRONT_BODY_LIMIT = 256 * 1024
"""The body limit of `front_gateway`'s ingress: an oversized request is cheap to send."""


FRONTS = StackShape(admin=False, notes=False, failure_threshold=10, max_body_bytes=FRONT_BODY_LIMIT)
"""The gateway the fronts' modules share (`/v1/messages`, `/v1/responses`): no admin API, no codemode,
no notes server (no test there uses them)."""


@pytest.fixture(scope="module")
async def front_stack(
    tmp_path_factory: pytest.TempPathFactory, shared_provider: ScriptedProvider
) -> AsyncIterator[Gateway]:
    """`FRONTS`, started once per module."""
    async with shaped_gateway(tmp_path_factory.mktemp("fronts"), shared_provider, FRONTS) as gw:
        yield gw


@pytest.fixture
async def front_gateway(front_stack: Gateway) -> AsyncIterator[Gateway]:
    """`front_stack` for one test; the SDK clients it made are closed after it."""
    async with closing_clients(front_stack) as gw:
        yield gw
