"""The `openapi` session against the real pet store, without the gateway: the OAuth 2 client credentials
token is fetched once, shared, and fetched again when the API refuses it; a refused client says why
without its secret; a changed document file is noticed; an unreachable API maps to the usual error."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import httpx2
import pytest
import yaml

from libs.common.contracts.errors import ErrorKind
from tests.support import rest_api
from tests.support.rest_sessions import DOCUMENTS, call, pet_store, session

pytestmark = pytest.mark.integration

CLIENT = {"type": "oauth2_client_credentials", "client_id": rest_api.CLIENT_ID, "client_secret": rest_api.CLIENT_SECRET}


@pytest.fixture
def store() -> Iterator[str]:
    with pet_store() as base:
        yield base


async def _issued(base: str) -> int:
    async with httpx2.AsyncClient() as http:
        return int((await http.get(f"{base}/oauth/issued")).json()["count"])


async def test_client_credentials_are_fetched_once_shared_and_renewed_on_401(store):
    async with session("3.0", store, openapi={"auth": CLIENT}) as opened:
        answers = await asyncio.gather(*(call(opened, "whoami") for _ in range(5)))
        assert all(a.result and a.result["structuredContent"] == {"via": "client_credentials"} for a in answers)
        assert await _issued(store) == 1, "concurrent calls share one token"
        async with httpx2.AsyncClient() as http:
            await http.post(f"{store}/oauth/revoke-all")
        again = await call(opened, "whoami")
        assert again.result and again.result["structuredContent"] == {"via": "client_credentials"}
        assert await _issued(store) == 2, "a refused token is replaced once"


async def test_a_refused_client_says_why_without_its_secret(store):
    wrong = {**CLIENT, "client_secret": "not-the-secret-0123456789", "client_auth": "client_secret_post"}
    async with session("3.0", store, openapi={"auth": wrong}) as opened:
        outcome = await call(opened, "whoami")
    assert outcome.error is not None and outcome.error.kind is ErrorKind.UPSTREAM_ERROR
    assert outcome.error.message == (
        "OAuth client credentials: the token endpoint answered HTTP 401 (invalid_client), no token"
    )
    assert outcome.execution == "not_run"


async def test_a_changed_document_file_is_listed_again(store, tmp_path):
    shutil.copytree(DOCUMENTS, tmp_path / "docs")
    document = tmp_path / "docs" / "petstore-3.0.yaml"
    changed: list[bool] = []
    from libs.common.contracts.config import ServerConfig
    from services.executor.upstreams.openapi.connector import OpenApiConnector
    from tests.support.egress import LOOPBACK_RULES
    from tests.support.rest_sessions import _client

    config = ServerConfig.model_validate({"openapi": {"document": str(document), "base_url": store}})
    connector = OpenApiConnector(
        "pets",
        config,
        connect_timeout=10,
        make_client=_client,
        egress=LOOPBACK_RULES,
        oauth=None,
        on_list_changed=lambda: changed.append(True),
    )
    async with connector.open() as opened:
        first = {t["name"] for t in (await opened.list()).tools}
        assert await opened.ping(5) is None and not changed
        raw = yaml.safe_load(document.read_text())
        raw["paths"]["/pets/{petId}"]["get"]["operationId"] = "fetchPet"
        document.write_text(yaml.safe_dump(raw))
        assert await opened.ping(5) is None and changed == [True]
        second = {t["name"] for t in (await opened.list()).tools}
    assert first - second == {"getPet"} and second - first == {"fetchPet"}


async def test_an_unreachable_api_is_unavailable_and_probed():
    async with session("3.0", "http://127.0.0.1:9") as opened:  # nothing listens on port 9
        outcome = await call(opened, "getPet", {"petId": 1})
        assert outcome.error is not None and outcome.error.kind is ErrorKind.UPSTREAM_UNAVAILABLE
        assert outcome.execution == "not_run" and "unreachable" in outcome.error.message
        assert await opened.ping(2) is not None, "after a failure the health check probes the API"


async def test_upstream_oauth_probes_its_resource_when_a_session_opens(store):
    """`auth: {type: oauth}`: a 401 no token answers fails the opening (the owner then reports
    `needs_auth` with the authorization link, as for an MCP server); a resource that lets the request
    through opens the session."""
    refused = {"auth": {"type": "oauth", "resource": f"{store}/secure/whoami"}}
    with pytest.raises(PermissionError, match=r"answered HTTP 401 at http://127\.0\.0\.1:[0-9]+/secure/whoami"):
        async with session("3.0", store, openapi=refused):
            pass
    allowed = {"auth": {"type": "oauth", "resource": f"{store}/pets"}}
    async with session("3.0", store, openapi=allowed) as opened:
        assert (await call(opened, "getPet", {"petId": 1})).result is not None
