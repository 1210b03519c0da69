"""The config file: real-world `mcpServers` blocks from each client load, and how keys, cwd and transports resolve."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from libs.common.contracts.config import BastionConfig, ConfigError, KeyConfig, ServerConfig
from libs.common.settings.config_file import key_hash, load_config, parse_config
from tests.support.config_files import SECRET, _servers, _write

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------- what each client writes

CLAUDE_DESKTOP = """{
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop", "/Users/me/Downloads"]
    },
    "github": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github"],
      "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_exampleexampleexample"}
    },
    "time": {"command": "uvx", "args": ["mcp-server-time", "--local-timezone=Europe/Paris"]},
    "sqlite": {"command": "uvx", "args": ["mcp-server-sqlite", "--db-path", "/Users/me/test.db"]}
  }
}
"""


def test_claude_desktop_json(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "claude_desktop_config.json", CLAUDE_DESKTOP))
    assert list(config.mcp_servers) == ["filesystem", "github", "time", "sqlite"]
    github = config.mcp_servers["github"]
    assert github.transport == "stdio"
    assert (github.command, github.args) == ("npx", ["-y", "@modelcontextprotocol/server-github"])
    assert github.env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_exampleexampleexample"}
    assert config.mcp_servers["time"].args == ["mcp-server-time", "--local-timezone=Europe/Paris"]
    assert all(server.cwd is None for server in config.mcp_servers.values())  # each in its own folder
    assert config.keys == []
    assert config.gateway.port == 8420


def test_cursor_json_with_url_headers_and_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTEXT7_API_KEY", "ctx7-abc")
    cursor = {
        "mcpServers": {
            "linear": {"url": "https://mcp.linear.app/sse"},
            "context7": {
                "url": "https://mcp.context7.com/mcp",
                "headers": {"CONTEXT7_API_KEY": "${env:CONTEXT7_API_KEY}"},
            },
            "playwright": {"command": "npx", "args": ["@playwright/mcp@latest"]},
        }
    }
    config = load_config(_write(tmp_path, ".cursor/mcp.json", cursor))
    assert config.mcp_servers["linear"].transport == "http"
    assert config.mcp_servers["linear"].cwd is None
    assert config.mcp_servers["context7"].headers == {"CONTEXT7_API_KEY": "ctx7-abc"}
    assert config.mcp_servers["playwright"].cwd is None  # its own working folder, not the config's


def test_claude_code_mcp_json_with_types_and_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_BASE_URL", "https://api.example.com")
    monkeypatch.setenv("API_KEY", "key-123")
    monkeypatch.setenv("DB_PATH", "/data/app.db")
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.delenv("SSE_HOST", raising=False)
    claude_code = {
        "mcpServers": {
            "api-server": {
                "type": "http",
                "url": "${API_BASE_URL:-https://fallback.example.com}/mcp",
                "headers": {"Authorization": "Bearer ${API_KEY}", "X-Empty": "[${EMPTY:-unused}]"},
            },
            "events": {"type": "sse", "url": "https://${SSE_HOST:-events.example.com}/sse"},
            "sqlite": {
                "type": "stdio",
                "command": "uvx",
                "args": ["mcp-server-sqlite", "--db-path", "${DB_PATH}"],
                "env": {"LOG_LEVEL": "${LOG_LEVEL:-info}", "LITERAL": "$API_KEY and ${not a ref}"},
            },
        }
    }
    config = load_config(_write(tmp_path, ".mcp.json", claude_code))
    api = config.mcp_servers["api-server"]
    assert (api.transport, api.url) == ("http", "https://api.example.com/mcp")
    assert api.headers == {"Authorization": "Bearer key-123", "X-Empty": "[]"}  # set-but-empty wins
    events = config.mcp_servers["events"]
    assert (events.transport, events.url) == ("sse", "https://events.example.com/sse")
    sqlite = config.mcp_servers["sqlite"]
    assert sqlite.transport == "stdio"
    assert sqlite.args == ["mcp-server-sqlite", "--db-path", "/data/app.db"]
    assert sqlite.env == {"LOG_LEVEL": "info", "LITERAL": "$API_KEY and ${not a ref}"}


def test_cline_extras_are_tolerated(tmp_path: Path) -> None:
    cline = {
        "mcpServers": {
            "github": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-github"],
                "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_x"},
                "autoApprove": ["list_issues"],
                "alwaysAllow": [],
                "disabled": True,
                "timeout": 30,
                "transportType": "stdio",
            },
            "remote-sse": {"url": "https://example.com/sse", "transportType": "sse", "autoApprove": []},
            "remote-http": {"url": "https://example.com/mcp", "type": "streamableHttp", "disabled": False},
        }
    }
    config = load_config(_write(tmp_path, "cline_mcp_settings.json", cline))
    github = config.mcp_servers["github"]
    assert (github.disabled, github.timeout, github.transport) == (True, 30.0, "stdio")
    assert config.mcp_servers["remote-sse"].transport == "sse"  # Cline's legacy transportType
    assert config.mcp_servers["remote-http"].transport == "http"


BASTION_YAML = """\
# Bastion's own file: the mcpServers block plus gateway, stack and keys
mcpServers:
  github:
    command: npx
    args: [-y, "@modelcontextprotocol/server-github"]
    env:
      GITHUB_PERSONAL_ACCESS_TOKEN: ghp_example
    tools: ["get_*", list_issues]
    timeout: 15
  docs:
    type: http
    url: https://docs.example.com/mcp
gateway:
  host: 0.0.0.0
  port: 9000
  response_mode: sse
stack:
  nats_url: nats://nats:4222
keys:
  - name: ci
    key_env: BASTION_CI_KEY
    tools: ["github/get_*", "docs/*"]
  - name: admin
    key_sha256: %s
    tools: ["*"]
"""


def test_bastion_yaml_with_every_section(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"whatever").hexdigest()
    config = load_config(_write(tmp_path, "bastion.yaml", BASTION_YAML % digest))
    assert config.mcp_servers["github"].tools == ["get_*", "list_issues"]
    assert config.mcp_servers["github"].timeout == 15.0
    assert config.mcp_servers["docs"].transport == "http"
    assert (config.gateway.host, config.gateway.port, config.gateway.response_mode) == ("0.0.0.0", 9000, "sse")
    assert config.stack.nats_url == "nats://nats:4222"
    assert config.stack.redis_url is None
    assert [key.name for key in config.keys] == ["ci", "admin"]
    assert config.keys[0].tools == ["github/get_*", "docs/*"]
    assert key_hash(config.keys[1]) == digest


def test_yaml_and_json_files_give_the_same_config(tmp_path: Path) -> None:
    document = yaml.safe_load(BASTION_YAML % hashlib.sha256(b"x").hexdigest())
    from_yaml = load_config(_write(tmp_path, "a/bastion.yml", document))
    from_json = load_config(_write(tmp_path, "b/bastion.json", document))
    from_yaml_in_json_syntax = load_config(_write(tmp_path, "a/bastion.conf", json.dumps(document)))
    dump = from_yaml.model_dump(exclude={"mcp_servers": {"__all__": {"cwd"}}})
    assert from_json.model_dump(exclude={"mcp_servers": {"__all__": {"cwd"}}}) == dump
    assert from_yaml_in_json_syntax.model_dump() == from_yaml.model_dump()


def test_unquoted_yaml_scalars_in_args_env_and_headers_become_strings(tmp_path: Path) -> None:
    text = """\
mcpServers:
  local:
    command: my-server
    args: [--port, 8080, --verbose, true, --ratio, 0.5]
    env: {PORT: 8080, DEBUG: false}
  remote:
    url: https://example.com/mcp
    headers: {X-Retries: 3}
"""
    config = load_config(_write(tmp_path, "bastion.yaml", text))
    assert config.mcp_servers["local"].args == ["--port", "8080", "--verbose", "true", "--ratio", "0.5"]
    assert config.mcp_servers["local"].env == {"PORT": "8080", "DEBUG": "false"}
    assert config.mcp_servers["remote"].headers == {"X-Retries": "3"}


def test_json_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_bytes(b"\xef\xbb\xbf" + CLAUDE_DESKTOP.encode())
    assert "github" in load_config(path).mcp_servers


def test_yaml_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    """Duplicate-key detection must not reject a merged key that the mapping overrides."""
    text = """\
mcpServers:
  one: &defaults {command: npx, args: [one], timeout: 10}
  two: {<<: *defaults, args: [two], timeout: 20}
"""
    config = load_config(_write(tmp_path, "bastion.yaml", text))
    two = config.mcp_servers["two"]
    assert (two.command, two.args, two.timeout) == ("npx", ["two"], 20.0)


def test_the_python_field_name_mcp_servers_is_expanded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_TEST_UNSET", raising=False)
    config = parse_config({"mcp_servers": {"a": {"command": "${BASTION_TEST_UNSET:-npx}"}}})
    assert config.mcp_servers["a"].command == "npx"


def test_an_empty_mcp_servers_block_is_valid() -> None:
    assert parse_config({}).mcp_servers == {}
    assert parse_config({"mcpServers": {}}).mcp_servers == {}


# --------------------------------------------------------------------------- cwd, keys, transport


def test_relative_cwd_resolves_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)  # the process cwd must not matter
    folder = tmp_path / "project" / "conf"
    servers = {
        "relative": {"command": "python", "args": ["server.py"], "cwd": "servers/one"},
        "parent": {"command": "python", "cwd": "../tools"},
        "absolute": {"command": "python", "cwd": "/opt/mcp"},
        "home": {"command": "python", "cwd": "~/mcp"},
        "none": {"command": "python"},
        "remote": {"url": "https://example.com/mcp"},
    }
    _write(folder, "bastion.yaml", {"mcpServers": servers})
    config = load_config(Path("..") / "project" / "conf" / "bastion.yaml")
    got = {name: server.cwd for name, server in config.mcp_servers.items()}
    assert got == {
        "relative": str((folder / "servers" / "one").resolve()),
        "parent": str((tmp_path / "project" / "tools").resolve()),
        "absolute": "/opt/mcp",
        "home": str((home / "mcp").resolve()),
        "none": None,  # its own working folder, never the config's (which its box would grant)
        "remote": None,
    }


def test_parse_config_leaves_cwd_alone() -> None:
    config = parse_config(_servers({"a": {"command": "python", "cwd": "rel"}}))
    assert config.mcp_servers["a"].cwd == "rel"


def test_key_hash_is_the_sha256_of_the_secret() -> None:
    key = parse_config({"keys": [{"name": "ci", "key": SECRET}]}).keys[0]
    assert key_hash(key) == hashlib.sha256(SECRET.encode()).hexdigest()


def test_key_env_reads_the_environment_when_hashed(monkeypatch: pytest.MonkeyPatch) -> None:
    key = parse_config({"keys": [{"name": "ci", "key_env": "BASTION_TEST_CI_KEY"}]}).keys[0]
    monkeypatch.setenv("BASTION_TEST_CI_KEY", SECRET)
    assert key_hash(key) == hashlib.sha256(SECRET.encode()).hexdigest()
    monkeypatch.setenv("BASTION_TEST_CI_KEY", SECRET[::-1])
    assert key_hash(key) == hashlib.sha256(SECRET[::-1].encode()).hexdigest()


@pytest.mark.parametrize("value", [None, ""])
def test_key_env_not_set_names_the_field_and_the_variable(value: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv("BASTION_TEST_CI_KEY", raising=False)
    else:
        monkeypatch.setenv("BASTION_TEST_CI_KEY", value)
    key = KeyConfig(name="ci", key_env="BASTION_TEST_CI_KEY")
    with pytest.raises(ConfigError) as info:
        key_hash(key)
    assert str(info.value) == "keys.ci.key_env: environment variable 'BASTION_TEST_CI_KEY' is not set"


def test_key_sha256_is_used_as_is() -> None:
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    assert key_hash(KeyConfig(name="ci", key_sha256=digest)) == digest


@pytest.mark.parametrize(
    ("server", "transport"),
    [
        ({"command": "npx"}, "stdio"),
        ({"type": "stdio", "command": "npx"}, "stdio"),
        ({"command": "npx", "transportType": "sse"}, "stdio"),  # Cline ignores it for commands, so do we
        ({"url": "https://x/mcp"}, "http"),
        ({"type": "http", "url": "https://x/mcp"}, "http"),
        ({"type": "streamable-http", "url": "https://x/mcp"}, "http"),
        ({"type": "streamableHttp", "url": "https://x/mcp"}, "http"),
        ({"type": "sse", "url": "http://localhost:8000/sse"}, "sse"),
        ({"transportType": "sse", "url": "https://x/sse"}, "sse"),
        ({"transportType": "http", "url": "https://x/mcp"}, "http"),
        ({"type": "http", "transportType": "sse", "url": "https://x/mcp"}, "http"),  # `type` wins
        ({"url": "HTTPS://X/mcp"}, "http"),
    ],
)
def test_server_transport(server: dict[str, Any], transport: str) -> None:
    assert ServerConfig.model_validate(server).transport == transport
    assert parse_config(_servers({"s": server})).mcp_servers["s"].transport == transport


def test_bastion_config_defaults() -> None:
    config = BastionConfig()
    assert (config.gateway.host, config.gateway.port, config.gateway.response_mode) == ("127.0.0.1", 8420, "json")
    assert config.stack.data_dir == ".bastion"
    assert config.stack.nats_threads == 1  # the embedded nats-server's GOMAXPROCS (docs/configuration.md)
    assert config.mcp_servers == {}
    assert config.keys == []
