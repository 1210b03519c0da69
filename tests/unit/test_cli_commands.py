"""The `bastion` commands that must fail (or succeed) before anything is started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli.main import app
from cli.ports import free_port, free_ports
from cli.stackfile import write_stack
from tests.support.processes import fake_bastion_up

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEMO_SECRET = "bk_demo_local_only_change_me_0000"

runner = CliRunner()


def children() -> set[int]:
    """Our direct child processes, from /proc."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == me:
                    found.add(int(entry))
            except OSError:
                continue
    return found


def port_is_free(port: int) -> bool:
    try:
        socket.create_server(("127.0.0.1", port)).close()
    except OSError:
        return False
    return True


BAD_CONFIG = """
mcpServers:
  github:
    url: ftp://example.com/mcp
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ("BASTION_NATS_URL", "BASTION_REDIS_URL", "BASTION_CLICKHOUSE_URL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


# ------------------------------------------------------------------ config check


def test_config_check_summarizes_the_example_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["config", "check", str(EXAMPLES / "bastion.yaml")])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "is valid" in out
    assert "echo" in out and "notes" in out and "stdio" in out
    assert "demo" in out and "1 grant" in out
    assert "readonly" in out and "2 grants" in out
    assert "bk_" not in out, "a key secret must never be printed"


def test_config_check_accepts_the_pure_mcpservers_json() -> None:
    result = runner.invoke(app, ["config", "check", str(EXAMPLES / "claude_desktop_style.json")])
    assert result.exit_code == 0, result.output
    assert "echo" in result.stdout and "notes" in result.stdout


def test_config_check_masks_upstream_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "mcpServers:\n"
        "  gh:\n    command: npx\n    args: [server, --token, hunter2hunter2, --api-key=s3cr3t]\n"
        "    env: {GITHUB_TOKEN: ghp_topsecret}\n"
        "  remote:\n    url: https://user:pw@mcp.example.com/mcp?token=abc\n    headers: {Authorization: Bearer xyz}\n"
    )
    result = runner.invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    for secret in ("hunter2hunter2", "s3cr3t", "ghp_topsecret", "pw@", "token=abc", "Bearer xyz"):
        assert secret not in result.output
    assert "https://mcp.example.com/mcp" in result.stdout


def test_config_check_warns_of_a_command_not_found_and_stays_valid(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "mcpServers:\n"
        "  gone:\n    command: bastion-test-no-such-command\n"
        "  local:\n    command: ./missing-server.sh\n"
        f"  fine:\n    command: {sys.executable}\n"
        "  elsewhere:\n    command: python3\n    env: {PATH: /nonexistent-bin}\n"
    )
    result = runner.invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output  # valid: the command may be installed before `bastion up`
    out = " ".join(result.stdout.split())
    assert "warning: server 'gone': command not found on PATH: bastion-test-no-such-command" in out
    assert "warning: server 'local': command not found: ./missing-server.sh" in out
    assert "warning: server 'elsewhere': command not found on PATH: python3" in out  # its own env's PATH
    assert "'fine'" not in out


def test_the_up_banner_marks_a_server_that_cannot_start_or_that_ingress_reports_down() -> None:
    from cli.summary import banner_servers
    from libs.common.settings.config_file import parse_config

    config = parse_config(
        {
            "mcpServers": {
                "gone": {"command": "bastion-test-no-such-command"},
                "ok": {"command": sys.executable},
                "remote": {"url": "https://mcp.example.com/mcp"},
                "off": {"command": "bastion-test-no-such-command", "disabled": True},
            }
        }
    )
    shown = banner_servers(config, down=["remote"])
    assert shown == (
        "gone (stdio, [red]unavailable: command not found on PATH: bastion-test-no-such-command[/]), ok (stdio), "
        "remote (http, [red]unavailable: see `bastion servers list`[/]), off (stdio, disabled)"
    )
    starting = banner_servers(config, down=[], starting=["ok", "gone"])  # a missing command says why
    assert starting.startswith("gone (stdio, [red]unavailable: command not found")
    assert "ok (stdio, [yellow]still starting: not listed yet[/])" in starting


def test_config_check_rejects_a_bad_file_naming_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(BAD_CONFIG)
    result = runner.invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 2
    assert "mcpServers.github" in result.stderr and "url" in result.stderr
    assert result.stdout == ""


POLICIES = """mcpServers: {}
policies: |
  @id("refund-above-100")
  @reason("refunds above 100 need a person")
  @approval("finance")
  forbid (principal, action, resource == Tool::"billing/refund")
  when { context.arguments.amount > 100 };

  @id("no-deletes")
  forbid (principal, action, resource == Tool::"files/delete");
"""


def test_config_check_says_which_policies_it_compiled(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(POLICIES)
    result = runner.invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    out = [" ".join(line.split()) for line in result.stdout.splitlines()]
    at = out.index(f"policies (2 Cedar, from {cfg}), all compile:")
    assert out[at + 1 : at + 3] == [
        "refund-above-100 line 3: approval by finance, decided per call (refunds above 100 need a person)",
        "no-deletes line 9: forbid",
    ]  # lines of the file, where each policy starts
    cfg.write_text("mcpServers: {}\n")
    none = runner.invoke(app, ["config", "check", str(cfg)])
    assert "policies: none in this file" in none.stdout


def test_config_check_names_the_files_line_of_a_policy_that_does_not_compile(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        POLICIES.replace(
            'forbid (principal, action, resource == Tool::"files', 'permit (principal, action, resource == Tool::"files'
        )
    )
    result = runner.invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 2 and result.stdout == ""
    assert (
        f"{cfg}: policies: the policy starting at line 9 does not compile: policy 'no-deletes' is a permit"
        in result.stderr
    )
    as_json = tmp_path / "c.json"  # a JSON string keeps no lines of the file: the text's own line is named
    as_json.write_text(
        '{"mcpServers": {}, "policies": "@id(\\"x\\")\\nforbid (principal, action, resource) when { };"}'
    )
    result = runner.invoke(app, ["config", "check", str(as_json)])
    assert result.exit_code == 2
    assert "the policy starting at line 1 of the policies' text does not compile" in result.stderr


def test_config_check_rejects_an_unset_key_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_TEST_UNSET_KEY", raising=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mcpServers: {}\nkeys:\n  - name: ci\n    key_env: BASTION_TEST_UNSET_KEY\n    tools: ['*']\n")
    result = runner.invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 2
    assert "keys.ci.key_env" in result.stderr and "BASTION_TEST_UNSET_KEY" in result.stderr


def test_config_check_rejects_two_keys_with_one_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"mcpServers: {{}}\nkeys:\n  - {{name: a, key: {DEMO_SECRET}}}\n  - {{name: b, key: {DEMO_SECRET}}}\n"
    )
    result = runner.invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 2
    assert "keys.b" in result.stderr and DEMO_SECRET not in result.output


def test_config_check_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "cannot read" in result.stderr


def test_metrics_ports_are_distinct_and_never_one_spoken_for() -> None:
    """`bastion up` picks the services' metrics ports at once, skipping the gateway's and the admin
    API's: those read free until their services bind them, and a metrics server that took the
    gateway's port left ingress restarting forever (address already in use)."""
    spoken_for = set(free_ports(40))  # just released: the likeliest to be handed out again
    ports = free_ports(40, taken=spoken_for)
    assert len(set(ports)) == 40 and not spoken_for & set(ports)


# ------------------------------------------------------------------ up: fail before starting anything


def test_up_with_an_invalid_config_exits_2_and_starts_nothing(in_tmp: Path) -> None:
    cfg = in_tmp / "bad.yaml"
    cfg.write_text(BAD_CONFIG)
    port = free_port()
    before = children()
    result = runner.invoke(app, ["up", "--config", str(cfg), "--port", str(port)])
    assert result.exit_code == 2
    assert "mcpServers.github" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, "one line: the ConfigError message"
    assert children() == before, "no process started"
    assert port_is_free(port), "nothing listens"
    assert not (in_tmp / ".bastion").exists(), "no data written"


def test_up_with_an_unset_key_env_exits_2_and_starts_nothing(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_TEST_UNSET_KEY", raising=False)
    cfg = in_tmp / "c.yaml"
    cfg.write_text("mcpServers: {}\nkeys:\n  - name: ci\n    key_env: BASTION_TEST_UNSET_KEY\n")
    before = children()
    result = runner.invoke(app, ["up", "--config", str(cfg), "--port", str(free_port())])
    assert result.exit_code == 2 and "keys.ci.key_env" in result.stderr
    assert children() == before and not (in_tmp / ".bastion").exists()


def test_up_fails_fast_when_the_port_is_taken(in_tmp: Path) -> None:
    cfg = in_tmp / "ok.yaml"
    cfg.write_text("mcpServers: {}\n")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        before = children()
        result = runner.invoke(app, ["up", "--config", str(cfg), "--port", str(port)])
    assert result.exit_code == 1
    assert f"127.0.0.1:{port}" in result.stderr and "already in use" in result.stderr
    assert children() == before and not (in_tmp / ".bastion").exists()


def test_up_refuses_a_data_dir_another_stack_runs_from(in_tmp: Path) -> None:
    cfg = in_tmp / "ok.yaml"
    cfg.write_text("mcpServers: {}\n")
    data_dir = in_tmp / "data"
    data_dir.mkdir()
    other = fake_bastion_up()
    try:
        write_stack(data_dir, {"pid": other.pid, "mcp_url": "http://127.0.0.1:1/mcp", "nats_url": "nats://x:1"})
        before = children()
        result = runner.invoke(
            app, ["up", "--config", str(cfg), "--port", str(free_port()), "--data-dir", str(data_dir)]
        )
        assert result.exit_code == 1
        assert "already running" in result.stderr and str(other.pid) in result.stderr
        assert children() == before
    finally:
        other.kill()
        other.wait()


# ------------------------------------------------------------------ other commands


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and result.stdout.startswith("bastion ")


def test_audit_tail_without_a_stack_says_what_to_do(in_tmp: Path) -> None:
    result = runner.invoke(app, ["audit", "tail"])
    assert result.exit_code == 1
    assert "bastion up" in result.stderr and "--nats-url" in result.stderr


def test_audit_tail_with_a_stale_stack_file(in_tmp: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (in_tmp / ".bastion").mkdir()
    write_stack(in_tmp / ".bastion", {"pid": dead.pid, "nats_url": "nats://127.0.0.1:1"})
    result = runner.invoke(app, ["audit", "tail"])
    assert result.exit_code == 1 and "stale" in result.stderr


@pytest.mark.parametrize(
    "command",
    [[], ["keys"], ["keys", "list"], ["groups", "delete"], ["audit", "tail"], ["config", "check"], ["up"]],
    ids=lambda c: " ".join(c) or "bastion",
)
def test_help_shows_no_type_beside_flags(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output and "<bool>" not in result.output


def test_every_command_says_what_it_does() -> None:
    """Commands made by a factory (delete, remove, list of each entity) show their summary too."""
    missing: list[str] = []
    groups: list[tuple[str, Any]] = [("", typer.main.get_command(app))]
    while groups:
        path, cmd = groups.pop()
        if hasattr(cmd, "commands"):
            groups.extend((f"{path} {name}".strip(), sub) for name, sub in cmd.commands.items())
        elif not (cmd.help or "").strip():
            missing.append(path)
    assert missing == []
    assert "Delete a tool group" in runner.invoke(app, ["groups", "delete", "--help"], env={"COLUMNS": "200"}).output
