"""Every stdio server runs in a box of its own (`services.executor.upstreams.mcp.stdio_sandbox`): a hostile
MCP server, started by a real executor behind the whole gateway, tries to steal the stack's
credentials, plant code, listen, reach the bus, signal and trace processes, and is refused each
time; its own working folder works. The same server with `sandbox.mode: off` can read the
credentials (the attacks are real), and the executor's log says the sandbox was off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import site
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cli.ports import free_port
from libs.common.settings.config_file import load_config
from tests.support.gateway import ADMIN_KEY, Gateway, running_gateway
from tests.support.node_tools import ensure_node, ensure_package

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = str(ROOT / "tests" / "support" / "hostile_stdio_server.py")
FILESYSTEM_VERSION = "2026.8.31"
SEED = "SUAKEXAMPLESEEDNEVERTOBEREADBYANMCPSERVER0000000000000000"


@dataclass
class Stack:
    gateway: Gateway
    data: Path
    """A data dir as `bastion up` lays it out: stack.json, credentials/, servers/ (the stdio root)."""
    public: Path
    """A file beside the data dir, in the hostile server's `cwd`: readable."""
    service_pid: int
    """Another process of the same user, holding a secret in its environment (a service)."""
    allowed_port: int
    """A port the hostile server's `sandbox.connect` names, with a listener on it."""


async def _listener() -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def stack(nats_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    data = tmp_path / "data"
    (data / "credentials").mkdir(parents=True)
    (data / "stack.json").write_text('{"owner_token": "bo_owner_token_secret"}')
    (data / "credentials" / "executor.nk").write_text(SEED)
    (data / "servers" / "victim").mkdir(parents=True)
    public = tmp_path / "public.txt"
    public.write_text("readable")
    listener, allowed = await _listener()
    service = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(120)", env={"BASTION_SECRETS_KEY": "a-service-secret"}
    )
    hostile = {"command": sys.executable, "args": [HOSTILE], "cwd": str(tmp_path)}
    config = {
        "mcpServers": {
            "hostile": {**hostile, "sandbox": {"connect": [allowed]}},
            "unboxed": {**hostile, "sandbox": {"mode": "off"}},
        },
        "keys": [{"name": "admin", "key": ADMIN_KEY, "tools": ["*"]}],
    }
    options = {"data_dir": str(data), "stdio_root": str(data / "servers")}
    try:
        async with running_gateway(nats_url, redis_url, tmp_path, config, executor_options=options) as gateway:
            yield Stack(gateway, data, public, service.pid, allowed)
    finally:
        service.kill()
        await service.wait()
        listener.close()


async def _call(gateway: Gateway, tool: str, **arguments: Any) -> str:
    async with gateway.client() as client:
        result = await client.call_tool(tool, arguments)
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


def _existing(paths: list[Path]) -> list[Path]:
    return [path for path in paths if path.exists()]


@pytest.fixture
def planted() -> AsyncIterator[list[Path]]:
    """Files an attack would plant in shared places; removed should the sandbox fail to stop it."""
    paths = [Path(site.getsitepackages()[0]) / "hostile-probe.pth", ROOT / "tests" / "support" / "hostile-probe"]
    yield paths  # type: ignore[misc]
    for path in paths:
        path.unlink(missing_ok=True)


async def test_a_hostile_stdio_server_is_refused_everything_but_its_own_folder(
    stack: Stack, planted: list[Path]
) -> None:
    gateway, data = stack.gateway, stack.data
    nats_port = urlsplit(gateway.nats_url).port
    refused_reads = [data / "stack.json", data / "credentials" / "executor.nk", f"/proc/{os.getpid()}/environ"]
    refused_reads.append(f"/proc/{stack.service_pid}/environ")
    for path in refused_reads:
        assert await _call(gateway, "hostile__read_file", path=str(path)) == "refused: EACCES", path
    targets = [data / "planted", data / "servers" / "victim" / "planted", *planted]
    for path in targets:
        assert await _call(gateway, "hostile__write_file", path=str(path)) == "refused: EACCES", path
    assert _existing(targets) == []
    assert await _call(gateway, "hostile__bind_port", port=free_port()) == "refused: EACCES"
    assert await _call(gateway, "hostile__connect_port", port=nats_port) == "refused: EACCES"
    assert await _call(gateway, "hostile__signal_process", pid=os.getpid()) == "refused: EPERM"
    assert await _call(gateway, "hostile__ptrace_child") == "refused: EPERM"

    own = data / "servers" / "hostile"
    assert await _call(gateway, "hostile__where") == f"{stack.public.parent} {own / 'tmp'}"  # its cwd, its TMPDIR
    assert await _call(gateway, "hostile__write_file", path=str(own / "tmp" / "scratch")) == "ok written"
    assert await _call(gateway, "hostile__read_file", path=str(stack.public)) == "ok 8 bytes"  # its cwd
    assert await _call(gateway, "hostile__connect_port", port=stack.allowed_port) == "ok connected"


async def test_with_the_sandbox_off_the_same_server_reads_the_credentials_and_the_log_says_so(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """The attacks above are real: unconfined, the server reads what the sandbox refused it."""
    gateway, data = stack.gateway, stack.data
    assert (await _call(gateway, "unboxed__read_file", path=str(data / "stack.json"))).startswith("ok ")
    seed = await _call(gateway, "unboxed__read_file", path=str(data / "credentials" / "executor.nk"))
    assert seed == f"ok {len(SEED)} bytes"
    assert await _call(gateway, "unboxed__signal_process", pid=os.getpid()) == "ok signalled"
    assert await _call(gateway, "unboxed__ptrace_child") == "ok attached"

    started = caplog.get_records("setup")  # the gateway, its servers with it, started in the fixture
    warnings = [r.getMessage() for r in started if r.levelno == logging.WARNING and r.name.endswith("stdio_sandbox")]
    assert any("server unboxed: its sandbox is OFF" in message for message in warnings), warnings
    assert not any("server hostile" in message for message in warnings)


async def test_the_reference_filesystem_server_works_in_its_folder_and_the_kernel_keeps_it_there(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    """`@modelcontextprotocol/server-filesystem` on Node, sandboxed: it reads and writes the folder
    its `sandbox.write` names; a second folder it was started on is readable but the kernel refuses
    writing there (the server itself would allow it); outside both the server refuses."""
    node = ensure_node()
    package = ensure_package("server-filesystem", "@modelcontextprotocol/server-filesystem", FILESYSTEM_VERSION)
    owned, shared, outside = tmp_path / "owned", tmp_path / "shared", tmp_path / "outside"
    for folder in (owned, shared, outside):
        folder.mkdir()
    (shared / "readme.txt").write_text("shared text")
    (outside / "secret.txt").write_text("not for the server")
    files = {
        "command": str(node),
        "args": [str(package / "dist" / "index.js"), str(owned), str(shared)],
        "sandbox": {"write": [str(owned)], "connect": []},
    }
    config = {"mcpServers": {"files": files}, "keys": [{"name": "admin", "key": ADMIN_KEY, "tools": ["*"]}]}
    options = {"stdio_root": str(tmp_path / "servers")}
    async with running_gateway(nats_url, redis_url, tmp_path, config, executor_options=options) as gateway:
        written = await _call(gateway, "files__write_file", path=str(owned / "note.txt"), content="hello")
        assert "Successfully wrote" in written, written
        assert await _call(gateway, "files__read_text_file", path=str(owned / "note.txt")) == "hello"
        assert await _call(gateway, "files__read_text_file", path=str(shared / "readme.txt")) == "shared text"
        refused = await _call(gateway, "files__write_file", path=str(shared / "planted.txt"), content="x")
        assert "EACCES" in refused, refused
        beyond = await _call(gateway, "files__read_text_file", path=str(outside / "secret.txt"))
        assert "Access denied" in beyond, beyond
    assert _existing([shared / "planted.txt"]) == []
    assert (owned / "note.txt").read_text() == "hello"


async def test_a_hostile_server_entered_in_a_config_file_reads_neither_it_nor_the_stacks_ports(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The config file holds the keys and other servers' tokens inline: a server entered there with
    no `cwd` runs in its own working folder, not the file's folder, so its box holds neither; and by
    default it reaches the web's ports only, none of the stack's listeners on loopback (the bus,
    the store) through which a stolen key would be used."""
    path = tmp_path / "bastion.yaml"
    path.write_text(
        "mcpServers:\n"
        f"  hostile: {{command: {sys.executable}, args: [{HOSTILE}]}}\n"
        "  victim: {command: victim-server, env: {GITHUB_TOKEN: ghp_inline_token_of_another_server}, disabled: true}\n"
        f"keys: [{{name: admin, key: {ADMIN_KEY}, tools: ['*']}}]\n"
    )
    entry = load_config(path).mcp_servers["hostile"]
    config = {
        "mcpServers": {"hostile": entry.model_dump(include={"command", "args", "cwd"}, exclude_none=True)},
        "keys": [{"name": "admin", "key": ADMIN_KEY, "tools": ["*"]}],
    }
    options = {"stdio_root": str(tmp_path / "servers")}
    async with running_gateway(nats_url, redis_url, tmp_path, config, executor_options=options) as gateway:
        assert await _call(gateway, "hostile__read_file", path=str(path)) == "refused: EACCES"
        for port in (urlsplit(nats_url).port, urlsplit(redis_url).port):
            assert await _call(gateway, "hostile__connect_port", port=port) == "refused: EACCES", port
        own = tmp_path / "servers" / "hostile"
        assert await _call(gateway, "hostile__where") == f"{own} {own / 'tmp'}"
