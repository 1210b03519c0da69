"""`apply_config` against a real NATS: what lands in KV, what is removed, what never gets there."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from cli.apply import apply_config
from libs.common.bus.nats import kv_snapshot
from libs.common.contracts import subjects
from libs.common.contracts.config import BastionConfig, ConfigError, ServerConfig
from libs.common.contracts.keys import key_id
from libs.common.contracts.llm import ProviderRecord
from libs.common.contracts.llm_config import ProviderConfig
from libs.common.contracts.messages import KeyRecord, ServerRecord
from libs.common.runtime.sealing import Sealer, new_key
from libs.common.settings.config_file import load_config

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


def config(tmp_path: Path, text: str, name: str = "bastion.yaml") -> BastionConfig:
    path = tmp_path / name
    path.write_text(text)
    return load_config(path)


async def bucket(nc: NATS, name: str) -> KeyValue:
    return await nc.jetstream().key_value(name)


async def contents(nc: NATS, name: str) -> dict[str, bytes]:
    return {key: entry.value or b"" for key, entry in (await kv_snapshot(nc.jetstream(), name)).items()}


async def revisions(nc: NATS, name: str) -> dict[str, int]:
    return {key: entry.revision or 0 for key, entry in (await kv_snapshot(nc.jetstream(), name)).items()}


async def test_servers_and_keys_appear_without_secrets(nc: NATS, tmp_path: Path) -> None:
    await apply_config(nc, config(tmp_path, FULL))

    servers = await contents(nc, subjects.KV_SERVERS)
    assert set(servers) == {"echo", "remote"}
    echo = ServerRecord.model_validate_json(servers["echo"])
    assert echo.name == "echo" and echo.config.command == "python" and echo.config.env == {"MODE": "test"}
    assert echo.config.cwd is None, "no cwd: the server runs in its own folder, never the config file's"
    assert ServerRecord.model_validate_json(servers["remote"]).config.url == "https://mcp.example.com/mcp"

    keys = await contents(nc, subjects.KV_KEYS)
    assert set(keys) == {key_id(DEMO), key_id(OTHER)}
    other = KeyRecord.model_validate_json(keys[key_id(OTHER)])
    assert (other.id, other.name, other.grants, other.revoked) == (
        key_id(OTHER),
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
    runtime = KeyRecord(id=key_id(RUNTIME), name="made-by-hand", grants=["echo/echo"])
    await keys_kv.put(runtime.id, runtime.model_dump_json().encode())
    servers_kv = await bucket(nc, subjects.KV_SERVERS)
    added = ServerRecord(name="added-live", config=ServerConfig(url="http://127.0.0.1:9/mcp"))  # admin API style
    await servers_kv.put(added.name, added.model_dump_json().encode())

    await apply_config(nc, config(tmp_path, REDUCED))

    assert set(await contents(nc, subjects.KV_SERVERS)) == {"echo", "added-live"}, (
        "config servers removed, runtime server kept"
    )
    with pytest.raises(KeyNotFoundError):
        await servers_kv.get("remote")
    assert set(await contents(nc, subjects.KV_KEYS)) == {key_id(DEMO), key_id(RUNTIME)}, (
        "config keys removed, runtime key kept"
    )
    with pytest.raises(KeyNotFoundError):
        await keys_kv.get(key_id(OTHER))


async def test_apply_is_idempotent(nc: NATS, tmp_path: Path) -> None:
    cfg = config(tmp_path, FULL)
    await apply_config(nc, cfg)
    keys_kv = await bucket(nc, subjects.KV_KEYS)
    before = (await revisions(nc, subjects.KV_SERVERS), await revisions(nc, subjects.KV_KEYS))
    await apply_config(nc, config(tmp_path, FULL))
    assert (await revisions(nc, subjects.KV_SERVERS), await revisions(nc, subjects.KV_KEYS)) == before, (
        "nothing rewritten, no spurious updates"
    )

    changed = FULL.replace('tools: ["*"]', 'tools: ["echo/*"]')
    await apply_config(nc, config(tmp_path, changed))
    demo = KeyRecord.model_validate_json((await keys_kv.get(key_id(DEMO))).value)
    assert demo.grants == ["echo/*"]
    assert (await keys_kv.get(key_id(DEMO))).revision > before[1][key_id(DEMO)]


async def test_a_revocation_survives_reapplying(nc: NATS, tmp_path: Path) -> None:
    await apply_config(nc, config(tmp_path, FULL))
    keys_kv = await bucket(nc, subjects.KV_KEYS)
    record = KeyRecord.model_validate_json((await keys_kv.get(key_id(OTHER))).value)
    record.revoked = True
    await keys_kv.put(record.id, record.model_dump_json().encode())

    await apply_config(nc, config(tmp_path, FULL))
    again = KeyRecord.model_validate_json((await keys_kv.get(key_id(OTHER))).value)
    assert again.revoked and again.created_at == record.created_at


async def test_an_unset_key_env_writes_nothing(nc: NATS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_TEST_UNSET_KEY", raising=False)
    cfg = config(
        tmp_path, "mcpServers: {echo: {command: python}}\nkeys: [{name: ci, key_env: BASTION_TEST_UNSET_KEY}]\n"
    )
    with pytest.raises(ConfigError, match=r"keys\.ci\.key_env"):
        await apply_config(nc, cfg)
    with pytest.raises(Exception):  # noqa: B017 - the bucket was not even created
        await contents(nc, subjects.KV_SERVERS)


def test_config_apply_command_writes_kv(nats_url, tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "mcpServers:\n  s1: {url: 'http://127.0.0.1:9/mcp'}\n"
        "keys:\n  - {name: k, key: bk_apply_command_test_1234, tools: ['*']}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "cli", "config", "apply", str(cfg), "--nats-url", nats_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "1 server(s), 1 key(s)" in done.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "config",
            "apply",
            str(tmp_path / "missing.yaml"),
            "--nats-url",
            nats_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "cannot read" in bad.stderr


PROVIDER_SECRET = "sk-inline-provider-key-000000000"
WITH_PROVIDER = f"""
{FULL}
llm:
  providers:
    local:
      base_url: http://127.0.0.1:11434/v1
      api_key: {PROVIDER_SECRET}
      models: [llama3]
"""


async def test_providers_are_sealed_written_once_and_runtime_ones_stay(nc: NATS, tmp_path: Path) -> None:
    sealer = Sealer(new_key())
    await apply_config(nc, config(tmp_path, WITH_PROVIDER), sealer)
    stored = ProviderRecord.model_validate_json((await contents(nc, subjects.KV_LLM))["local"])
    assert stored.source == "config" and stored.config.models == ["llama3"]
    assert stored.config.api_key is not None and PROVIDER_SECRET not in stored.config.api_key
    assert sealer.open_value(stored.config.api_key) == PROVIDER_SECRET

    runtime = ProviderRecord(name="runtime", config=ProviderConfig(base_url="http://127.0.0.1:1/v1", models=["m"]))
    await (await bucket(nc, subjects.KV_LLM)).put("runtime", runtime.model_dump_json().encode())
    before = await revisions(nc, subjects.KV_LLM)
    await apply_config(nc, config(tmp_path, WITH_PROVIDER), sealer)
    assert await revisions(nc, subjects.KV_LLM) == before  # an unchanged file rewrites no provider

    await apply_config(nc, config(tmp_path, FULL), sealer)
    assert set(await contents(nc, subjects.KV_LLM)) == {"runtime"}  # the file's provider is gone, not the admin's
