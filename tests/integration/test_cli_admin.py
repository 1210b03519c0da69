"""`bastion keys|groups|servers|customers|teams|users` as a user runs them: the real CLI in a
subprocess, against the admin service served in-process over a real NATS (with an ingress replica
where a change must arrive)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx2
import nats
import pytest

from cli.stackfile import write_stack
from libs.common.bus.nats import kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.messages import KeyRecord
from services.admin.service import AdminService
from services.ingress.service import IngressService
from tests.support.polling import poll_until
from tests.support.processes import fake_bastion_up

pytestmark = pytest.mark.integration


class Cli:
    def __init__(self, url: str, cwd: Path, token: str) -> None:
        self.url, self.cwd, self.token = url, cwd, token

    async def __call__(
        self, *args: str, auth: bool = True, env: dict[str, str] | None = None, stdin: bytes | None = None
    ) -> tuple[int, str, str]:
        """Run `bastion ARGS` without blocking the loop that serves the API (`stdin` fed to it)."""
        flags = ["--admin-url", self.url, "--admin-token", self.token] if auth else []
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", *args[:2], *flags, *args[2:],
            cwd=self.cwd, env={**clean, "COLUMNS": "250", **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE if stdin is not None else None,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def cli(admin: AdminService, owner_token: str, tmp_path: Path) -> Cli:
    return Cli(admin.url, tmp_path, owner_token)


async def ok(cli: Cli, *args: str) -> str:
    code, out, err = await cli(*args)
    assert code == 0, f"bastion {' '.join(args)} -> {code}\n{out}\n{err}"
    return out


async def stored_key(nats_url: str, secret: str) -> KeyRecord:
    """The key record the CLI stored for `secret`, read from KV under its id (the secret's sha256)."""
    nc = await nats.connect(nats_url)
    try:
        kv = await kv_bucket(nc.jetstream(), subjects.KV_KEYS)
        return KeyRecord.model_validate_json((await kv.get(hashlib.sha256(secret.encode()).hexdigest())).value)
    finally:
        await nc.close()


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


async def test_keys_groups_and_hierarchy(cli: Cli, ingress: IngressService, nats_url: str) -> None:
    assert "created group 'readers'" in await ok(
        cli, "groups", "create", "readers", "-t", "notes/*", "--description", "ro"
    )
    await ok(cli, "customers", "create", "acme", "--name", "Acme", "--budget", "100/month")
    await ok(cli, "teams", "create", "pay", "--name", "Payments", "--customer", "acme")
    await ok(cli, "users", "create", "ann", "--name", "Ann", "--team", "pay", "--rate-limit", "5/second")
    out = await ok(cli, "keys", "create", "ci", "--grant", "echo/*", "--group", "readers", "--user", "ann",
                   "--budget", "$5/day", "--rate-limit", "10")  # fmt: skip
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("bk_") and "shown once" in out

    record = await stored_key(nats_url, secret)
    assert (record.grants, record.groups, record.user_id) == (["echo/*"], ["readers"], "ann")
    assert record.budget is not None and (record.budget.limit_usd, record.budget.period) == (5.0, "day")

    listing = await ok(cli, "keys", "list")
    assert "ci" in listing and "active" in listing and "user ann" in listing and "$5/day" in listing
    assert secret not in listing and "bk_" not in listing
    assert "readers" in await ok(cli, "groups", "list")
    assert "Acme" in await ok(cli, "customers", "list") and "acme" in await ok(cli, "teams", "list")
    assert "5/second" in await ok(cli, "users", "list")

    await ok(cli, "groups", "set-tools", "readers", "notes/list_*", "echo/echo")
    assert "notes/list_*, echo/echo" in await ok(cli, "groups", "list")

    rotated = await ok(cli, "keys", "rotate", "ci")
    new_secret = rotated.strip().splitlines()[-1]
    assert new_secret.startswith("bk_") and new_secret != secret
    await poll_until(
        lambda: ingress.keys.authenticate(f"Bearer {new_secret}").__class__.__name__ == "Caller",
        "the rotated key to reach ingress",
    )
    listing = await ok(cli, "keys", "list")
    assert listing.count("revoked") == 1 and listing.count("active") == 1
    assert "revoked key 'ci'" in await ok(cli, "keys", "revoke", hashlib.sha256(new_secret.encode()).hexdigest()[:10])

    code, _, err = await cli("groups", "delete", "users-of-nothing")
    assert code == 1 and "no tool group with id 'users-of-nothing' [HTTP 404]" in one_line_error(err)
    code, _, err = await cli("customers", "delete", "acme")
    assert code == 1 and "still used by team 'pay'" in one_line_error(err)
    assert "deleted customer 'acme'" in await ok(cli, "customers", "delete", "acme", "--force")


async def test_keys_show_and_a_second_revoke_and_tables_piped_whole(cli: Cli) -> None:
    name = "a-key-with-a-long-name-for-a-narrow-table"
    grants = ["echo/*", "notes/list_notes", "notes/prompt:summarize"]
    await ok(cli, "keys", "create", name, *(f"--grant={g}" for g in grants), "--budget", "3/day")
    shown = await ok(cli, "keys", "show", name)
    assert f"name       {name}" in shown and "status     active" in shown and "$3/day" in shown
    assert f"grants     {', '.join(grants)}" in shown and "bk_" not in shown
    assert json.loads(await ok(cli, "keys", "show", name, "--json"))["grants"] == grants

    assert f"revoked key '{name}'" in await ok(cli, "keys", "revoke", name)
    again = await ok(cli, "keys", "revoke", name)
    assert f"key '{name}'" in again and "is already revoked: nothing to do" in again
    assert "status     revoked" in await ok(cli, "keys", "show", name)

    # a pipe is not a terminal: however narrow COLUMNS says it is, rows come whole, one per line
    code, listing, err = await cli("keys", "list", env={"COLUMNS": "40"})
    assert code == 0, err
    row = next(line for line in listing.splitlines() if name in line)
    assert ", ".join(grants) in row and "revoked" in row


async def test_servers(cli: Cli) -> None:
    out = await ok(cli, "servers", "add", "echo", "--env", "TOKEN=upstream-secret", "--", "python", "echo.py", "-v")
    assert "added server 'echo'" in out and "pending" in out
    await ok(cli, "servers", "add", "remote", "--url", "https://mcp.example.com/mcp?token=abc", "--type", "sse")
    entry = '{"command": "npx", "args": ["-y", "pkg"], "disabled": true}'
    await ok(cli, "servers", "add", "pasted", "--entry", entry)
    listing = await ok(cli, "servers", "list")
    for text in ("echo", "python echo.py -v", "pending", "remote", "sse", "https://mcp.example.com/mcp", "disabled"):
        assert text in listing, text
    assert "upstream-secret" not in listing and "token=abc" not in listing
    assert "removed server 'echo'" in await ok(cli, "servers", "remove", "echo")
    assert "echo.py" not in await ok(cli, "servers", "list")
    code, _, err = await cli("servers", "add", "remote", "--url", "https://elsewhere.example.com/mcp")
    assert code == 1 and "already exists [HTTP 409]" in one_line_error(err)
    # an owner lets a server on the internal network through (docs/configuration.md, "egress")
    await ok(cli, "servers", "add", "wiki", "--url", "http://10.0.0.7:8080/mcp", "--allow-private-host", "10.0.0.7")
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {cli.token}"}) as http:
        stored = (await http.get(f"{cli.url}/admin/v1/servers/wiki")).json()
    assert stored["config"]["allow_private_hosts"] == ["10.0.0.7"]
    code, _, err = await cli("servers", "add", "box", "--allow-private-host", "10.0.0.7", "--", "python", "x.py")
    assert code == 2 and "--allow-private-host is for --url and --openapi servers" in one_line_error(err)


async def test_errors_are_one_line_with_exit_codes(cli: Cli, tmp_path: Path) -> None:
    code, out, err = await cli("keys", "create", "bad", "--grant", "nope")
    assert code == 2 and out == ""
    assert "body.grants[0]: a grant must look like 'server/tool'" in one_line_error(err)
    code, _, err = await cli("keys", "create", "x", "--budget", "lots")
    assert code == 2 and "--budget 'lots'" in one_line_error(err)
    code, _, err = await cli("keys", "create", "x", "--group", "ghost")
    assert code == 2 and "no tool group has this id [HTTP 422]" in one_line_error(err)
    await ok(cli, "groups", "create", "dup")
    code, _, err = await cli("groups", "create", "dup")
    assert code == 1 and "already exists [HTTP 409]" in one_line_error(err)
    code, _, err = await cli("keys", "revoke", "no-such-key")
    assert code == 1 and "no key matches 'no-such-key'" in one_line_error(err)
    code, _, err = await cli("servers", "add", "both", "--url", "http://x/mcp", "--", "python", "x.py")
    assert code == 2 and "exactly one" in one_line_error(err)

    code, _, err = await cli("keys", "list", "--admin-url", cli.url, "--admin-token", "wrong", auth=False)
    assert code == 1 and "[HTTP 401]" in one_line_error(err) and "wrong" not in err
    code, _, err = await cli("keys", "list", auth=False)
    assert code == 2 and "bastion up" in one_line_error(err)
    code, _, err = await cli("keys", "list", "--admin-url", "http://127.0.0.1:9", "--admin-token", "t", auth=False)
    assert code == 1 and "cannot reach the admin API" in one_line_error(err)


async def test_settings_from_environment_and_stack_file(cli: Cli, tmp_path: Path) -> None:
    env = {"BASTION_ADMIN_URL": cli.url, "BASTION_ADMIN_TOKEN": cli.token}
    code, out, _ = await cli("groups", "list", auth=False, env=env)
    assert code == 0 and "0 group(s)" in out

    # a live process whose command line says bastion stands in for `bastion up`
    stand_in = await asyncio.to_thread(fake_bastion_up)
    try:
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        write_stack(data_dir, {"pid": stand_in.pid, "admin_url": cli.url + "/admin/v1", "admin_token": cli.token})
        code, out, err = await cli("groups", "list", "--data-dir", str(data_dir), auth=False)
        assert code == 0 and "0 group(s)" in out, err
        # the stack's token is never sent to another URL
        code, _, err = await cli("groups", "list", "--data-dir", str(data_dir), "--admin-url", "http://127.0.0.2:1",
                                 auth=False)  # fmt: skip
        assert code == 2 and "no admin token for http://127.0.0.2:1/admin/v1" in one_line_error(err)
    finally:
        stand_in.kill()
        await asyncio.to_thread(stand_in.wait, 10)


async def test_llm_providers(cli: Cli, nats_url: str) -> None:
    secret = "sk-typed-into-stdin-0123456789"
    base = ["llm-providers", "add", "ollama", "--base-url", "http://localhost:11434/v1", "-m", "qwen3:8b"]
    code, out, err = await cli(*base, "-m", "llama3", "--api-key-stdin", stdin=f"{secret}\n".encode())
    assert code == 0, err
    assert "added llm provider 'ollama'" in out and "qwen3:8b, llama3" in out
    entry = '{"base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY", "models": ["gpt-4.1"]}'
    await ok(cli, "llm-providers", "add", "openai", "--entry", entry)
    listing = await ok(cli, "llm-providers", "list")
    for text in ("ollama", "http://localhost:11434/v1", "qwen3:8b, llama3", "stored", "openai", "$OPENAI_API_KEY"):
        assert text in listing, text
    assert secret not in listing and secret not in await ok(cli, "llm-providers", "list", "--json")
    code, _, err = await cli("llm-providers", "add", "again", "--base-url", "http://x/v1", "-m", "llama3")
    assert code == 1 and "'ollama' already serves 'llama3'" in one_line_error(err) and "[HTTP 409]" in err
    code, _, err = await cli("llm-providers", "add", "bare", "--base-url", "http://x/v1")
    assert code == 2 and "at least one --model" in one_line_error(err)
    assert "removed llm provider 'ollama'" in await ok(cli, "llm-providers", "remove", "ollama")
    assert "qwen3" not in await ok(cli, "llm-providers", "list")


async def test_keys_with_code_mode_and_agent_mode(cli: Cli, nats_url: str) -> None:
    """`keys create` sets Code Mode and agent mode, and `keys list`/`show` say so."""
    out = await ok(cli, "keys", "create", "coder", "--grant", "echo/*", "--code-mode")
    coder = out.strip().splitlines()[-1]
    await ok(cli, "keys", "create", "agent", "--grant", "echo/*", "--agent", "echo__*", "--agent-depth", "3")
    record = await stored_key(nats_url, coder)
    assert record.code_mode is True and record.agent is None
    agent = json.loads(await ok(cli, "keys", "show", "agent", "--json"))
    assert (agent["code_mode"], agent["agent"]) == (False, {"tools_to_auto_execute": ["echo__*"], "max_depth": 3})
    listing = await ok(cli, "keys", "list")
    assert "code mode" in listing and "agent: echo__* (depth 3)" in listing
    assert "mode       agent: echo__* (depth 3)" in await ok(cli, "keys", "show", "agent")
    code, _, err = await cli("keys", "create", "half", "--agent-depth", "2")
    assert code == 2 and "--agent-depth needs --agent" in one_line_error(err)


async def test_principals_roles_and_whoami(cli: Cli) -> None:
    """A principal with a token made from the terminal, then used: it is who `whoami` says, and a key
    manager of one team lists only that team's keys."""
    await ok(cli, "teams", "create", "pay", "--name", "Payments")
    await ok(cli, "keys", "create", "pay-key", "--team", "pay")
    await ok(cli, "keys", "create", "other-key")
    out = await ok(cli, "principals", "create", "km@example.com", "--person", "--role", "key_manager@team:pay",
                   "--token", "--days", "7")  # fmt: skip
    token = out.strip().splitlines()[-1]
    assert token.startswith("bat_") and "shown once" in out and "key_manager@team:pay" in out
    listed = await ok(cli, "principals", "list")
    assert "km@example.com" in listed and "person" in listed and token not in listed
    assert "1 token(s) of km@example.com" in await ok(cli, "principals", "tokens", "km@example.com")

    km = Cli(cli.url, cli.cwd, token)
    assert "km@example.com" in await ok(km, "whoami") and "keys:write for team:pay only" in await ok(km, "whoami")
    keys = await ok(km, "keys", "list")
    assert "pay-key" in keys and "other-key" not in keys
    code, _, err = await km("servers", "list")
    assert code == 1 and "lacks the permission 'servers:read'" in one_line_error(err) and "[HTTP 403]" in err

    await ok(cli, "roles", "create", "approver", "--permission", "tools:approve", "--permission", "servers:read")
    assert "approver (custom)" in await ok(cli, "roles", "list")
    assert "tools:approve" in await ok(cli, "roles", "permissions")
    assert "deleted role 'approver'" in await ok(cli, "roles", "delete", "approver")
    assert "approver (custom)" not in await ok(cli, "roles", "list")
    code, _, err = await cli("principals", "create", "x", "--role", "owner@planet:mars")
    assert code == 2 and "ROLE@team:ID" in one_line_error(err)

    rotated = await ok(
        cli, "principals", "rotate-token", "km@example.com", hashlib.sha256(token.encode()).hexdigest()[:8]
    )
    assert rotated.strip().splitlines()[-1].startswith("bat_")
    code, _, err = await km("whoami")
    assert code == 1 and "[HTTP 401]" in one_line_error(err)
