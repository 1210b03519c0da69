"""The MCP Registry's published `server.json` examples (tests/data/mcp_registry) become `mcpServers` entries:
each package type runs at its pinned version, remotes keep their headers, required inputs are asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.registry_entries import ImportRefused, RegistryOrigin, choices_of, entry_for
from libs.common.settings.config_file import parse_config

pytestmark = pytest.mark.unit

SERVERS = Path(__file__).resolve().parents[1] / "data" / "mcp_registry" / "servers"


def document(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SERVERS / f"{name}.json").read_text())
    return loaded


def test_npm_package_runs_with_npx_at_its_version_and_its_arguments() -> None:
    entry, choice, kept = entry_for(document("with-package"), {"API_KEY": "k-1", "config_path": "/etc/w.json"})
    assert choice == "package:0"
    assert entry == {
        "command": "npx",
        "args": ["-y", "@modelcontextprotocol/server-weather@1.0.0", "/etc/w.json", "--port", "8080"],
        "env": {"API_KEY": "k-1"},
    }
    assert kept == {"config_path": "/etc/w.json"}  # the secret stays in the entry's env (sealed), not here
    assert ServerConfig.model_validate(entry).transport == "stdio"


def test_a_required_secret_left_out_is_named() -> None:
    with pytest.raises(ImportRefused, match=r"give a value for: API_KEY \(secret\)"):
        entry_for(document("with-package"), {"config_path": "/x"})


def test_pypi_package_runs_with_uvx_pinned_and_defaults_fill_optional_variables() -> None:
    entry, _, _ = entry_for(document("weather-mcp"), {"WEATHER_API_KEY": "w"})
    assert entry["command"] == "uvx"
    assert entry["args"] == ["weather-mcp-server==0.5.0"]
    assert entry["env"] == {"WEATHER_API_KEY": "w", "WEATHER_UNITS": "celsius"}


def test_oci_package_runs_with_docker_its_env_passed_by_name_and_its_choices_checked() -> None:
    values = {"db_type": "postgres", "database_name": "sales", "DB_USERNAME": "u", "DB_PASSWORD": "p"}
    entry, _, kept = entry_for(document("database-manager"), values)
    assert entry["command"] == "docker"
    assert entry["args"] == [
        "run", "-i", "--rm", "--network", "host", "-e", "DB_TYPE=postgres",
        "-e", "DB_USERNAME", "-e", "DB_PASSWORD", "-e", "SSL_MODE",
        "docker.io/example/database-manager-mcp:3.1.0", "--host", "localhost", "sales",
    ]  # fmt: skip
    assert "p" not in entry["args"]  # the password is only in env, which Bastion seals
    assert kept == {"db_type": "postgres", "database_name": "sales"}
    with pytest.raises(ImportRefused, match=r"db_type \(one of: postgres, mysql, mongodb, redis\)"):
        entry_for(document("database-manager"), values | {"db_type": "oracle"})


def test_remote_fills_its_url_variable_and_asks_for_its_required_header() -> None:
    with pytest.raises(ImportRefused, match="give a value for: Authorization"):
        entry_for(document("with-remote"), {})
    entry, choice, _ = entry_for(document("with-remote"), {"Authorization": "Bearer t", "host": "w.example.com"})
    assert (choice, entry) == (
        "remote:0",
        {"type": "http", "url": "https://w.example.com/mcp", "headers": {"Authorization": "Bearer t"}},
    )
    default_host, _, _ = entry_for(document("with-remote"), {"Authorization": "Bearer t"})
    assert default_host["url"] == "https://api.example.com/mcp"


def test_choices_list_remotes_then_stdio_packages_and_a_choice_not_offered_is_refused() -> None:
    assert choices_of(document("with-remote")) == ["remote:0"]
    assert choices_of(document("brave-search")) == ["package:0"]
    with pytest.raises(ImportRefused, match=r"has no 'remote:0'; choose one of: package:0"):
        entry_for(document("brave-search"), {"BRAVE_API_KEY": "b"}, "remote:0")


def test_a_package_served_over_http_only_is_refused_naming_its_transport() -> None:
    doc = document("brave-search")
    doc["packages"][0]["transport"] = {"type": "streamable-http", "url": "http://localhost:{port}/mcp"}
    with pytest.raises(ImportRefused, match=r"no remote and no stdio package.*streamable-http"):
        entry_for(doc, {})


def test_a_secret_that_would_land_on_the_command_line_is_refused() -> None:
    doc = document("with-package")
    doc["packages"][0]["packageArguments"][0]["isSecret"] = True
    with pytest.raises(ImportRefused, match=r"config_path.*a secret cannot go on a command line"):
        entry_for(doc, {"API_KEY": "k", "config_path": "hunter2"})


def test_the_origin_and_the_registries_are_configuration() -> None:
    config = parse_config(
        {
            "registries": {"local": "http://127.0.0.1:9000/"},
            "mcpServers": {
                "weather": {
                    "url": "https://api.example.com/mcp",
                    "registry": {"registry": "local", "server": "io.github.user/remote-weather", "version": "2.1.0"},
                }
            },
        }
    )
    assert config.registries == {"local": "http://127.0.0.1:9000"}
    assert config.mcp_servers["weather"].registry == RegistryOrigin(
        registry="local", server="io.github.user/remote-weather", version="2.1.0"
    )
    assert parse_config({}).registries == {"official": "https://registry.modelcontextprotocol.io"}
    with pytest.raises(ValueError, match="registry 'x': its URL is not an http"):
        parse_config({"registries": {"x": "ftp://x"}})


def test_a_runtime_hint_that_is_not_a_package_runner_is_refused() -> None:
    doc = document("with-package")
    doc["packages"][0]["runtimeHint"] = "sh"
    doc["packages"][0]["runtimeArguments"] = [
        {"type": "positional", "value": "-c"},
        {"type": "positional", "value": "id"},
    ]
    with pytest.raises(ImportRefused, match="runtimeHint 'sh' is not a package runner"):
        entry_for(doc, {"API_KEY": "k", "config_path": "/x"})


def test_an_input_is_given_by_its_value_hint_as_well_as_its_name() -> None:
    """A flag and an environment variable known by their `valueHint` get the value given by that hint,
    not their default; the hint and the name give the same input."""
    hinted = json.loads((SERVERS.parent / "bastion" / "value-hints.json").read_text())
    given = {"port": "9000", "log_level": "debug", "notes_dir": "/srv/notes", "NOTES_TOKEN": "t"}
    entry, _, kept = entry_for(hinted, given)
    assert entry["args"] == ["-y", "@example/notes-mcp@0.3.0", "--listen-port", "9000", "/srv/notes"]
    assert entry["env"] == {"NOTES_LOG_LEVEL": "debug", "NOTES_TOKEN": "t"}
    assert kept == {"--listen-port": "9000", "notes_dir": "/srv/notes"}
    names = {"--listen-port": "9001", "NOTES_LOG_LEVEL": "warn", "notes_dir": "/n", "NOTES_TOKEN": "t"}
    by_name, _, _ = entry_for(hinted, names)
    assert "9001" in by_name["args"] and by_name["env"]["NOTES_LOG_LEVEL"] == "warn"
    with pytest.raises(ImportRefused, match=r"--listen-port and port \(two values for one input\)"):
        entry_for(hinted, names | {"port": "9002"})


def test_a_value_naming_no_input_is_refused_with_the_names_it_takes() -> None:
    hinted = json.loads((SERVERS.parent / "bastion" / "value-hints.json").read_text())
    with pytest.raises(ImportRefused) as refused:
        entry_for(hinted, {"prot": "9000", "notes_dir": "/srv/notes", "NOTES_TOKEN": "t"})
    assert str(refused.value) == (
        "no input is named prot; the inputs it takes: NOTES_LOG_LEVEL or log_level, NOTES_TOKEN, "
        "--listen-port or port, notes_dir"
    )
    with pytest.raises(ImportRefused, match=r"no input is named WEATHER_API_KEY; .*: host, Authorization"):
        entry_for(document("with-remote"), {"Authorization": "Bearer t", "WEATHER_API_KEY": "w"})
    # an update carries the old version's values: those the new one no longer takes are left out
    entry, _, _ = entry_for(document("weather-mcp"), {}, carried={"WEATHER_API_KEY": "w", "GONE": "x"})
    assert entry["env"] == {"WEATHER_API_KEY": "w", "WEATHER_UNITS": "celsius"}
