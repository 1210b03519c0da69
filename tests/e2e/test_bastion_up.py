"""The product as a user meets it: `bastion up` with the bundled example config (ingress and the
executor in one process, every other service its own; and again with every service its own process),
embedded NATS/Valkey/chdb, example upstreams over stdio, the official MCP client in both protocol
eras, `bastion audit tail`, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import httpx2
import nats
import nats.errors
import pytest
import redis
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from cli.layout import SECRET_VARIABLES
from cli.summary import safe_url
from libs.common.bus.nats import credentials
from libs.common.bus.permissions import EXECUTOR
from tests.support.nats_refusal import refusal
from tests.support.polling import poll_until, poll_until_blocking
from tests.support.processes import assert_none_left, audit_tail, descendants, output, stop_up, up_with_example

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEMO = "bk_demo_local_only_change_me_0000"
READONLY = "bk_readonly_local_only_change_me_00"


@pytest.fixture(scope="module", params=[None, {"colocate": False}], ids=["example", "separate-processes"])
def stack(request, tmp_path_factory):
    """The example as shipped (ingress and executor co-located), and with every service its own process."""
    tmp_path = tmp_path_factory.mktemp("up")
    marker = uuid.uuid4().hex
    proc, port, data_dir = up_with_example(tmp_path, marker, request.param)
    yield proc, port, data_dir, tmp_path
    stop_up(proc, tmp_path)
    assert_none_left(marker)


@contextlib.asynccontextmanager
async def _client(port: int, key: str, mode: str, headers: dict[str, str] | None = None) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}", **(headers or {})}, timeout=30) as http:
        async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http), mode=mode) as c:
            yield c


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_official_client_lists_and_calls(stack, mode):
    _, port, _, _ = stack
    async with _client(port, DEMO, mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"echo__echo", "echo__add", "notes__add_note", "notes__list_notes", "notes__echo"} <= names
        added = await client.call_tool("echo__add", {"a": 20, "b": 22})
        assert added.structured_content == {"result": 42}
        await client.call_tool("notes__add_note", {"title": "e2e", "text": f"via {mode}"})
        listed = await client.call_tool("notes__list_notes", {})
        assert f"via {mode}" in json.dumps(listed.structured_content)


async def test_the_demo_offers_prompts_resources_and_a_template(stack):
    _, port, _, _ = stack
    async with _client(port, DEMO, "auto") as client:
        assert {p.name for p in (await client.list_prompts()).prompts} == {"echo__repeat", "notes__summarize"}
        assert {str(r.uri) for r in (await client.list_resources()).resources} == {"echo://about", "notes://all"}
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["notes://{note_id}"]
        assert "echo" in (await client.read_resource("echo://about")).contents[0].text


async def test_readonly_key_is_confined(stack):
    _, port, _, _ = stack
    async with _client(port, READONLY, "auto") as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"echo__echo", "notes__list_notes"}
        with pytest.raises(MCPError) as refused:
            await client.call_tool("notes__add_note", {"title": "x", "text": "y"})
        assert refused.value.error.code == -32050


async def test_code_mode_runs_a_script_in_the_codemode_process(stack):
    _, port, _, _ = stack
    async with _client(port, READONLY, "auto", {"X-Bastion-Code-Mode": "on"}) as client:
        files = (await client.call_tool("list_tool_files", {})).content[0].text
        assert files.splitlines() == [
            "servers/echo.py  1 tool — server echo: echo",
            "servers/notes.py  1 tool — server notes: list_notes",
        ]
        code = 'print(echo.echo(text="from a script"))\nresult = len(notes.list_notes()) >= 0'
        ran = await client.call_tool("execute_code", {"code": code})
        assert not ran.is_error and ran.content[0].text == "from a script\nresult: true"


async def test_audit_tail_shows_the_calls(stack):
    _, port, data_dir, _ = stack
    async with _client(port, DEMO, "auto") as client:
        await client.call_tool("echo__echo", {"text": "for the audit trail"})

    def tail_shows_it() -> bool:
        done = audit_tail(data_dir)
        return done.returncode == 0 and "echo" in done.stdout and "demo" in done.stdout

    poll_until_blocking(tail_shows_it, "the call to appear in `bastion audit tail`", within=30)
    logs = "".join(p.read_text() for p in (data_dir / "logs").glob("*.log"))
    assert DEMO not in logs and READONLY not in logs  # secrets never reach the logs


def test_every_url_the_banner_prints_answers(stack):
    """What a newcomer clicks first: each http(s) URL in the banner answers, and /docs needs no CDN."""
    _, port, data_dir, tmp_path = stack
    poll_until_blocking(lambda: "Ctrl-C to stop" in output(tmp_path), "the whole banner", within=30)
    banner = (tmp_path / "up.out").read_text()
    urls = set(re.findall(r"https?://[^\s)\]]+", banner))
    base = f"http://127.0.0.1:{port}"
    admin = json.loads((data_dir / "stack.json").read_text())["admin_url"].removesuffix("/admin/v1")
    assert admin != base and admin.startswith("http://127.0.0.1:"), "the admin service has its own port"
    assert {
        f"{base}/mcp",
        f"{base}/",
        admin,
        f"{admin}/admin/v1",
        f"{admin}/docs",
        f"{admin}/dashboard",
        f"{admin}/console",
    } <= urls
    for service in ("policy", "executor", "audit", "codemode", "oauth", "admin", "ingress"):  # each its own port
        assert re.search(rf"http://127\.0\.0\.1:\d+/metrics\s+\({service}\)", banner), (service, banner)
    with httpx.Client(timeout=10, trust_env=False) as http:
        answers = {url: http.get(url) for url in urls}
        for url, answer in answers.items():
            assert answer.status_code not in (404, 405) and answer.status_code < 500, (url, answer.text[:200])
        landing = answers[f"{base}/"]
        assert landing.headers["content-type"].startswith("text/html") and f"{base}/mcp" in landing.text
        index = answers[f"{admin}/admin/v1"].json()
        assert index["collections"]["keys"] == "/admin/v1/keys" and index["docs"] == "/docs"
        docs = answers[f"{admin}/docs"].text
        assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", docs)
        assert assets and all(a.startswith("/") for a in assets), assets  # same origin: works offline
        for asset in assets:
            assert http.get(admin + asset).status_code == 200, asset
        for path in ("/admin/v1", "/docs", "/dashboard", "/console"):  # none of it on the public gateway
            assert http.get(base + path).status_code == 404, path
        assert answers[f"{base}/mcp"].json()["error"]  # a browser at the MCP URL gets an explanation


def test_the_commands_the_banner_suggests_run_as_printed(stack):
    """Pasted into a shell where `bastion up` was started, each hint works: the CLI named as it can
    be typed here (not a `bastion` off PATH) and the stack's data dir named when it is not `.bastion`."""
    _, _, data_dir, tmp_path = stack
    poll_until_blocking(lambda: "Ctrl-C to stop" in output(tmp_path), "the whole banner", within=30)
    banner = (tmp_path / "up.out").read_text()
    printed = re.findall(r"`([^`]+)`", banner)
    hints = {words: [h for h in printed if words in h] for words in ("keys list", "analytics query", "users create")}
    assert all(len(found) == 1 for found in hints.values()), printed
    assert all(f"--data-dir {data_dir}" in found[0] for found in hints.values()), hints  # not ./.bastion
    env = {k: v for k, v in os.environ.items() if k != "BASTION_NATS_URL"} | {"COLUMNS": "200"}

    def run(command: str) -> str:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        return done.stdout

    listed = run(hints["keys list"][0])
    assert "demo" in listed and "readonly" in listed
    assert "4242" in run(f"{hints['analytics query'][0]} 'SELECT 4242 AS answer'")


async def test_the_stack_is_closed_to_strangers_and_private_on_disk(stack):
    """Zero-trust bus and private files: the embedded NATS refuses a client without
    credentials, another service's NKey cannot write keys, Valkey wants policy's password, and
    nothing `bastion up` wrote (logs, ClickHouse, JetStream, Valkey AOF, seeds) is readable by others."""
    _, _, data_dir, _ = stack
    info = json.loads((data_dir / "stack.json").read_text())
    assert "Authorization Violation" in str(await refusal(info["nats_url"]))
    refused: list[str] = []
    told = asyncio.Event()

    async def record(exc: Exception) -> None:
        refused.append(str(exc))
        told.set()

    seed = data_dir / "credentials" / "executor.nk"
    nc = await nats.connect(info["nats_url"], error_cb=record, **credentials(EXECUTOR, str(seed)))
    try:
        await nc.publish("$KV.bastion_keys.forged", b'{"grants": ["*"]}')
        await asyncio.wait_for(told.wait(), 5)
        assert "permissions violation for publish" in refused[0].lower()
    finally:
        await nc.close()
    with redis.Redis.from_url(safe_url(info["redis_url"]), socket_timeout=5) as anonymous:
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()

    assert _open_to_others(data_dir) == []
    for part in ("logs", "clickhouse", "nats/jetstream", "valkey/appendonlydir", "credentials"):
        assert (data_dir / part).is_dir(), f"{part} was not created where expected"


def _open_to_others(data_dir: Path) -> list[str]:
    """Whatever under `data_dir` its group or others may touch. The stack is running: a part its store
    writes and removes meanwhile (ClickHouse's `tmp_insert_*`) may be gone before it is looked at."""
    loose = []
    walked = os.walk(data_dir)  # a folder that vanishes mid-walk is passed over, where rglob would raise
    for path in [data_dir, *(Path(top) / name for top, dirs, files in walked for name in (*dirs, *files))]:
        try:
            found = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISLNK(found) and stat.S_IMODE(found) & 0o077:
            loose.append(f"{oct(stat.S_IMODE(found))} {path}")
    return loose


def test_the_cli_acts_as_the_stacks_owner_and_ingress_holds_no_admin_credential(stack):
    """`bastion up` made its owner `local-cli` in KV (no bootstrap token) and keeps its API token in
    the stack file; the CLI finds both, and the public ingress's process got none of it."""
    _, _, data_dir, _ = stack
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")} | {"COLUMNS": "200"}
    whoami = subprocess.run(
        [sys.executable, "-m", "cli", "whoami", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert whoami.returncode == 0, whoami.stderr
    assert "local-cli" in whoami.stdout and "owner" in whoami.stdout
    info = json.loads((data_dir / "stack.json").read_text())
    assert info["admin_token"].startswith("bat_")
    public = [*_environs("services.ingress"), *_environs("cli.colocated")]  # alone, or with the executor
    ours = [environ for environ in public if str(data_dir).encode() in environ]
    assert ours, "no ingress process of this stack found"
    for environ in ours:
        assert b"admin.nk" not in environ and info["admin_token"].encode() not in environ
        assert b"BASTION_ADMIN" not in environ


def _environs(module: str) -> list[bytes]:
    """The environments of the processes running `module` (this machine may run other stacks too)."""
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and module in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append((proc / "environ").read_bytes())
    return found


def _known_secrets(data_dir: Path) -> dict[str, str]:
    """Every secret of the stack a test can read off its disk: what each service must not hold."""
    info = json.loads((data_dir / "stack.json").read_text())
    found = {"admin token": info["admin_token"], "secrets key": info["secrets_key"]}
    credentials = data_dir / "credentials"
    found |= {f"{p.stem} NKey seed": p.read_text().strip() for p in credentials.glob("*.nk")}
    found["checkpoint key"] = (credentials / "checkpoint.key").read_text().strip()
    acl = (data_dir / "valkey" / "valkey.conf").read_text()
    found["Valkey password"] = re.search(r" >(\S+)", acl).group(1)  # type: ignore[union-attr]
    return found


def test_no_service_holds_a_secret_in_its_environment_nor_another_services_credentials_open(stack):
    """Any process of the same user reads another's /proc/<pid>/environ, and an analytics query
    could read the audit process's. Under `bastion up` every service's environment, read here as such
    a process would, holds no secret at all (they come through a pipe the service read and closed),
    and no service keeps another's credentials file open."""
    proc, _, data_dir, _ = stack
    secrets = _known_secrets(data_dir)
    services = {
        pid: cmdline
        for pid, cmdline in descendants(proc.pid).items()
        if " -m services." in cmdline or " -m cli.colocated" in cmdline
    }
    assert len(services) >= 5, services  # ingress (with the executor, co-located), policy, audit, codemode, oauth
    for pid, cmdline in services.items():
        environ = dict(
            item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
        )
        named = sorted(name for name in SECRET_VARIABLES if environ.get(name))
        assert named == [], f"{cmdline}: secrets in its environment: {named}"
        held = sorted(what for what, value in secrets.items() if value and value in "\n".join(environ.values()))
        assert held == [], f"{cmdline}: holds the {held} in its environment"
        if "services.audit" in cmdline:  # its checkpoint key came through a pipe
            assert "BASTION_SECRETS_FD" in environ
        open_files = []
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                open_files.append(os.readlink(fd))
        credentials = [f for f in open_files if f.startswith(str(data_dir / "credentials")) or f.endswith("stack.json")]
        assert credentials == [], f"{cmdline} keeps credentials open: {credentials}"


def _cli(data_dir: Path, group: str, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_ADMIN")}
    argv = [sys.executable, "-m", "cli", group, command, "--data-dir", str(data_dir), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env)


async def test_results_over_one_message_arrive_through_the_stacks_own_permissions(stack):
    """Under `bastion up` (its nats-server secured with every role's permissions, 8 MiB
    messages) a stdio tool's result too large for one message was once lost after a 5 s timeout; the
    ingress role could not read the object store. Both layouts, a server added while running."""
    _, port, data_dir, _ = stack
    nats_log = data_dir / "nats" / "nats.log"
    before = nats_log.stat().st_size  # the stack is shared: earlier tests' attacks are logged above
    large = ROOT / "tests" / "support" / "large_server.py"
    # it imports the example servers' `_runner`, beside its own folder: its sandbox may read them
    sandbox = {"read": [str(ROOT / "examples" / "servers")]}
    entry = json.dumps({"command": sys.executable, "args": [str(large)], "sandbox": sandbox})
    added = _cli(data_dir, "servers", "add", "large", "--entry", entry)
    assert added.returncode == 0, added.stderr
    try:
        async with _client(port, DEMO, "auto") as client:

            async def listed() -> bool:
                return "large__blob" in {t.name for t in (await client.list_tools()).tools}

            await poll_until(listed, "the large server's tools", within=60)
            for megabytes in (2.0, 12.0, 20.0):  # inline, then through the object store
                result = await client.call_tool("large__blob", {"megabytes": megabytes})
                assert not result.is_error, result.content[0].text[:300]
                assert len(result.content[0].text) == int(megabytes * 1_000_000)
    finally:
        assert _cli(data_dir, "servers", "remove", "large").returncode == 0
    with nats_log.open("rb") as log:
        log.seek(before)
        violations = [line for line in log.read().decode(errors="replace").splitlines() if "Violation" in line]
    assert violations == [], violations[:3]


async def test_a_hostile_stdio_server_added_to_the_stack_reaches_no_credential(stack):
    """Both walls at once: the executor `bastion up` confined, and the server's own box inside it
    (docs/stdio-sandbox.md). A server added while running cannot read the stack's credentials nor
    write into its data dir; it writes its own working folder there."""
    _, port, data_dir, _ = stack
    hostile = ROOT / "tests" / "support" / "hostile_stdio_server.py"
    added = _cli(data_dir, "servers", "add", "hostile", "--", sys.executable, str(hostile))
    assert added.returncode == 0, added.stderr
    seeds = sorted((data_dir / "credentials").glob("*.nk"))
    assert seeds
    try:
        async with _client(port, DEMO, "auto") as client:

            async def listed() -> bool:
                return "hostile__read_file" in {t.name for t in (await client.list_tools()).tools}

            async def attack(tool: str, path: Path) -> str:
                result = await client.call_tool(tool, {"path": str(path)})
                return result.content[0].text

            await poll_until(listed, "the hostile server's tools", within=60)
            for secret in (data_dir / "stack.json", *seeds):
                assert await attack("hostile__read_file", secret) == "refused: EACCES", secret
            assert await attack("hostile__write_file", data_dir / "planted") == "refused: EACCES"
            own = data_dir / "servers" / "hostile"
            assert await attack("hostile__write_file", own / "tmp" / "scratch") == "ok written"
    finally:
        assert _cli(data_dir, "servers", "remove", "hostile").returncode == 0
