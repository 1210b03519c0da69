"""The config file: every mistake names its field, file problems are one line, and no error echoes a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from libs.common.contracts.config import ConfigError
from libs.common.settings.config_file import load_config, parse_config
from tests.support.config_files import SECRET, _ci_key, _error, _servers, _write

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------- every invalid case names its field

STDIO = {"command": "npx"}
REMOTE = {"url": "https://example.com/mcp"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(_servers({"github": {}}), "mcpServers.github: needs 'command'", id="no-command-no-url"),
        pytest.param(
            _servers({"github": {"args": ["-y"], "env": {"A": "b"}}}),
            "mcpServers.github: needs 'command' (stdio server) or 'url'",
            id="args-but-no-command",
        ),
        pytest.param(_servers({"github": {**STDIO, **REMOTE}}), "mcpServers.github: give either 'command'", id="both"),
        pytest.param(
            _servers({"github": {"url": "ftp://example.com"}}),
            "mcpServers.github: 'url' must start with http:// or https://",
            id="bad-scheme",
        ),
        pytest.param(
            _servers({"github": {"url": "example.com/mcp"}}),
            "mcpServers.github: 'url' must start with http:// or https://",
            id="no-scheme",
        ),
        pytest.param(_servers({"github": {"url": "https://"}}), "mcpServers.github: 'url' has no host", id="no-host"),
        pytest.param(
            _servers({"events": {"type": "sse", "command": "npx"}}),
            "mcpServers.events: type 'sse' needs 'url'",
            id="sse-without-url",
        ),
        pytest.param(
            _servers({"api": {"type": "http", "command": "npx"}}),
            "mcpServers.api: type 'http' needs 'url'",
            id="http-without-url",
        ),
        pytest.param(
            _servers({"local": {"type": "stdio", **REMOTE}}),
            "mcpServers.local: type 'stdio' needs 'command'",
            id="stdio-without-command",
        ),
        pytest.param(
            _servers({"ws": {"type": "websocket", **REMOTE}}), "mcpServers.ws.type: Input should be", id="bad-type"
        ),
        pytest.param(
            _servers({"github": {**STDIO, "evn": {}}}),
            "mcpServers.github.evn: unknown key (did you mean 'env'?); allowed here: type, command, args, env",
            id="server-typo",
        ),
        pytest.param(
            _servers({"github": {**STDIO, "args": "-y"}}),
            "mcpServers.github.args: Input should be a valid list",
            id="args-not-a-list",
        ),
        pytest.param(
            _servers({"github": {**STDIO, "timeout": 0}}),
            "mcpServers.github.timeout: Input should be greater than 0",
            id="timeout",
        ),
        pytest.param(
            {"gateway": {"prot": 9000}}, "gateway.prot: unknown key (did you mean 'port'?)", id="gateway-typo"
        ),
        pytest.param({"gatway": {}}, "gatway: unknown key (did you mean 'gateway'?)", id="top-level-typo"),
        pytest.param({"mcpServer": {}}, "mcpServer: unknown key (did you mean 'mcpServers'?)", id="mcpServer-typo"),
        pytest.param(
            {"stack": {"nats_ulr": "x"}}, "stack.nats_ulr: unknown key (did you mean 'nats_url'?)", id="stack"
        ),
        pytest.param(
            _ci_key(key=SECRET, tool=["*"]),
            "keys[0] (name 'ci').tool: unknown key (did you mean 'tools'?)",
            id="key-typo",
        ),
        pytest.param(
            {"gateway": {"port": 70000}}, "gateway.port: Input should be less than or equal to 65535", id="port"
        ),
        pytest.param({"gateway": {"response_mode": "xml"}}, "gateway.response_mode: Input should be", id="mode"),
        pytest.param(_servers({"bad name": STDIO}), "mcpServers: server name #1 must start", id="space"),
        pytest.param(_servers({"-lead": STDIO}), "mcpServers: server name #1 must start", id="leading-dash"),
        pytest.param(_servers({"s" * 65: STDIO}), "mcpServers: server name #1 must start", id="too-long"),
        pytest.param(_servers({"github\n": STDIO}), "mcpServers: server name #1 must start", id="trailing-newline"),
        pytest.param({"mcpServers": ["github"]}, "mcpServers: Input should be a valid dictionary", id="servers-list"),
        pytest.param({"mcpServers": {"github": "npx"}}, "mcpServers.github: Input should be", id="server-string"),
        pytest.param(
            {"keys": [{"name": "ci", "key": SECRET}, {"name": "ci", "key": SECRET[::-1]}]},
            "keys: key name 'ci' is used twice",
            id="duplicate-key-names",
        ),
        pytest.param(
            _ci_key(tools=["*"]), "keys[0] (name 'ci'): needs one of 'key', 'key_env' or 'key_sha256'", id="no-secret"
        ),
        pytest.param(
            _ci_key(key=SECRET, key_env="CI_KEY"),
            "keys[0] (name 'ci'): give only one of 'key', 'key_env' or 'key_sha256', not 'key' and 'key_env'",
            id="two-secrets",
        ),
        pytest.param(
            _ci_key(key="short-key"), "keys[0] (name 'ci'): 'key' must be at least 16 characters", id="short-key"
        ),
        pytest.param(
            _ci_key(key_sha256="ABC"), "keys[0] (name 'ci').key_sha256: String should match pattern", id="bad-sha256"
        ),
        pytest.param(
            _ci_key(key_env="CI KEY"), "keys[0] (name 'ci').key_env: String should match pattern", id="bad-env-name"
        ),
        pytest.param({"keys": [{"key": SECRET}]}, "keys[0].name: Field required", id="key-without-name"),
        pytest.param({"keys": {"ci": SECRET}}, "keys: Input should be a valid list", id="keys-mapping"),
        pytest.param(
            {"stack": {"nats_threads": -1}},
            "stack.nats_threads: Input should be greater than or equal to 0",
            id="negative-nats-threads",
        ),
        pytest.param(
            {"stack": {"nats_threads": "two"}}, "stack.nats_threads: Input should be a valid integer", id="nats-threads"
        ),
    ],
)
def test_invalid_config_names_the_field(raw: Any, expected: str) -> None:
    message = _error(raw)
    assert message.startswith(f"config: {expected}"), message
    assert "\n" not in message.replace("\\n", "")


@pytest.mark.parametrize("grant", ["github", "github/", "/create_issue", "github/issues/create", "", "**"])
def test_malformed_grant_names_the_field_not_the_grant(grant: str) -> None:
    message = _error(_ci_key(key=SECRET, tools=["github/*", grant]))
    assert message == (
        "config: keys[0] (name 'ci').tools: a grant must look like 'server/tool', 'server/prompt:name' "
        "or 'server/resource:uri' (wildcards allowed) or '*'"
    )


@pytest.mark.parametrize(
    "grant",
    [
        "*",
        "github/*",
        "*/list_*",
        "github/create_issue",
        "git*/get_*",
        "docs/prompt:review_*",
        "fs/resource:file:///srv/*",
    ],
)
def test_well_formed_grants(grant: str) -> None:
    assert parse_config(_ci_key(key=SECRET, tools=[grant])).keys[0].tools == [grant]


@pytest.mark.parametrize(
    ("server", "field"),
    [
        ({"command": "npx", "env": {"GITHUB_TOKEN": "${GH_TOKEN_UNSET}"}}, "mcpServers.github.env.GITHUB_TOKEN"),
        ({"command": "npx", "args": ["-y", "--token=${GH_TOKEN_UNSET}"]}, "mcpServers.github.args[1]"),
        ({"url": "https://${GH_TOKEN_UNSET}/mcp"}, "mcpServers.github.url"),
        (
            {"url": "https://x/mcp", "headers": {"Authorization": "Bearer ${env:GH_TOKEN_UNSET}"}},
            "mcpServers.github.headers.Authorization",
        ),
    ],
)
def test_unset_environment_variable_names_the_field_and_the_variable(
    server: dict[str, Any], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GH_TOKEN_UNSET", raising=False)
    assert _error(_servers({"github": server})) == f"config: {field}: environment variable 'GH_TOKEN_UNSET' is not set"


def test_several_problems_are_all_reported_one_per_line() -> None:
    message = _error({"gateway": {"port": -1, "host": 3}, "stack": {"oops": 1}})
    first, *problems = message.splitlines()
    assert first == "config: 3 problems:"
    assert [p.split(":", 1)[0] for p in problems] == ["  - gateway.host", "  - gateway.port", "  - stack.oops"]


@pytest.mark.parametrize("raw", [[], "mcpServers", None, 42, [{"mcpServers": {}}]])
def test_top_level_must_be_a_mapping(raw: Any) -> None:
    assert _error(raw) == "config: the top level must be a mapping with an 'mcpServers' section"


# --------------------------------------------------------------------------- file problems


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the configuration file \(No such file"):
        load_config(path)


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bastion.yaml"
    path.write_bytes(b"mcpServers:\n  caf\xe9: {command: npx}\n")
    with pytest.raises(ConfigError, match=r"bastion\.yaml: cannot read the configuration file \(not UTF-8 text\)"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mcpServers:\n  github: {command: npx\n", r"not valid YAML: .* at line \d+, column \d+"),
        ("mcpServers:\n\tgithub: {}\n", r"not valid YAML: found character '\\t' .* at line 2, column 1"),
        ("mcpServers: [unclosed\n", r"not valid YAML: .*line \d+"),
        ("stack:\n  data_dir: 2024-02-30\n", r"not valid YAML: day is out of range for month"),
        (
            "mcpServers:\n  a: {command: x}\n  a: {command: y}\n",
            r"not valid YAML: duplicate key 'a' at line 3, column 3",
        ),
        ("mcpServers: {a: {command: x, command: y}}\n", r"not valid YAML: duplicate key 'command' at line 1"),
    ],
)
def test_invalid_yaml(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, "bastion.yaml", text)
    with pytest.raises(ConfigError, match=rf"bastion\.yaml: {expected}") as info:
        load_config(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"mcpServers": {"github": {"command": "npx",}}}', r"not valid JSON: Expecting property name .* line 1"),
        ("mcpServers:\n  github: {}\n", r"not valid JSON: Expecting value: line 1 column 1"),
        ("", r"not valid JSON: Expecting value"),
        ('{"mcpServers": {"a": {"command": "x"}, "a": {"url": "https://y"}}}', r"not valid JSON: duplicate key 'a'"),
    ],
)
def test_invalid_json(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=rf"mcp\.json: {expected}"):
        load_config(_write(tmp_path, "mcp.json", text))


def test_empty_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bastion\.yaml: the top level must be a mapping"):
        load_config(_write(tmp_path, "bastion.yaml", "# nothing yet\n"))


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "bastion.yaml", "mcpServers:\n  github: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (
        str(info.value)
        == f"{path}: mcpServers.github: needs 'command' (stdio server) or 'url' (streamable HTTP / SSE server)"
    )


# --------------------------------------------------------------------------- secrets never leak


@pytest.mark.parametrize(
    "raw",
    [
        _ci_key(key=SECRET, key_env="CI_KEY"),
        _ci_key(key=SECRET, key_sha256=SECRET),
        _ci_key(key=SECRET, secret=SECRET),
        {"keys": [{"name": "ci", "key": SECRET}, {"name": "ci", "key": SECRET}]},
        _ci_key(key=SECRET, tools=["bad"]),
        _ci_key(key=[SECRET]),
        _ci_key(key={SECRET: SECRET}),
        _ci_key(key_sha256=SECRET),
        {"keys": [{"name": "", "key": SECRET}]},
        {"keys": [SECRET]},
        _ci_key(key=SECRET[:10]),
        {"mcpServers": {"x": {"url": f"ftp://example.com/mcp?token={SECRET}"}}},
        {"mcpServers": {"x": {"url": f"https:///mcp?token={SECRET}"}}},
        {"mcpServers": {"x": {"command": "npx", "url": f"https://example.com/?k={SECRET}"}}},
        {"gateway": {"port": SECRET}},
        {"stack": {"nats_url": [SECRET]}},
    ],
)
def test_error_messages_never_contain_a_secret(raw: Any) -> None:
    message = _error(raw)
    assert SECRET not in message
    assert SECRET[:10] not in message


@pytest.mark.parametrize(
    "text",
    [
        f"keys:\n  - name: ci\n    key: {SECRET}: [\n",
        f"keys:\n  - name: ci\n    key: '{SECRET}\n",
        f"keys:\n  - name: ci\n    key: {SECRET}\n   bad-indent: 1\n",
        f"keys:\n  - {{name: ci, key: {SECRET}, key: {SECRET}}}\n",
    ],
)
def test_yaml_syntax_errors_do_not_echo_the_line_holding_a_secret(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "bastion.yaml", text))
    assert "not valid YAML" in str(info.value)
    assert SECRET not in str(info.value)


def test_json_syntax_errors_do_not_echo_a_secret(tmp_path: Path) -> None:
    text = f'{{"keys": [{{"name": "ci", "key": "{SECRET}" "tools": []}}]}}'
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "bastion.json", text))
    assert SECRET not in str(info.value)


def test_repr_of_a_loaded_config_hides_the_secret() -> None:
    config = parse_config(_ci_key(key=SECRET))
    assert SECRET not in repr(config)
    assert SECRET not in str(config.keys[0])


# --------------------------------------------------------------------------- no message repeats what it refused

REFUSED = "sk-proj-refused-by-the-check-0123456789"


@pytest.mark.parametrize(
    "raw",
    [
        _servers({"a": {"url": "https://x.example", "allow_private_hosts": [f"a/{REFUSED}"]}}),
        _servers({"a": {"url": f"{REFUSED}:x"}}),
        _servers({"a": {"openapi": {"document": "d", "auth": {"type": REFUSED}}}}),
        _servers({"a": {"openapi": {"document": "d", "base_url": f"{REFUSED}://x"}}}),
        _servers({"a": {"command": "x", "sandbox": {"read": [f"\x00{REFUSED}"]}}}),
        _servers({"a/" + REFUSED: {"url": "https://x.example"}}),
        {"registries": {"r": REFUSED}},
        {"keys": [{"name": "k", "key": "x", "tools": [REFUSED]}]},
        {"guardrails": {"rules": [{"detector": "deny", "patterns": [f"({REFUSED}"]}]}},
    ],
    ids=["host", "scheme", "auth-tag", "base-url", "sandbox-path", "server-name", "registry", "grant", "pattern"],
)
def test_no_message_repeats_the_value_it_refused(raw: dict[str, Any]) -> None:
    """`bastion config check` and the admin API's import say the field and the rule, never the value."""
    with pytest.raises(ConfigError) as refused:
        parse_config(raw)
    assert REFUSED not in str(refused.value), str(refused.value)
