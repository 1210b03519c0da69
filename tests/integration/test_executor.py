"""The executor against a real NATS server and real upstream MCP servers (stdio, streamable HTTP,
SSE) built with the official SDK. `ExecutorService` runs in the test's event loop; calls go
through NATS exactly as policy sends them.

The tests that only call share one executor (`shared`) and so its upstream processes: a name means
the same config in each of them. A test that changes, kills or counts servers has its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from cli.ports import free_port
from cli.stack import EmbeddedNats
from libs.common.bus.nats import kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.config import ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import Caller, CallOutcome, ServerCatalog, ServerRecord, ToolCall, decode_outcome
from libs.common.settings import ExecutorSettings
from services.executor.service import ExecutorService
from tests.support.egress import LOOPBACK_UPSTREAMS
from tests.support.polling import poll_until
from tests.support.stores import declared

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ECHO = str(ROOT / "examples" / "servers" / "echo_server.py")
NOTES = str(ROOT / "examples" / "servers" / "notes_server.py")
CHANGING = str(ROOT / "tests" / "support" / "changing_server.py")
CALLER = Caller(key_id="0" * 64, key_name="test")
WAIT = 30.0


def stdio(script: str = ECHO, **extra: Any) -> ServerConfig:
    """A stdio server running `script`; its sandbox may read the example servers' folder (test servers
    import their `_runner`), plus `extra["sandbox"]`."""
    sandbox = extra.pop("sandbox", {})
    sandbox = {**sandbox, "read": [str(ROOT / "examples" / "servers"), *sandbox.get("read", [])]}
    return ServerConfig(command=sys.executable, args=[script], sandbox=sandbox, **extra)


@contextlib.asynccontextmanager
async def http_upstream(script: str, transport: str) -> AsyncIterator[str]:
    """Run an example server with `--http`/`--sse` on a free port; yield its URL once it is READY."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        script,
        f"--{transport}",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), WAIT)).decode()
        assert line.startswith("READY "), f"{script} did not start: {line!r}"
        yield line.split()[1]
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class Harness:
    """A NATS client plus the two KV buckets, with helpers phrased like the tests."""

    def __init__(self, nc: NATS, servers: KeyValue, catalog: KeyValue) -> None:
        self.nc, self.servers, self.catalog = nc, servers, catalog

    async def configure(self, name: str, config: ServerConfig) -> None:
        await self.servers.put(name, ServerRecord(name=name, config=config).model_dump_json().encode())

    async def entry(self, name: str) -> ServerCatalog | None:
        try:
            return ServerCatalog.model_validate_json((await self.catalog.get(name)).value)
        except KeyNotFoundError:
            return None

    async def wait_status(
        self, name: str, status: str, predicate: Callable[[ServerCatalog], bool] = bool
    ) -> ServerCatalog:
        async def check() -> ServerCatalog | None:
            entry = await self.entry(name)
            return entry if entry is not None and entry.status == status and predicate(entry) else None

        return await poll_until(check, f"catalog {name!r} to be {status!r}")

    async def call(
        self, server: str, tool: str, arguments: dict[str, Any] | None = None, deadline: float = 20.0, **fields: Any
    ) -> CallOutcome:
        """Send a ToolCall as policy does; `deadline` is the call's `timeout` field, `fields` are more of
        its fields (`stream`, `client`, ...)."""
        name = f"{server}__{tool}"
        call = ToolCall(
            caller=CALLER, server=server, tool=tool, name=name, arguments=arguments or {}, timeout=deadline, **fields
        )
        reply = await self.nc.request(subjects.EXEC_CALL, call.model_dump_json().encode(), timeout=deadline + 5)
        outcome = decode_outcome(reply.data)
        outcome.result_value()  # the tests read results as dicts
        assert outcome.id == call.id and outcome.decided_by == "executor"
        return outcome

    async def text(self, server: str, tool: str, arguments: dict[str, Any] | None = None) -> str:
        outcome = await self.call(server, tool, arguments)
        assert outcome.error is None, outcome.error
        assert outcome.result is not None
        return outcome.result["content"][0]["text"]

    async def stats(self, server: str) -> dict[str, int]:
        outcome = await self.call(server, "stats")
        assert outcome.result is not None, outcome.error
        return outcome.result["structuredContent"]


@contextlib.asynccontextmanager
async def connected(nats_url: str) -> AsyncIterator[Harness]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await declared(js, subjects.KV_SERVERS, subjects.KV_CATALOG)  # as `bastion config apply`, the executor would
    try:
        yield Harness(nc, await kv_bucket(js, subjects.KV_SERVERS), await kv_bucket(js, subjects.KV_CATALOG))
    finally:
        await nc.close()


def executor_settings(nats_url: str) -> ExecutorSettings:
    return ExecutorSettings(
        nats_url=nats_url, connect_timeout=15.0, reconnect_max_backoff=1.0, egress=LOOPBACK_UPSTREAMS
    )


@pytest.fixture
async def harness(nats_url: str) -> AsyncIterator[Harness]:
    async with connected(nats_url) as found:
        yield found


@pytest.fixture
def settings(nats_url: str) -> ExecutorSettings:
    return executor_settings(nats_url)


@pytest.fixture
async def executor(settings: ExecutorSettings) -> AsyncIterator[ExecutorService]:
    async with ExecutorService(settings) as service:
        yield service


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    """A harness on an executor of its own NATS, kept for the module."""
    server = EmbeddedNats(tmp_path_factory.mktemp("executor") / "nats").start()
    try:
        async with connected(server.url) as found, ExecutorService(executor_settings(server.url)):
            yield found
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def http_url() -> AsyncIterator[str]:
    """The echo example over streamable HTTP, for the module."""
    async with http_upstream(ECHO, "http") as url:
        yield url


@pytest.fixture(scope="module")
async def sse_url() -> AsyncIterator[str]:
    """The echo example over SSE, for the module."""
    async with http_upstream(ECHO, "sse") as url:
        yield url


def process_gone(pid: int) -> bool:
    """True once `pid` has exited and been reaped (a zombie still has a /proc entry)."""
    return not Path(f"/proc/{pid}").exists()


async def gone(pid: int) -> bool:
    return process_gone(pid)


# ---------------------------------------------------------------------------- discovery & calls


async def test_unknown_and_unexposed_tools(harness: Harness, executor: ExecutorService) -> None:
    await harness.configure("echo", stdio(tools=["ec*", "add"]))
    entry = await harness.wait_status("echo", "ready")
    assert sorted(t.tool for t in entry.tools) == ["add", "echo"]
    for server, tool in (("echo", "sleep"), ("echo", "no_such_tool"), ("nowhere", "echo")):
        outcome = await harness.call(server, tool, {"seconds": 0})
        assert outcome.error is not None and outcome.error.kind is ErrorKind.UNKNOWN_TOOL, (server, tool)
    assert await harness.text("echo", "echo", {"text": "still fine"}) == "still fine"


# ---------------------------------------------------------------------------- failures


async def test_unreachable_upstream_fails_fast_without_leaking_secrets(
    harness: Harness, executor: ExecutorService
) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp?token=url-secret-123"
    await harness.configure("down", ServerConfig(url=url, headers={"Authorization": "Bearer header-secret-456"}))
    entry = await harness.wait_status("down", "unavailable")
    assert entry.error and entry.tools == []
    outcome = await harness.call("down", "echo", {"text": "x"}, deadline=60)
    assert outcome.error is not None and outcome.error.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert outcome.upstream_ms is None  # refused before any attempt: the server is known to be down
    assert "still connecting" not in outcome.error.message
    for text in (entry.error, outcome.error.message):
        assert "url-secret-123" not in text and "header-secret-456" not in text


async def test_killed_stdio_upstream_reconnects(harness: Harness, executor: ExecutorService) -> None:
    await harness.configure("echo", stdio())
    await harness.wait_status("echo", "ready")
    first = (await harness.stats("echo"))["pid"]
    os.kill(first, signal.SIGKILL)

    async def new_process() -> int | None:
        outcome = await harness.call("echo", "stats")
        if outcome.error is not None:
            assert outcome.error.kind is ErrorKind.UPSTREAM_UNAVAILABLE, outcome.error
            return None
        pid = outcome.result["structuredContent"]["pid"] if outcome.result else None
        return pid if pid != first else None

    second = await poll_until(new_process, "the echo server to be restarted")
    assert second != first
    assert await harness.text("echo", "echo", {"text": "back"}) == "back"
    await harness.wait_status("echo", "ready")


# ---------------------------------------------------------------------------- configuration changes


async def test_config_change_restarts_and_removal_cleans_up(harness: Harness, executor: ExecutorService) -> None:
    await harness.configure("echo", stdio())
    await harness.wait_status("echo", "ready", lambda e: len(e.tools) == 5)
    first = await harness.stats("echo")

    # exposure and timeout apply to the live session: same process, same handshake
    await harness.configure("echo", stdio(tools=["echo", "stats"], timeout=30))
    await harness.wait_status("echo", "ready", lambda e: sorted(t.tool for t in e.tools) == ["echo", "stats"])
    assert await harness.stats("echo") == first
    hidden = await harness.call("echo", "add", {"a": 1, "b": 2})
    assert hidden.error is not None and hidden.error.kind is ErrorKind.UNKNOWN_TOOL

    # anything about the connection itself restarts the server
    await harness.configure("echo", stdio(tools=["echo", "stats"], env={"ECHO_FLAVOUR": "new"}))
    await poll_until(lambda: gone(first["pid"]), "the old stdio child to exit")
    second = await harness.stats("echo")
    assert second["pid"] != first["pid"]

    await harness.servers.delete("echo")
    await poll_until(lambda: _absent(harness, "echo"), "the catalog entry to be deleted")
    outcome = await harness.call("echo", "echo", {"text": "x"})
    assert outcome.error is not None and outcome.error.kind is ErrorKind.UNKNOWN_TOOL
    await poll_until(lambda: gone(second["pid"]), "the removed server's child to exit")


async def test_disabled_server_is_not_run(harness: Harness, executor: ExecutorService) -> None:
    await harness.configure("echo", stdio())
    await harness.wait_status("echo", "ready")
    await harness.configure("echo", stdio(disabled=True))
    await poll_until(lambda: _absent(harness, "echo"), "the disabled server's catalog entry to go")
    assert "echo" not in executor.upstreams


async def test_tool_list_changes_are_republished(harness: Harness, executor: ExecutorService) -> None:
    # warn: a tool added after the first listing is served, flagged (tofu would quarantine it until a
    # person approves it: tests/integration/test_supply_chain.py)
    await harness.configure("changing", stdio(CHANGING, pinning="warn"))
    entry = await harness.wait_status("changing", "ready")
    assert [t.tool for t in entry.tools] == ["grow"]
    assert await harness.text("changing", "grow", {"name": "sprout"}) == "added sprout"
    await harness.wait_status("changing", "ready", lambda e: "sprout" in {t.tool for t in e.tools})
    assert await harness.text("changing", "sprout") == "sprout"


async def _absent(harness: Harness, name: str) -> bool:
    return await harness.entry(name) is None


# ---------------------------------------------------------------------------- shutdown


async def test_stop_leaves_no_stdio_server_children(harness: Harness, settings: ExecutorSettings) -> None:
    before = _server_children(os.getpid())
    service = ExecutorService(settings)
    await service.start()
    await harness.configure("a", stdio())
    await harness.configure("b", stdio(NOTES))
    await harness.wait_status("a", "ready")
    await harness.wait_status("b", "ready")
    pid = (await harness.stats("a"))["pid"]
    children = _server_children(os.getpid()) - before
    assert pid in children and len(children) == 2
    await service.stop()
    for child in children:
        assert process_gone(child), f"stdio child {child} survived the executor's stop()"


async def test_executor_process_exits_cleanly_on_sigterm(harness: Harness, nats_url: str) -> None:
    await harness.configure("echo", stdio())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.executor",
        env={**os.environ, "BASTION_NATS_URL": nats_url, "BASTION_LOG_LEVEL": "WARNING"},
    )
    try:
        await harness.wait_status("echo", "ready")
        pid = (await harness.stats("echo"))["pid"]
        assert pid in _server_children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), WAIT) == 0
        await poll_until(lambda: gone(pid), "the stdio child to exit with the executor")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _server_children(pid: int) -> set[int]:
    """Live children of `pid` running an upstream server script, from /proc (Linux)."""
    found: set[int] = set()
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z" and b"_server.py" in (proc / "cmdline").read_bytes():
                found.add(int(proc.name))
    return found


# ---------------------------------------------------------------------------- calls on one executor
# These tests only configure and call, so they share one executor and its upstreams (`shared`). They
# come last so that it stops with the last of them: an executor re-lists each upstream every 2 s
# (`drift_interval`), which kept up through the tests above would cost much of what the shared starts save.


async def test_catalog_and_calls_over_every_transport(shared: Harness, http_url: str, sse_url: str) -> None:
    await shared.configure("local", stdio())
    await shared.configure("remote", ServerConfig(url=http_url))
    await shared.configure("legacy", ServerConfig(url=sse_url, type="sse"))
    for name in ("local", "remote", "legacy"):
        entry = await shared.wait_status(name, "ready")
        assert {t.tool for t in entry.tools} == {"echo", "add", "sleep", "fail", "stats"}
        echo = next(t for t in entry.tools if t.tool == "echo")
        assert echo.definition["name"] == "echo"
        assert echo.definition["inputSchema"]["required"] == ["text"]
        assert echo.definition["annotations"]["readOnlyHint"] is True
        assert entry.protocol_version
        assert await shared.text(name, "echo", {"text": f"hi {name}"}) == f"hi {name}"
        outcome = await shared.call(name, "add", {"a": 2, "b": 3})
        assert outcome.result is not None and outcome.result["structuredContent"] == {"result": 5}
        assert outcome.upstream_ms is not None


async def test_two_servers_share_a_tool_name(shared: Harness) -> None:
    await shared.configure("echo", stdio(ECHO))
    await shared.configure("notes", stdio(NOTES))
    await shared.wait_status("echo", "ready")
    notes = await shared.wait_status("notes", "ready")
    assert {"add_note", "list_notes", "search", "echo"} <= {t.tool for t in notes.tools}
    assert await shared.text("echo", "echo", {"text": "x"}) == "x"
    assert await shared.text("notes", "echo", {"text": "x"}) == "notes: x"


async def test_tool_error_is_a_result_not_an_error(shared: Harness) -> None:
    await shared.configure("echo", stdio())
    await shared.wait_status("echo", "ready")
    outcome = await shared.call("echo", "fail", {"message": "boom"})
    assert outcome.error is None
    assert outcome.result is not None and outcome.result["isError"] is True
    assert "boom" in outcome.result["content"][0]["text"]


async def test_invalid_arguments_name_the_field(shared: Harness) -> None:
    await shared.configure("echo", stdio())
    await shared.wait_status("echo", "ready")
    missing = await shared.call("echo", "echo", {})
    assert missing.error is not None and missing.error.kind is ErrorKind.INVALID_ARGUMENTS
    assert missing.error.message == "arguments.text: required, but missing"
    wrong = await shared.call("echo", "add", {"a": 1, "b": "two"})
    assert wrong.error is not None and wrong.error.kind is ErrorKind.INVALID_ARGUMENTS
    assert wrong.error.message.startswith("arguments.b: ")


async def test_slow_tool_times_out_and_the_session_survives(shared: Harness) -> None:
    await shared.configure("echo", stdio())
    await shared.configure("strict", stdio(timeout=0.5))
    await shared.wait_status("echo", "ready")
    await shared.wait_status("strict", "ready")
    by_caller = await shared.call("echo", "sleep", {"seconds": 30}, deadline=1.0)
    assert by_caller.error is not None and by_caller.error.kind is ErrorKind.UPSTREAM_TIMEOUT
    assert "seconds" in by_caller.error.message
    by_server = await shared.call("strict", "sleep", {"seconds": 30}, deadline=20)
    assert by_server.error is not None and by_server.error.kind is ErrorKind.UPSTREAM_TIMEOUT
    assert "0.5 seconds" in by_server.error.message
    assert await shared.text("echo", "echo", {"text": "after"}) == "after"
    assert (await shared.stats("echo"))["handshakes"] == 1


async def test_one_session_is_reused_across_calls(shared: Harness, http_url: str) -> None:
    await shared.configure("local", stdio())
    await shared.configure("remote", ServerConfig(url=http_url))
    for name in ("local", "remote"):
        await shared.wait_status(name, "ready")
        before = await shared.stats(name)
        await asyncio.gather(*(shared.call(name, "echo", {"text": str(i)}) for i in range(20)))
        after = await shared.stats(name)
        assert after == before == {"pid": before["pid"], "handshakes": 1}
