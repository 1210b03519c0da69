"""`apply_config` against a real NATS: what lands in KV, what is removed, what never gets there."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from bastion_cli.apply import apply_config
from bastion_common import subjects
from bastion_common.config import BastionConfig, ConfigError, ServerConfig, load_config
from bastion_common.messages import KeyRecord, ServerRecord

pytestmark = pytest.mark.integration  # real nats-server (fast: ~50 ms per test)

DEMO = "bk_demo_local_only_change_me_0000"
OTHER = "bk_other_secret_for_tests_000000"
RUNTIME = "bk_created_at_runtime_not_config"

FULL = f"""
mcpServers:
  echo: {{command: python, args: [echo_server.py], env: {{MODE: test}}}}
  remote: {{url: "https://mcp.example.com/mcp", headers: {{X-Team: a}}}}
keys:
  - {{name: demo, key: {DEMO}, tools: ["*"]}}
  - {{name: other, key: {OTHER}, tools: ["echo/echo", "remote/list_*"]}}
"""

REDUCED = f"""
mcpServers:
  echo: {{command: python, args: [echo_server.py], env: {{MODE: test}}}}
keys:
  - {{name: demo, key: {DEMO}, tools: ["*"]}}
"""


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def config(tmp_path: Path, text: str, name: str = "bastion.yaml") -> BastionConfig:
    path = tmp_path / name
    path.write_text(text)
    return load_config(path)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def bucket(nc: NATS, name: str) -> KeyValue:
    return await nc.jetstream().key_value(name)


async def contents(kv: KeyValue) -> dict[str, bytes]:
    try:
        names = await kv.keys()
    except NoKeysError:
        return {}
    return {name: (await kv.get(name)).value for name in names}


async def revisions(kv: KeyValue) -> dict[str, int]:
    try:
        names = await kv.keys()
    except NoKeysError:
        return {}
    return {name: (await kv.get(name)).revision for name in names}


async def test_servers_and_keys_appear_without_secrets(nc: NATS, tmp_path: Path) -> None:
    await apply_config(nc, config(tmp_path, FULL))

    servers = await contents(await bucket(nc, subjects.KV_SERVERS))
    assert set(servers) == {"echo", "remote"}
    echo = ServerRecord.model_validate_json(servers["echo"])
    assert echo.name == "echo" and echo.config.command == "python" and echo.config.env == {"MODE": "test"}
    assert echo.config.cwd == str(tmp_path), "relative stdio cwd resolved against the config file"
    assert ServerRecord.model_validate_json(servers["remote"]).config.url == "https://mcp.example.com/mcp"

    keys = await contents(await bucket(nc, subjects.KV_KEYS))
    assert set(keys) == {sha(DEMO), sha(OTHER)}
    other = KeyRecord.model_validate_json(keys[sha(OTHER)])
    assert (other.id, other.name, other.grants, other.revoked) == (
        sha(OTHER),
        "other",
        ["echo/echo", "remote/list_*"],
        False,
    )
    assert other.source == "config"
    for raw in [*servers.values(), *keys.values()]:
        assert DEMO.encode() not in raw and OTHER.encode() not in raw


async def test_removed_entries_disappear_and_runtime_keys_stay(nc: NATS, tmp_path: Path) -> None:
    await apply_config(nc, config(tmp_path, FULL))
    keys_kv = await bucket(nc, subjects.KV_KEYS)
    runtime = KeyRecord(id=sha(RUNTIME), name="made-by-hand", grants=["echo/echo"])
    await keys_kv.put(runtime.id, runtime.model_dump_json().encode())
    servers_kv = await bucket(nc, subjects.KV_SERVERS)
    added = ServerRecord(name="added-live", config=ServerConfig(url="http://127.0.0.1:9/mcp"))  # admin API style
    await servers_kv.put(added.name, added.model_dump_json().encode())

    await apply_config(nc, config(tmp_path, REDUCED))

    assert set(await contents(servers_kv)) == {"echo", "added-live"}, "config servers removed, runtime server kept"
    with pytest.raises(KeyNotFoundError):
        await servers_kv.get("remote")
    assert set(await contents(keys_kv)) == {sha(DEMO), sha(RUNTIME)}, "config keys removed, runtime key kept"
    with pytest.raises(KeyNotFoundError):
        await keys_kv.get(sha(OTHER))


async def test_apply_is_idempotent(nc: NATS, tmp_path: Path) -> None:
    cfg = config(tmp_path, FULL)
    await apply_config(nc, cfg)
    servers_kv, keys_kv = await bucket(nc, subjects.KV_SERVERS), await bucket(nc, subjects.KV_KEYS)
    before = (await revisions(servers_kv), await revisions(keys_kv))
    await apply_config(nc, config(tmp_path, FULL))
    assert (await revisions(servers_kv), await revisions(keys_kv)) == before, "nothing rewritten, no spurious updates"

    changed = FULL.replace('tools: ["*"]', 'tools: ["echo/*"]')
    await apply_config(nc, config(tmp_path, changed))
    demo = KeyRecord.model_validate_json((await keys_kv.get(sha(DEMO))).value)
    assert demo.grants == ["echo/*"]
    assert (await keys_kv.get(sha(DEMO))).revision > before[1][sha(DEMO)]


async def test_a_revocation_survives_reapplying(nc: NATS, tmp_path: Path) -> None:
    await apply_config(nc, config(tmp_path, FULL))
    keys_kv = await bucket(nc, subjects.KV_KEYS)
    record = KeyRecord.model_validate_json((await keys_kv.get(sha(OTHER))).value)
    record.revoked = True
    await keys_kv.put(record.id, record.model_dump_json().encode())

    await apply_config(nc, config(tmp_path, FULL))
    again = KeyRecord.model_validate_json((await keys_kv.get(sha(OTHER))).value)
    assert again.revoked and again.created_at == record.created_at


async def test_an_unset_key_env_writes_nothing(nc: NATS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_TEST_UNSET_KEY", raising=False)
    cfg = config(
        tmp_path, "mcpServers: {echo: {command: python}}\nkeys: [{name: ci, key_env: BASTION_TEST_UNSET_KEY}]\n"
    )
    with pytest.raises(ConfigError, match=r"keys\.ci\.key_env"):
        await apply_config(nc, cfg)
    with pytest.raises(Exception):  # noqa: B017 - the bucket was not even created
        await contents(await bucket(nc, subjects.KV_SERVERS))


def test_config_apply_command_writes_kv(nats_url, tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text("mcpServers:\n  s1: {url: 'http://127.0.0.1:9/mcp'}\nkeys:\n  - {name: k, key: bk_apply_command_test_1234, tools: ['*']}\n")
    done = subprocess.run([sys.executable, "-m", "bastion_cli", "config", "apply", str(cfg), "--nats-url", nats_url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "1 server(s), 1 key(s)" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "bastion_cli", "config", "apply", str(tmp_path / "missing.yaml"),
                          "--nats-url", nats_url], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "cannot read" in bad.stderr
