"""REST APIs as governed MCP servers, end to end: the official MCP client -> ingress -> policy -> executor ->
a real REST API (the FastAPI pet store, `tests/support/rest_api.py`), through each of its three documents
(the 3.1 one it serves itself, and the hand-written 3.0 and Swagger 2.0 ones). The same behavioural tests
run over all three: the tools listed, calls with path, query, header and body arguments, errors, every
auth kind, key grants, rate limits, audit rows, and Code Mode scripts calling the API."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.settings import CodeModeSettings
from services.codemode.service import CodeModeService
from tests.support import rest_api
from tests.support.audit_rows import audit_rows
from tests.support.gateway import ADMIN_KEY, running_gateway
from tests.support.polling import poll_until
from tests.support.rest_sessions import VERSIONS, document_for, pet_store

pytestmark = pytest.mark.integration

NARROW_KEY = "bk_test_openapi_narrow_key_0000"
LIMITED_KEY = "bk_test_openapi_limited_key_000"
CODER_KEY = "bk_test_openapi_code_mode_key_0"


@pytest.fixture
def store() -> Iterator[str]:
    with pet_store() as base:
        yield base


@pytest.fixture(scope="module")
def answering_store() -> Iterator[str]:
    """One pet store for the tests that change none of its pets: its hit counters are read as what a
    test added to them."""
    with pet_store() as base:
        yield base


def _server(version: str, base: str, **openapi: Any) -> dict[str, Any]:
    return {"openapi": {"document": document_for(version, base), "base_url": base, **openapi}}


def _config(version: str, base: str) -> dict[str, Any]:
    return {
        "mcpServers": {"pets": {**_server(version, base), "circuit_breaker": {"failure_threshold": 2}, "retries": 0}},
        "keys": [
            {"name": "admin", "key": ADMIN_KEY, "tools": ["*"]},
            {"name": "narrow", "key": NARROW_KEY, "tools": ["pets/getPet", "pets/listPets"]},
            {"name": "limited", "key": LIMITED_KEY, "tools": ["pets/*"], "rate_limit": {"requests": 2, "per": "hour"}},
            {"name": "coder", "key": CODER_KEY, "tools": ["pets/*"], "code_mode": True},
        ],
    }


def _text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.parametrize("version", VERSIONS)
async def test_tools_are_listed_and_called_with_grants_applied_and_audited(
    version, store, nats_url, redis_url, tmp_path
):
    async with running_gateway(nats_url, redis_url, tmp_path, _config(version, store)) as gateway:
        async with gateway.client(ADMIN_KEY) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            common = {"pets__listPets", "pets__createPet", "pets__getPet", "pets__updatePet", "pets__deletePet"}
            assert common | {"pets__uploadPhoto", "pets__login", "pets__echo", "pets__get_health"} <= set(tools)
            assert tools["pets__getPet"].annotations.read_only_hint is True
            delete = tools["pets__deletePet"].annotations
            assert (delete.read_only_hint, delete.destructive_hint, delete.idempotent_hint) == (False, True, True)
            assert tools["pets__createPet"].annotations.idempotent_hint is False
            assert tools["pets__getPet"].input_schema["required"] == ["petId"]

            listed = await client.call_tool("pets__listPets", {"tags": ["dog"], "limit": 5})
            assert not listed.is_error and listed.structured_content == {
                "result": [{"id": 1, "name": "Rex", "tag": "dog", "status": "available"}]
            }
            created = await client.call_tool("pets__createPet", {"name": "Tom", "tag": None})
            assert created.structured_content == {"id": 2, "name": "Tom", "tag": None, "status": "available"}
            fetched = await client.call_tool("pets__getPet", {"petId": 2})
            assert fetched.structured_content["name"] == "Tom"

            echoed = await client.call_tool(
                "pets__echo",
                {"value": "a/b c?d", "ids": ["1", "2"], "words": ["x", "y"], "flags": ["p", "q"], "X-Note": "hi"},
            )
            seen = echoed.structured_content
            assert seen["value"] == "a/b c?d" and seen["raw_path"] == "/echo/a%2Fb%20c%3Fd"
            assert seen["query"] == "ids=1%7C2&words=x%20y&flags=p,q" and seen["note"] == "hi"

            photo = base64.b64encode(b"\x89PNG binary").decode()
            uploaded = await client.call_tool("pets__uploadPhoto", {"petId": 1, "file": photo, "caption": "cute"})
            assert uploaded.structured_content["sha256"] == hashlib.sha256(b"\x89PNG binary").hexdigest()
            assert uploaded.structured_content["caption"] == "cute"
            login = await client.call_tool("pets__login", {"username": "ann", "password": "p&w=1"})
            assert login.structured_content == {"greeting": "hello ann (5 characters)"}
            cat = await client.call_tool("pets__classifyAnimal", {"body": {"petType": "cat", "name": "Tom"}})
            assert cat.structured_content == {"petType": "cat", "summary": "Tom: indoor=True"}
            tree = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}, {"name": "d"}]}
            assert (await client.call_tool("pets__countCategories", tree)).structured_content == {"count": 4}
            assert (await client.call_tool("pets__get_health", {})).structured_content == {"status": "ok"}

            missing = await client.call_tool("pets__getPet", {"petId": 99})
            assert missing.is_error and _text(missing) == 'HTTP 404 Not Found: {"detail":"no pet 99"}'
            invalid = await client.call_tool("pets__getPet", {"petId": "two"})  # refused before the API is asked
            assert invalid.is_error and "arguments.petId" in _text(invalid)
            unknown = await client.call_tool("pets__getPet", {"petId": 1, "color": "red"})
            assert unknown.is_error and "color" in _text(unknown)
            deleted = await client.call_tool("pets__deletePet", {"petId": 2})
            assert not deleted.is_error and _text(deleted) == "HTTP 204 No Content"

        async with gateway.client(NARROW_KEY) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {"pets__getPet", "pets__listPets"}
            assert (await client.call_tool("pets__getPet", {"petId": 1})).structured_content["name"] == "Rex"
            with pytest.raises(MCPError) as refused:
                await client.call_tool("pets__createPet", {"name": "Sneaky"})
            assert "not allowed" in refused.value.error.message or "unknown tool" in refused.value.error.message
        async with gateway.client(ADMIN_KEY) as client:
            pets = (await client.call_tool("pets__listPets", {})).structured_content["result"]
            assert [p["name"] for p in pets] == ["Rex"], "the refused call never reached the API"

        async with gateway.client(LIMITED_KEY) as client:
            await client.call_tool("pets__getPet", {"petId": 1})
            await client.call_tool("pets__getPet", {"petId": 1})
            with pytest.raises(MCPError) as limited:
                await client.call_tool("pets__getPet", {"petId": 1})
            assert limited.value.error.code == -32052

        rows = await audit_rows(gateway.nats_url, "narrow", 2)
        by_name = {r.name: r for r in rows}
        assert by_name["pets__getPet"].status == "ok" and by_name["pets__getPet"].server == "pets"
        assert by_name["pets__createPet"].status != "ok"
        admin_rows = await audit_rows(gateway.nats_url, "admin", 14)
        assert {"pets__uploadPhoto", "pets__login", "pets__echo"} <= {r.name for r in admin_rows}


@pytest.mark.parametrize("version", VERSIONS)
async def test_error_answers_text_and_the_breaker(version, answering_store, nats_url, redis_url, tmp_path):
    async with running_gateway(nats_url, redis_url, tmp_path, _config(version, answering_store)) as gateway:
        async with gateway.client(ADMIN_KEY) as client:
            teapot = await client.call_tool("pets__getStatus", {"code": 418})
            text = _text(teapot)
            assert teapot.is_error and text.startswith('HTTP 418 I\'m a Teapot: {"detail":"status 418 as asked"')
            assert text.endswith("more bytes)") and len(text) < 4200, "the body is quoted, bounded"
            empty = await client.call_tool("pets__getStatus", {"code": 204})
            assert not empty.is_error and _text(empty) == "HTTP 204 No Content"
            plain = await client.call_tool("pets__getText", {})
            assert _text(plain) == "plain text, not JSON" and plain.structured_content is None
            for _ in range(2):  # failure_threshold 2: an unwell API opens the breaker
                with pytest.raises(MCPError) as unwell:
                    await client.call_tool("pets__getStatus", {"code": 503})
                assert "answered HTTP 503 Service Unavailable" in unwell.value.error.message
            with pytest.raises(MCPError) as open_breaker:
                await client.call_tool("pets__getPet", {"petId": 1})
            assert "circuit breaker is open" in open_breaker.value.error.message


def _auth_servers(version: str, base: str) -> dict[str, Any]:
    only = {"include": {"operations": ["whoami"]}}
    user, password = rest_api.BASIC
    auths: dict[str, Any] = {
        "anonymous": None,
        "bearer": {"type": "bearer", "token": rest_api.BEARER},
        "header": {"type": "api_key", "in": "header", "name": "X-Api-Key", "value": rest_api.API_KEY},
        "query": {"type": "api_key", "in": "query", "name": "api_key", "value": rest_api.API_KEY},
        "cookie": {"type": "api_key", "in": "cookie", "name": "api_key", "value": rest_api.API_KEY},
        "basic": {"type": "basic", "username": user, "password": password},
        "client": {
            "type": "oauth2_client_credentials",
            "client_id": rest_api.CLIENT_ID,
            "client_secret": rest_api.CLIENT_SECRET,
            **({"token_url": f"{base}/oauth/token"} if version == "2.0" else {}),  # else the document's (relative)
        },
    }
    return {
        f"auth_{name}": _server(version, base, **only, **({"auth": auth} if auth else {}))
        for name, auth in auths.items()
    }


@pytest.mark.parametrize("version", VERSIONS)
async def test_every_auth_kind_reaches_the_api_and_no_secret_is_stored_in_plain_text(
    version, answering_store, nats_url, redis_url, tmp_path
):
    from libs.common.runtime.sealing import new_key

    config = {
        "mcpServers": _auth_servers(version, answering_store),
        "keys": [{"name": "admin", "key": ADMIN_KEY, "tools": ["*"]}],
    }
    async with running_gateway(nats_url, redis_url, tmp_path, config, secrets_key=new_key()) as gateway:
        async with gateway.client(ADMIN_KEY) as client:
            for name in ("bearer", "header", "query", "cookie", "basic", "client"):
                answer = await client.call_tool(f"auth_{name}__whoami", {})
                assert answer.structured_content == {
                    "via": {"header": "api_key_header"}.get(name, name)
                    .replace("query", "api_key_query")
                    .replace("cookie", "api_key_cookie")
                    .replace("client", "client_credentials")
                }, name
            refused = await client.call_tool("auth_anonymous__whoami", {})
            assert refused.is_error and _text(refused).startswith("HTTP 401 Unauthorized")
        nc = await connect(gateway.nats_url, "test-kv")
        try:
            stored = await (await nc.jetstream().key_value(subjects.KV_SERVERS)).get("auth_client")
        finally:
            await nc.close()
        secrets = (rest_api.BEARER, rest_api.API_KEY, rest_api.BASIC[1], rest_api.CLIENT_SECRET)
        assert b"sealed:fernet:" in stored.value and not any(s.encode() in stored.value for s in secrets)


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_code_mode_script_calls_the_rest_api(version, store, nats_url, redis_url, tmp_path):
    settings = CodeModeSettings(sandbox_workers=1, sandbox_wall_seconds=20)
    async with running_gateway(nats_url, redis_url, tmp_path, _config(version, store), codemode=settings) as gateway:
        codemode = next(s for s in gateway.services if isinstance(s, CodeModeService))
        await poll_until(lambda: {s for s, _ in codemode.catalog.pairs} == {"pets"}, "pets in the codemode catalog")
        code = (
            'made = pets.createPet(name="Kit", tag="cat")\n'
            "names = [p['name'] for p in pets.listPets()]\n"
            "echoed = pets.echo(value='x/y', ids=['1', '2'])\n"
            "result = {'id': made['id'], 'names': names, 'path': echoed['raw_path']}\n"
        )
        async with gateway.client(CODER_KEY) as client:
            stub = _text(await client.call_tool("read_tool_file", {"path": "servers/pets.py"}))
            assert "def getPet(petId: int)" in stub
            answer = await client.call_tool("execute_code", {"code": code})
        assert not answer.is_error, _text(answer)
        assert _text(answer).splitlines()[-1] == 'result: {"id":2,"names":["Rex","Kit"],"path":"/echo/x%2Fy"}'
        rows = await audit_rows(gateway.nats_url, "coder", 5)
        assert {"pets__createPet", "pets__listPets", "pets__echo"} <= {r.name for r in rows}


@pytest.mark.parametrize("version", VERSIONS)
async def test_only_idempotent_operations_are_retried(version, answering_store, nats_url, redis_url, tmp_path):
    config = _config(version, answering_store)
    config["mcpServers"]["pets"] |= {"retries": 2, "circuit_breaker": {"failure_threshold": 10}}
    async with httpx2.AsyncClient() as http:
        before = (await http.get(f"{answering_store}/hits")).json()
    async with running_gateway(nats_url, redis_url, tmp_path, config) as gateway:
        async with gateway.client(ADMIN_KEY) as client:
            for tool in ("pets__getStatus", "pets__postStatus"):
                with pytest.raises(MCPError, match="answered HTTP 502"):
                    await client.call_tool(tool, {"code": 502})
    async with httpx2.AsyncClient() as http:
        after = (await http.get(f"{answering_store}/hits")).json()
    hits = {sent: count - before.get(sent, 0) for sent, count in after.items() if count != before.get(sent, 0)}
    assert hits == {"GET 502": 3, "POST 502": 1}, "a GET is sent again after a 502, a POST never"
