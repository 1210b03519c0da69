"""The `/v1` tests' module-wide gateway: started once on its own servers, handed to each test with the
SDK clients it opened closed after it, and the module's scripted provider reset for each test.

A module binds the fixtures under the names its tests use:
`from tests.support.llm_fixtures import gateway_per_test as gateway, provider_per_test as provider`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from libs.common.runtime.sealing import new_key
from tests.support.codemode_gateway import codemode_ready
from tests.support.gateway import Gateway, gateway_on_own_servers
from tests.support.llm_gateway import MODEL, OPEN_CLIENTS, PROVIDER_KEY
from tests.support.llm_provider import ScriptedProvider
from tests.support.polling import poll_until

__all__ = [
    "close_clients",
    "gateway_per_test",
    "module_gateway",
    "module_gateway_fixture",
    "provider_per_test",
    "serving",
]


async def close_clients() -> None:
    """Close the SDK clients a test opened (`sdk_client` keeps them in `OPEN_CLIENTS`)."""
    while OPEN_CLIENTS:
        await OPEN_CLIENTS.pop().close()


@asynccontextmanager
async def serving(gateway: Gateway) -> AsyncIterator[Gateway]:
    """`gateway` once ingress lists the scripted provider's model; the SDK clients opened on it
    (`sdk_client`) are closed after."""
    await poll_until(lambda: MODEL in gateway.ingress.models.models, "the provider in the ingress view")
    try:
        yield gateway
    finally:
        await close_clients()


@asynccontextmanager
async def module_gateway(workdir: Path, config: dict[str, Any], **settings: Any) -> AsyncIterator[Gateway]:
    """A module's gateway on servers of its own, with the provider's key in its environment, once it
    serves the provider's model."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BASTION_TEST_PROVIDER_KEY", PROVIDER_KEY)
        async with gateway_on_own_servers(workdir, config, **settings) as gw:
            await poll_until(lambda: MODEL in gw.ingress.models.models, "the provider in the ingress view")
            yield gw


@pytest.fixture
def provider_per_test(shared_provider: ScriptedProvider) -> ScriptedProvider:
    """The module's provider, with a script and a record of requests of this test's own."""
    shared_provider.reset()
    return shared_provider


@pytest.fixture
async def gateway_per_test(shared_gateway: Gateway) -> AsyncIterator[Gateway]:
    """The module's gateway, with the SDK clients this test opened closed after it."""
    try:
        yield shared_gateway
    finally:
        await close_clients()


def module_gateway_fixture(config: Callable[[ScriptedProvider], dict[str, Any]], **options: Any) -> Any:
    """A module's `shared_gateway` fixture: `config(provider)` with the module's provider, on servers of
    its own, provider keys sealed at rest and the audit journal in its folder; `options` are further
    settings (with `codemode`, the gateway is ready once the codemode catalog lists a server)."""

    @pytest.fixture(scope="module")
    async def shared_gateway(
        tmp_path_factory: pytest.TempPathFactory, shared_provider: ScriptedProvider
    ) -> AsyncIterator[Gateway]:
        workdir = tmp_path_factory.mktemp("llm")
        settings = {"secrets_key": new_key(), "audit_journal_dir": str(workdir / "journal"), **options}
        running = module_gateway(workdir, config(shared_provider), **settings)
        async with codemode_ready(running) if "codemode" in options else running as gw:
            yield gw

    return shared_gateway
