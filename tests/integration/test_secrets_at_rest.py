"""Upstream secrets (`env` and `headers` values) are sealed in KV `bastion_servers`: written sealed by
`config apply` and the admin API, opened only by the executor, re-sealed under a new key by the next
apply after a rotation, and never shown by the admin API."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError

from cli.apply import apply_config
from libs.common.bus.nats import kv_bucket, kv_snapshot
from libs.common.contracts import subjects
from libs.common.contracts.config import ServerConfig
from libs.common.contracts.messages import ServerCatalog, ServerRecord
from libs.common.runtime.sealing import Sealer, new_key
from libs.common.settings import ExecutorSettings
from libs.common.settings.config_file import parse_config
from services.executor.service import ExecutorService
from tests.support.gateway import ADMIN_KEY, SERVERS, default_config, running_gateway

pytestmark = pytest.mark.integration

UPSTREAM_TOKEN = "upstream-token-sealed-4b1d"
ENV_SECRET = "env-secret-value-9c2e"


def _config(extra: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "mcpServers": {
            "remote": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": f"Bearer {UPSTREAM_TOKEN}"}},
            "local": {"command": "python", "args": ["server.py"], "env": {"API_TOKEN": ENV_SECRET, "MODE": "x"}},
            **(extra or {}),
        }
    }


async def stored(nc: NATS) -> dict[str, tuple[bytes, int]]:
    entries = await kv_snapshot(nc.jetstream(), subjects.KV_SERVERS)
    return {name: (e.value or b"", e.revision or 0) for name, e in entries.items()}


def opened(raw: bytes, sealer: Sealer) -> ServerConfig:
    return sealer.open(ServerRecord.model_validate_json(raw).config)


async def test_apply_seals_every_secret_and_an_unchanged_file_writes_nothing(nc: NATS) -> None:
    sealer = Sealer(new_key())
    config = parse_config(_config())
    await apply_config(nc, config, sealer)
    first = await stored(nc)
    for raw, _ in first.values():
        assert UPSTREAM_TOKEN.encode() not in raw and ENV_SECRET.encode() not in raw
    assert opened(first["remote"][0], sealer).headers == {"Authorization": f"Bearer {UPSTREAM_TOKEN}"}
    assert opened(first["local"][0], sealer).env == {"API_TOKEN": ENV_SECRET, "MODE": "x"}

    await apply_config(nc, config, sealer)
    assert {n: rev for n, (_, rev) in (await stored(nc)).items()} == {n: rev for n, (_, rev) in first.items()}


async def test_after_a_rotation_old_values_still_open_and_apply_reseals_everything(nc: NATS) -> None:
    old, new = new_key(), new_key()
    await apply_config(nc, parse_config(_config()), Sealer(old))
    kv = await nc.jetstream().key_value(subjects.KV_SERVERS)
    live = ServerRecord(
        name="added-live", config=Sealer(old).seal(ServerConfig(url="http://h/mcp", headers={"K": "v"}))
    )
    await kv.put(live.name, live.model_dump_json().encode())  # as the admin API writes it

    rotated = Sealer(f"{new},{old}")  # step 1: the new key in front; everything stored still opens
    for raw, _ in (await stored(nc)).values():
        opened(raw, rotated)

    await apply_config(nc, parse_config(_config()), rotated)  # step 2: re-seal
    only_new = Sealer(new)  # step 3: the old key can go
    after = await stored(nc)
    assert set(after) == {"remote", "local", "added-live"}
    assert opened(after["remote"][0], only_new).headers == {"Authorization": f"Bearer {UPSTREAM_TOKEN}"}
    assert opened(after["local"][0], only_new).env["API_TOKEN"] == ENV_SECRET
    assert opened(after["added-live"][0], only_new).headers == {"K": "v"}, "servers added at run time too"


@pytest.fixture
def locked_upstream() -> Iterator[str]:
    """An HTTP upstream that answers only with `Authorization: Bearer UPSTREAM_TOKEN`."""
    proc = subprocess.Popen(
        [sys.executable, str(SERVERS / "echo_server.py"), "--http", "--port", "0", "--bearer", UPSTREAM_TOKEN],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().split()[1]
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


async def test_the_executor_opens_sealed_headers_and_the_admin_api_never_shows_them(
    nats_url: str, redis_url: str, tmp_path: Path, locked_upstream: str
) -> None:
    key = new_key()
    config = default_config(
        {"unlocked": {"url": locked_upstream, "headers": {"Authorization": f"Bearer {UPSTREAM_TOKEN}"}}}
    )
    async with running_gateway(nats_url, redis_url, tmp_path, config, admin=True, secrets_key=key) as gateway:
        async with gateway.client(ADMIN_KEY) as client:
            result = await client.call_tool("unlocked__echo", {"text": "through sealed headers"})
            assert result.content[0].text == "through sealed headers"
        async with httpx2.AsyncClient(headers=gateway.admin_headers) as http:
            base = gateway.admin_api + "/servers"
            added = await http.post(
                base,
                json={
                    "name": "twin",
                    "config": {"url": locked_upstream, "headers": {"Authorization": f"Bearer {UPSTREAM_TOKEN}"}},
                },
            )
            assert added.status_code == 201, added.text
            shown = [(await http.get(f"{base}/{name}")).text for name in ("unlocked", "twin")]
            shown.append((await http.get(base)).text)
            assert all(UPSTREAM_TOKEN not in text for text in shown)
            # a PUT sending the masked value back keeps the stored (sealed) secret
            twin = (await http.get(f"{base}/twin")).json()
            assert (await http.put(f"{base}/twin", json={"config": twin["config"]})).status_code == 200
        await gateway.wait_for_servers("twin")
        async with gateway.client(ADMIN_KEY) as client:
            assert (await client.call_tool("twin__echo", {"text": "again"})).content[0].text == "again"
        async with await nats.connect(nats_url) as nc:
            raw = await stored(nc)
        assert {"unlocked", "twin"} <= set(raw)
        for value, _ in raw.values():
            assert UPSTREAM_TOKEN.encode() not in value
        assert opened(raw["twin"][0], Sealer(key)).headers == {"Authorization": f"Bearer {UPSTREAM_TOKEN}"}


async def test_an_executor_with_the_wrong_key_reports_the_server_down_and_starts_nothing(
    nc: NATS, nats_url: str
) -> None:
    await apply_config(nc, parse_config(_config()), Sealer(new_key()))
    catalog = await kv_bucket(nc.jetstream(), subjects.KV_CATALOG)
    async with ExecutorService(ExecutorSettings(nats_url=nats_url, secrets_key=new_key())) as executor:
        reported: dict[str, ServerCatalog] = {}
        async with asyncio.timeout(15):
            while set(reported) != {"remote", "local"}:
                for name in ("remote", "local"):
                    with contextlib.suppress(KeyNotFoundError):
                        reported[name] = ServerCatalog.model_validate_json((await catalog.get(name)).value or b"")
                await asyncio.sleep(0.05)
        assert not executor.upstreams, "no upstream is started with secrets it cannot open"
    for entry in reported.values():
        assert entry.status == "unavailable" and entry.health == "down"
        assert "none of the keys in BASTION_SECRETS_KEY opens the sealed value" in (entry.error or "")
    assert "header 'Authorization'" in (reported["remote"].error or "")
