"""Upstream OAuth secrets in HashiCorp Vault (`VaultStore`, KV v2 through `hvac`).

The same assertions run against a real Vault image through testcontainers wherever a Docker engine
answers (skipped here otherwise, saying so), and always against `tests/support/vault_double.py`,
which speaks Vault's real KV v2 HTTP API over real HTTP. With the double, the test also reads what
reached Vault's storage: the value under `<mount>/<prefix>/<name>`, and nothing once deleted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import hvac.exceptions
import pytest

from services.oauth.upstream.secret_stores import VaultStore
from tests.support.vault_double import VaultDouble, running_vault_double

pytestmark = pytest.mark.integration

TOKEN = "vault-test-root-token"


def _docker_problem() -> str | None:
    # checked before any client is made: a docker client refused by a missing socket leaks that socket
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return (
            "no Docker engine here (no DOCKER_HOST, no /var/run/docker.sock); testcontainers needs one for a real Vault"
        )
    import docker

    engine = docker.from_env(timeout=3)
    try:
        engine.ping()
    except Exception as exc:
        return f"the Docker engine does not answer ({type(exc).__name__}); testcontainers needs one for a real Vault"
    finally:
        engine.close()
    return None


@dataclass
class Vault:
    url: str
    token: str
    double: VaultDouble | None


@pytest.fixture(params=["double", pytest.param("container", marks=pytest.mark.docker)])
def vault(request: pytest.FixtureRequest) -> Iterator[Vault]:
    if request.param == "double":
        with running_vault_double(TOKEN) as (url, double):
            yield Vault(url, TOKEN, double)
        return
    if (problem := _docker_problem()) is not None:
        pytest.skip(problem)
    from testcontainers.community.vault import VaultContainer

    with VaultContainer("hashicorp/vault:1.18", root_token=TOKEN) as container:
        yield Vault(container.get_connection_url(), TOKEN, None)


async def test_vault_store_keeps_reads_replaces_and_deletes_secrets(vault: Vault) -> None:
    client = hvac.Client(url=vault.url, token=vault.token)
    try:
        store = VaultStore(client, mount="secret", prefix="/bastion/oauth/")
        assert await store.get("tokens.github.alice") is None
        await store.put("tokens.github.alice", '{"access_token": "gho_alice"}')
        await store.put("tokens.github.bob", '{"access_token": "gho_bob"}')
        assert await store.get("tokens.github.alice") == '{"access_token": "gho_alice"}'
        await store.put("tokens.github.alice", '{"access_token": "gho_alice_2"}')
        assert await store.get("tokens.github.alice") == '{"access_token": "gho_alice_2"}'
        assert await store.get("tokens.github.bob") == '{"access_token": "gho_bob"}'
        if vault.double is not None:
            assert vault.double.versions["bastion/oauth/tokens.github.alice"][-1] == {
                "value": '{"access_token": "gho_alice_2"}'
            }
        await store.delete("tokens.github.alice")
        await store.delete("tokens.github.never-stored")  # deleting what is not there is no error
        assert await store.get("tokens.github.alice") is None
        assert await store.get("tokens.github.bob") == '{"access_token": "gho_bob"}'
        if vault.double is not None:
            assert "bastion/oauth/tokens.github.alice" not in vault.double.versions
    finally:
        client.adapter.close()


async def test_a_wrong_vault_token_is_refused_not_read_as_missing(vault: Vault) -> None:
    client = hvac.Client(url=vault.url, token="not-the-token")
    try:
        store = VaultStore(client)
        with pytest.raises(hvac.exceptions.Forbidden):
            await store.get("tokens.github.alice")
        with pytest.raises(hvac.exceptions.Forbidden):
            await store.put("tokens.github.alice", "x")
    finally:
        client.adapter.close()
