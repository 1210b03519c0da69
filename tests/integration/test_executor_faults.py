"""Failure isolation in the executor: one upstream breaking in various ways while another keeps
answering. Every wait is on a condition with a timeout; no assertion is about timing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from libs.common.contracts.config import CircuitBreakerConfig, ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome
from libs.common.settings import ExecutorSettings
from services.executor.service import ExecutorService
from tests.integration.test_executor import ECHO, Harness, harness, http_upstream, stdio
from tests.support.egress import LOOPBACK_UPSTREAMS
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration
__all__ = ["harness"]  # the fixture, re-exported for pytest

ROOT = Path(__file__).resolve().parents[2]
FAULTY = str(ROOT / "tests" / "support" / "faulty_server.py")


@pytest.fixture
def settings(nats_url: str) -> ExecutorSettings:
    return ExecutorSettings(
        nats_url=nats_url,
        connect_timeout=10.0,
        reconnect_max_backoff=0.2,
        health_interval=60,
        egress=LOOPBACK_UPSTREAMS,
    )


@pytest.fixture
async def executor(settings: ExecutorSettings) -> AsyncIterator[ExecutorService]:
    async with ExecutorService(settings) as service:
        yield service


def breaker(failures: int = 2, reset: float = 0.5) -> CircuitBreakerConfig:
    return CircuitBreakerConfig(failure_threshold=failures, reset_timeout=reset)


@contextlib.asynccontextmanager
async def healthy_traffic(h: Harness) -> AsyncIterator[list[int]]:
    """Call the healthy server in a loop while the body runs; every answer must be exact."""
    await h.configure("good", stdio(ECHO))
    await h.wait_status("good", "ready")
    answered = [0]
    stop = asyncio.Event()

    async def loop() -> None:
        i = 0
        while not stop.is_set():
            assert await h.text("good", "echo", {"text": f"ping {i}"}) == f"ping {i}"
            outcome = await h.call("good", "add", {"a": i, "b": 1})
            assert outcome.error is None and outcome.result is not None, outcome.error
            assert outcome.result["structuredContent"] == {"result": i + 1}
            answered[0] += 1
            i += 1
            # a steady stream through every fault, not a spin: flat out, the loop alone burns a core
            await asyncio.sleep(0.01)

    task = asyncio.create_task(loop())
    try:
        await poll_until(lambda: answered[0] > 0, "the healthy server to answer")
        yield answered
        before = answered[0]
        await poll_until(lambda: answered[0] > before or task.done(), "more healthy answers")
    finally:
        stop.set()
        await task  # re-raises any wrong answer


async def breaker_state(h: Harness, name: str, state: str) -> Any:
    async def check() -> Any:
        entry = await h.entry(name)
        return entry if entry is not None and entry.breaker is not None and entry.breaker.state == state else None

    return await poll_until(check, f"the breaker of {name!r} to be {state!r} in the catalog")


def faulty(tmp_path: Path, **extra: Any) -> ServerConfig:
    return stdio(FAULTY, env={"FAULTY_DIR": str(tmp_path)}, sandbox={"write": [str(tmp_path)]}, **extra)


# ---------------------------------------------------------------------------- killed mid-call


async def _killed_once_reached(
    harness: Harness, folder: Path, tool: str, key: str, release: bool = True
) -> CallOutcome:
    """The outcome of calling `tool` of the server "bad" with `key`, its server SIGKILLed as soon as
    the call reached it; `release` first lets a later attempt with that key answer (`<key>.done`)."""
    call = asyncio.create_task(harness.call("bad", tool, {"key": key}, deadline=60))
    started = folder / f"{key}.started"
    await poll_until(started.exists, f"call {key} to reach the server")
    if release:
        (folder / f"{key}.done").write_text("")
    os.kill(int(started.read_text()), signal.SIGKILL)
    return await call


async def test_killed_mid_call(harness: Harness, executor: ExecutorService, tmp_path: Path) -> None:
    await harness.configure("bad", faulty(tmp_path, circuit_breaker=breaker(failures=3, reset=600)))
    await harness.wait_status("bad", "ready")
    async with healthy_traffic(harness):
        # not annotated: the in-flight call fails at once with upstream_unavailable, never re-sent
        outcome = await _killed_once_reached(harness, tmp_path, "hang_once_unsafe", "u")
        assert outcome.error is not None and outcome.error.kind is ErrorKind.UPSTREAM_UNAVAILABLE, outcome.error
        assert (tmp_path / "u.attempts").read_text() == "x"

        # read-only: re-sent once the server is back, and answered
        outcome = await _killed_once_reached(harness, tmp_path, "hang_once", "s")
        assert outcome.error is None and outcome.result is not None, outcome.error
        assert outcome.result["content"][0]["text"] == "done s"

        # the success reset the count; three kills in a row open the breaker (threshold 3)
        for key in ("k1", "k2", "k3"):
            outcome = await _killed_once_reached(harness, tmp_path, "hang_once_unsafe", key, release=False)
            assert outcome.error.kind is ErrorKind.UPSTREAM_UNAVAILABLE  # type: ignore[union-attr]
        # reconnected, tools still listed, but calls refused at once
        await harness.wait_status("bad", "ready", lambda e: e.health == "open" and e.breaker.state == "open")
        refused = await harness.call("bad", "echo", {"text": "x"})
        assert refused.error is not None and refused.error.kind is ErrorKind.CIRCUIT_OPEN
        assert "'bad'" in refused.error.message and "seconds" in refused.error.message


# ---------------------------------------------------------------------------- hangs


async def test_hanging_tool_times_out_is_cancelled_and_opens_the_breaker(
    harness: Harness, executor: ExecutorService, tmp_path: Path
) -> None:
    await harness.configure("bad", faulty(tmp_path, timeout=0.5, retries=2, circuit_breaker=breaker(2, 600)))
    await harness.wait_status("bad", "ready")
    async with healthy_traffic(harness):
        outcome = await harness.call("bad", "hang", deadline=30)
        assert outcome.error is not None and outcome.error.kind is ErrorKind.UPSTREAM_TIMEOUT
        assert "0.5 seconds" in outcome.error.message

        async def cancelled() -> bool:
            counted = await harness.call("bad", "cancelled")
            return counted.result is not None and counted.result["structuredContent"]["result"] >= 1

        await poll_until(cancelled, "the server to see notifications/cancelled")
        for _ in range(2):
            hung = await harness.call("bad", "hang", deadline=30)
            assert hung.error is not None and hung.error.kind is ErrorKind.UPSTREAM_TIMEOUT
        refused = await harness.call("bad", "echo", {"text": "x"})
        assert refused.error is not None and refused.error.kind is ErrorKind.CIRCUIT_OPEN
        await breaker_state(harness, "bad", "open")


# ---------------------------------------------------------------------------- garbage over HTTP


@contextlib.asynccontextmanager
async def garbage_http() -> AsyncIterator[str]:
    """An HTTP server that answers every request with 200 and a body that is not JSON."""
    body = b"<html>this is not JSON-RPC</html>"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.close()


async def test_garbage_http_upstream(harness: Harness, executor: ExecutorService) -> None:
    async with garbage_http() as url, healthy_traffic(harness):
        await harness.configure("bad", ServerConfig(url=url, circuit_breaker=breaker(3, 600)))
        entry = await breaker_state(harness, "bad", "open")
        assert entry.status == "unavailable" and entry.health == "down" and entry.error
        outcome = await harness.call("bad", "echo", {"text": "x"})
        assert outcome.error is not None and outcome.error.kind is ErrorKind.UPSTREAM_UNAVAILABLE


async def test_an_sse_session_whose_post_failed_is_replaced_not_left_deaf(
    harness: Harness, executor: ExecutorService
) -> None:
    """The SDK's HTTP+SSE client stops sending for good after one failed POST while its event stream
    stays open: the session must be replaced at once, not kept answering "connection closed" to
    every call until a health check notices (observed: four tests' calls refused in a row)."""
    async with http_upstream(FAULTY, "sse") as url:
        await harness.configure("flaky", ServerConfig(url=url, type="sse", circuit_breaker=breaker(50, 600)))
        await harness.wait_status("flaky", "ready")
        assert await harness.text("flaky", "echo", {"text": "before"}) == "before"
        refused = await harness.call("flaky", "echo", {"text": "refuse-this-post"})
        assert refused.error is not None and refused.error.kind is ErrorKind.UPSTREAM_UNAVAILABLE, refused
        for n in range(3):
            assert await harness.text("flaky", "echo", {"text": f"after {n}"}) == f"after {n}"


# ---------------------------------------------------------------------------- flapping


class FlappingProxy:
    """TCP proxy in front of a real server; `down()` drops every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = True
        self._writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def down(self) -> None:
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


async def test_flapping_upstream(harness: Harness, executor: ExecutorService) -> None:
    async with http_upstream(ECHO, "http") as url, healthy_traffic(harness):
        proxy = FlappingProxy(int(url.rsplit(":", 1)[1].split("/")[0]))
        port = await proxy.start()
        await harness.configure(
            "flap", ServerConfig(url=f"http://127.0.0.1:{port}/mcp", circuit_breaker=breaker(2, 0.3))
        )
        await harness.wait_status("flap", "ready")
        for cycle in range(3):
            proxy.up = True

            async def answers() -> bool:
                outcome = await harness.call("flap", "echo", {"text": "up"}, deadline=5)
                return outcome.error is None

            await poll_until(answers, f"the flapping server to answer (cycle {cycle})")
            await breaker_state(harness, "flap", "closed")
            proxy.down()

            async def opened() -> bool:
                outcome = await harness.call("flap", "echo", {"text": "down"}, deadline=5)
                assert outcome.error is not None and outcome.error.kind in (
                    ErrorKind.UPSTREAM_UNAVAILABLE,
                    ErrorKind.CIRCUIT_OPEN,
                ), outcome.error
                return executor.upstreams["flap"].breaker.state != "closed"

            await poll_until(opened, f"the breaker to open (cycle {cycle})")
            await breaker_state(harness, "flap", "open")
        proxy.up = True
        await poll_until(answers, "the flapping server to answer at the end")
        assert proxy.server is not None
        proxy.server.close()


# ---------------------------------------------------------------------------- stdio supervision


async def test_stdio_garbage_and_stderr_are_logged(
    harness: Harness, executor: ExecutorService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await harness.configure("noisy", faulty(tmp_path))
    await harness.wait_status("noisy", "ready")
    for i in range(3):
        assert await harness.text("noisy", "noisy", {"text": f"n{i}"}) == f"n{i}"

    def logged(fragment: str) -> bool:
        return any(fragment in r.getMessage() for r in caplog.records)

    await poll_until(lambda: logged("[noisy] faulty server"), "the server's stderr in the log")
    assert any("JSON" in r.getMessage() or "JSONRPC" in r.getMessage() for r in caplog.records)


def _children(pid: int) -> tuple[set[int], set[int]]:
    """(live, zombie) child pids of `pid`, from /proc."""
    live: set[int] = set()
    zombies: set[int] = set()
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                (zombies if fields[0] == "Z" else live).add(int(proc.name))
    return live, zombies


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_crash_looping_stdio_server_leaks_nothing(harness: Harness, nats_url: str) -> None:
    settings = ExecutorSettings(nats_url=nats_url, connect_timeout=5.0, reconnect_max_backoff=0.001)
    crash = ServerConfig(command="/bin/sh", args=["-c", 'echo "crashing $$" >&2; echo not-json; exit 3'])
    async with ExecutorService(settings) as service:
        children_before = _children(os.getpid())
        fds_before = _fds()
        await harness.configure("crashy", crash)
        await poll_until(lambda: "crashy" in service.upstreams, "the server to be configured")
        upstream = service.upstreams["crashy"]
        await poll_until(lambda: upstream.connects >= 100, "100 restarts", within=120)
        fds_mid = _fds()
        await poll_until(lambda: upstream.connects >= 200, "200 restarts", within=120)
        fds_late = _fds()
        await harness.servers.delete("crashy")
        await poll_until(lambda: "crashy" not in service.upstreams, "the server to be removed")
        await poll_until(lambda: upstream.state == "stopped", "the upstream to stop")

        def settled() -> bool:
            live, zombies = _children(os.getpid())
            return live <= children_before[0] and not zombies

        await poll_until(settled, "every crashed child to be reaped")
        assert fds_late - fds_mid <= 5, (fds_before, fds_mid, fds_late)  # no growth with restarts
        await poll_until(lambda: _fds() <= fds_before + 5, f"fds back near {fds_before}")


async def test_health_ping_reconnects_a_frozen_session(harness: Harness, nats_url: str, tmp_path: Path) -> None:
    settings = ExecutorSettings(nats_url=nats_url, connect_timeout=10.0, reconnect_max_backoff=0.2, health_interval=0.3)
    async with ExecutorService(settings):
        await harness.configure("frozen", faulty(tmp_path))
        await harness.wait_status("frozen", "ready", lambda e: e.health == "healthy")
        first = (await harness.call("frozen", "pid")).result["structuredContent"]["result"]  # type: ignore[index]
        os.kill(first, signal.SIGSTOP)  # alive but deaf: only a health check can tell
        try:

            async def replaced() -> bool:
                outcome = await harness.call("frozen", "pid", deadline=3)
                return outcome.result is not None and outcome.result["structuredContent"]["result"] != first

            await poll_until(replaced, "the frozen server to be replaced after a failed ping")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(first, signal.SIGKILL)
