"""Server-side request forgery through configuration, attacked on a real executor with real HTTP
servers on loopback: OpenAPI documents at the metadata address and at the admin service's own
`openapi.json`, a redirect from an allowed host into loopback, names that resolve inward, loopback
written as numbers; and the same loopback server working once an owner allows its host."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx2
import pytest

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.egress import EgressSection
from libs.common.contracts.errors import ErrorKind
from libs.common.settings import ExecutorSettings
from libs.common.web.egress_rules import EgressRefused, EgressRules, system_resolver
from services.executor.error_mapping import error_from_exception
from services.executor.service import ExecutorService
from services.executor.upstreams.mcp.http1 import HttpPool
from services.executor.upstreams.mcp.http_client import http_client
from tests.integration.test_executor import ECHO, Harness, harness, http_upstream
from tests.support.gateway import running_gateway
from tests.support.polling import poll_until
from tests.support.rest_sessions import DOCUMENTS, pet_store
from tests.support.threaded_http import serving_on_a_thread

pytestmark = pytest.mark.integration

__all__ = ["harness"]  # the fixture, imported for the tests here

HINT = "'allow_private_hosts'"


@pytest.fixture
async def strict(nats_url: str) -> AsyncIterator[ExecutorService]:
    """An executor with no `egress` allowances: public addresses only, unless a server allows more."""
    settings = ExecutorSettings(nats_url=nats_url, connect_timeout=10.0, reconnect_max_backoff=1.0)
    async with ExecutorService(settings) as service:
        yield service


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    """The pet store for the module: the tests here only read it (one pet, its documents)."""
    with pet_store() as base:
        yield base


@pytest.fixture(scope="module")
async def echo_url() -> AsyncIterator[str]:
    """The echo example over streamable HTTP for the module: it keeps no state a test could see."""
    async with http_upstream(ECHO, "http") as url:
        yield url


@contextlib.contextmanager
def redirecting(host: str, to: str) -> Iterator[str]:
    """An HTTP server on `host` answering every GET with a 302 to `to`; yields its base URL."""

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", to)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    with serving_on_a_thread(Redirect, host) as url:
        yield url


def openapi(document: str, base_url: str | None = None, **more: Any) -> ServerConfig:
    return ServerConfig.model_validate({"openapi": {"document": document, "base_url": base_url}, **more})


async def refused(harness: Harness, name: str, config: ServerConfig) -> str:
    """Configure `name`; its catalog entry once unavailable, with no tool; returns the reason."""
    await harness.configure(name, config)
    entry = await harness.wait_status(name, "unavailable", lambda e: e.error is not None and "refused" in e.error)
    assert entry.tools == []
    assert entry.error is not None
    return entry.error


# ---------------------------------------------------------------------------- OpenAPI documents


async def test_an_openapi_document_at_the_metadata_address_is_refused(
    harness: Harness, strict: ExecutorService
) -> None:
    error = await refused(harness, "imds", openapi("http://169.254.169.254/latest/meta-data/openapi.json"))
    assert "refused to connect to 169.254.169.254" in error and "cloud metadata address" in error and HINT in error


async def test_the_admin_services_own_openapi_document_becomes_no_tools(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    """On main this very document became 78 tools, each a call into the admin API from the executor."""
    config = {"mcpServers": {}, "keys": [], "egress": {"allow_private_hosts": []}}
    async with running_gateway(nats_url, redis_url, tmp_path, config, admin=True) as gateway:
        assert gateway.admin is not None
        document = f"{gateway.admin.url}/openapi.json"
        async with httpx2.AsyncClient() as http:
            assert (await http.get(document)).status_code == 200  # it is there to be had
        await gateway.apply({**config, "mcpServers": {"admin": {"openapi": {"document": document}}}})
        catalog = gateway.ingress.catalog

        def settled() -> bool:
            entry = catalog.server_status("admin")
            return entry is not None and entry.status == "unavailable" and entry.error is not None

        await poll_until(settled, "the admin document's server to be refused")
        entry = catalog.server_status("admin")
        assert entry is not None and entry.tools == [] and entry.error is not None
        assert "refused to connect to 127.0.0.1: 127.0.0.1 is a loopback address" in entry.error
        assert not [entry for entry in catalog.entries if entry.server == "admin"]


async def test_an_openapi_document_on_loopback_is_served_once_its_host_is_allowed(
    harness: Harness, strict: ExecutorService, store: str
) -> None:
    error = await refused(harness, "pets", openapi(f"{store}/openapi.json"))
    assert (
        "refused to connect to 127.0.0.1: 127.0.0.1 is a loopback address; an owner allows it by adding '127.0.0.1'"
        in (error)
    )
    await harness.configure("pets", openapi(f"{store}/openapi.json", allow_private_hosts=["127.0.0.1"]))
    entry = await harness.wait_status("pets", "ready")
    assert "listPets" in {tool.tool for tool in entry.tools}
    outcome = await harness.call("pets", "getPet", {"petId": 1})
    assert outcome.error is None, outcome.error


async def test_a_redirect_from_an_allowed_host_into_loopback_is_refused(
    harness: Harness, strict: ExecutorService, store: str
) -> None:
    """127.0.0.2 stands for a host the owner allowed; its answer sends the executor to 127.0.0.1."""
    with redirecting("127.0.0.2", f"{store}/openapi.json") as allowed:
        config = openapi(f"{allowed}/openapi.json", allow_private_hosts=["127.0.0.2"])
        error = await refused(harness, "hop", config)
    assert "refused to connect to 127.0.0.1: 127.0.0.1 is a loopback address" in error


async def test_a_base_url_on_loopback_is_refused_at_call_time(
    harness: Harness, strict: ExecutorService, store: str
) -> None:
    """The document is a file (nothing to fetch): its tools are listed, and each call is refused."""
    await harness.configure("rest", openapi(str(DOCUMENTS / "petstore-3.0.yaml"), base_url=store))
    await harness.wait_status("rest", "ready")
    outcome = await harness.call("rest", "getPet", {"petId": 1})
    assert outcome.error is not None and outcome.error.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert outcome.execution == "not_run"
    assert "refused to connect to 127.0.0.1" in outcome.error.message and HINT in outcome.error.message


async def test_a_client_credentials_token_endpoint_at_the_metadata_address_is_refused(
    harness: Harness, strict: ExecutorService, store: str
) -> None:
    """The API itself is allowed; the token request its calls need is a connection of its own, and refused."""
    auth = {
        "type": "oauth2_client_credentials",
        "token_url": "http://169.254.169.254/latest/api/token",
        "client_id": "bastion",
        "client_secret": "client-secret-7f3c",
    }
    document = str(DOCUMENTS / "petstore-3.0.yaml")
    config = ServerConfig.model_validate(
        {"openapi": {"document": document, "base_url": store, "auth": auth}, "allow_private_hosts": ["127.0.0.1"]}
    )
    await harness.configure("tokens", config)
    await harness.wait_status("tokens", "ready")
    outcome = await harness.call("tokens", "getPet", {"petId": 1})
    assert outcome.error is not None and outcome.error.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert outcome.execution == "not_run"
    assert "refused to connect to 169.254.169.254" in outcome.error.message and HINT in outcome.error.message
    assert "client-secret-7f3c" not in outcome.error.message


# ---------------------------------------------------------------------------- MCP over HTTP and SSE


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f.1", "127.1", "017700000001", "[::ffff:127.0.0.1]", "localhost", "localhost."]
)
async def test_loopback_written_otherwise_is_refused_though_127_0_0_1_is_allowed(
    harness: Harness, nats_url: str, echo_url: str, host: str
) -> None:
    """The config-wide list allows `127.0.0.1` exactly; the same server under other spellings of it is refused."""
    settings = ExecutorSettings(
        nats_url=nats_url,
        connect_timeout=10.0,
        reconnect_max_backoff=1.0,
        egress=EgressSection(allow_private_hosts=["127.0.0.1"]),
    )
    async with ExecutorService(settings):
        error = await refused(harness, "echo", ServerConfig(url=echo_url.replace("127.0.0.1", host, 1)))
        written = host.strip("[]")  # httpx2 hands the connection an IPv6 host without its brackets
        assert f"refused to connect to {written}" in error and "loopback" in error
        assert f"an owner allows it by adding {written!r}" in error and HINT in error
        await harness.configure("echo", ServerConfig(url=echo_url))
        await harness.wait_status("echo", "ready")
        assert await harness.text("echo", "echo", {"text": "allowed"}) == "allowed"


async def test_an_sse_upstream_on_loopback_is_refused_until_allowed(harness: Harness, strict: ExecutorService) -> None:
    async with http_upstream(ECHO, "sse") as url:
        error = await refused(harness, "legacy", ServerConfig(url=url, type="sse"))
        assert "refused to connect to 127.0.0.1" in error and HINT in error
        await harness.configure("legacy", ServerConfig(url=url, type="sse", allow_private_hosts=["127.0.0.1"]))
        await harness.wait_status("legacy", "ready")
        assert await harness.text("legacy", "echo", {"text": "sse"}) == "sse"


# ---------------------------------------------------------------------------- names resolving inward


def to_loopback(host: str, port: int) -> list[str]:
    """A resolver whose every answer is loopback, as a hostile DNS server's (rebinding) would be."""
    return system_resolver("127.0.0.1", port)


async def test_a_name_that_resolves_to_loopback_is_refused_when_connecting(echo_url: str) -> None:
    """The executor's upstream client and its lean HTTP/1 pool both check the address the name
    resolves to at connect time, not the name."""
    url = echo_url.replace("127.0.0.1", "mcp.example.com", 1)
    rules = EgressRules(resolver=to_loopback)
    async with http_client(rules) as client:
        with pytest.raises(httpx2.ConnectError) as failed:
            await client.post(url, json={})
    assert "refused to connect to mcp.example.com: it resolves to 127.0.0.1" in str(failed.value)
    pool = HttpPool(url, addresses=rules.addresses)
    try:
        with pytest.raises(EgressRefused) as lean:
            async with pool.post(b"{}", {"content-type": "application/json"}):
                pass
    finally:
        await pool.close()
    error = error_from_exception(lean.value, server="remote", timeout=5.0)  # what a lean call's agent is told
    assert error.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert "refused to connect to mcp.example.com: it resolves to 127.0.0.1" in error.message and HINT in error.message
    # the same server through the same resolver, once the owner allowed the name
    allowed = EgressRules(["127.0.0.1"], resolver=to_loopback)
    async with http_client(allowed) as client:
        answer = await client.post(echo_url, json={}, headers={"accept": "application/json, text/event-stream"})
    assert answer.status_code < 500


async def test_through_an_environment_proxy_the_host_is_checked_as_written(
    monkeypatch: pytest.MonkeyPatch, echo_url: str
) -> None:
    """A proxy resolves names itself, so the executor cannot check what they resolve to: a host
    written as a non-public address is refused before the proxy is asked (the proxy here is the
    echo server itself: anything that reached it would be answered)."""
    proxy = echo_url.removesuffix("/mcp")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with http_client(EgressRules()) as client:
        for url in ("http://169.254.169.254/latest/meta-data/", "http://2130706433/", "http://localhost./"):
            with pytest.raises(httpx2.ConnectError) as failed:
                await client.get(url)
            assert "refused to connect to" in str(failed.value) and HINT in str(failed.value)
