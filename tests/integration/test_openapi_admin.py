"""The admin API takes `openapi` servers, seals their auth secrets like `env` and `headers`, never shows
them (masked, and a PUT of the masked entry keeps them), and `bastion servers add --openapi` builds the
entry it posts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.server_commands import openapi_section
from libs.common.bus.nats import kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.config import ServerConfig
from libs.common.runtime.sealing import Sealer, new_key
from services.admin.service import AdminService
from tests.support.admin_api import running_admin

pytestmark = pytest.mark.integration

KEY = new_key()
SECRET = "client-secret-never-shown-0123"


@pytest.fixture
async def admin_and_owner(nats_url: str) -> AsyncIterator[tuple[AdminService, str]]:
    """The admin service sealing with KEY (the `api` fixture's admin and owner)."""
    async with running_admin(nats_url, secrets_key=KEY) as both:
        yield both


def _entry(secret: str) -> dict[str, Any]:
    auth = {"type": "oauth2_client_credentials", "client_id": "bastion", "client_secret": secret}
    return {"openapi": {"document": "https://api.example/openapi.json", "auth": auth}, "headers": {"X-Team": "t1"}}


async def _stored(nats_url: str) -> tuple[bytes, ServerConfig]:
    import nats

    nc = await nats.connect(nats_url)
    try:
        value = (await (await kv_bucket(nc.jetstream(), subjects.KV_SERVERS)).get("rest")).value
    finally:
        await nc.close()
    return value, Sealer(KEY).open(ServerConfig.model_validate(json.loads(value)["config"]))


async def test_openapi_secrets_are_sealed_masked_and_kept(api: httpx.AsyncClient, nats_url: str) -> None:
    added = await api.post("/servers", json={"name": "rest", "config": _entry(SECRET)})
    assert added.status_code == 201, added.text
    shown = added.json()["config"]
    assert shown["openapi"]["auth"]["client_secret"] == "***" and shown["headers"] == {"X-Team": "***"}
    assert SECRET not in (await api.get("/servers")).text and SECRET not in (await api.get("/servers/rest")).text
    raw, opened = await _stored(nats_url)
    assert SECRET.encode() not in raw and b"sealed:fernet:" in raw
    assert opened.openapi is not None and opened.openapi.secret_values() == [SECRET]

    kept = {**shown, "openapi": {**shown["openapi"], "output_schemas": False}}
    assert (await api.put("/servers/rest", json={"config": kept})).status_code == 200
    _, opened = await _stored(nats_url)
    assert opened.openapi is not None and opened.openapi.secret_values() == [SECRET], "the masked value kept it"
    assert opened.openapi.output_schemas is False and opened.headers == {"X-Team": "t1"}
    moved = {**shown, "openapi": {**shown["openapi"], "base_url": "https://api.example/v2"}}
    refused = await api.put("/servers/rest", json={"config": moved})  # secrets stay with their destination
    assert refused.status_code == 422 and refused.json()["error"] == "secret_unbound", refused.text

    rotated = {
        **kept,
        "openapi": {**kept["openapi"], "auth": {**kept["openapi"]["auth"], "client_secret": "new-one-0123"}},
    }
    await api.put("/servers/rest", json={"config": rotated})
    _, opened = await _stored(nats_url)
    assert opened.openapi is not None and opened.openapi.secret_values() == ["new-one-0123"]

    bad = await api.post("/servers", json={"name": "both", "config": {**_entry(SECRET), "url": "https://x/mcp"}})
    assert bad.status_code == 422 and "no 'command' or 'url'" in bad.text and SECRET not in bad.text


def test_servers_add_openapi_builds_the_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    section = openapi_section("api.yaml", "https://api.example", ["pets"], ["debug"], ["DELETE"])
    assert section == {
        "document": str(tmp_path / "api.yaml"),
        "base_url": "https://api.example",
        "include": {"tags": ["pets"]},
        "exclude": [{"tags": ["debug"]}, {"methods": ["delete"]}],
    }
    assert openapi_section("https://x/openapi.json", None, None, None, None) == {"document": "https://x/openapi.json"}
    assert ServerConfig.model_validate({"openapi": section}).transport == "openapi"
