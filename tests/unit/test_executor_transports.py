"""What a stdio child inherits, and how the executor notices a transport ending."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from libs.common.contracts.config import SandboxConfig, ServerConfig
from services.executor.upstreams.mcp.stdio import stdio_parameters
from services.executor.upstreams.mcp.stdio_sandbox import StdioRoot
from services.executor.upstreams.mcp.watched_stream import WatchedReadStream

pytestmark = pytest.mark.unit


def test_stdio_child_gets_safe_variables_and_its_own_env_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BASTION_SESSION_SECRET", "do-not-leak")
    monkeypatch.setenv("PATH", "/usr/bin")
    config = ServerConfig(
        command="srv", args=["-v"], env={"API_KEY": "k", "PATH": "/opt"}, cwd="/tmp", sandbox=SandboxConfig(mode="off")
    )
    params = stdio_parameters("srv", config, StdioRoot.of(str(tmp_path)))
    assert params.command == "srv" and params.args == ["-v"] and str(params.cwd) == "/tmp"
    assert params.env is not None
    assert "BASTION_SESSION_SECRET" not in params.env
    assert params.env["API_KEY"] == "k"
    assert params.env["PATH"] == "/opt"  # the configured value wins over the inherited one


async def test_watched_stream_reports_end_of_stream_once_read() -> None:
    ended: list[bool] = []
    send, receive = anyio.create_memory_object_stream[int](1)
    watched = WatchedReadStream(receive, lambda: ended.append(True))
    await send.send(1)
    await send.aclose()
    async with watched:  # closing it after the end must not report the end a second time
        assert [item async for item in watched] == [1]
    assert ended == [True]
    assert watched.last_context is None


async def test_watched_stream_reports_local_close() -> None:
    ended: list[bool] = []
    send, receive = anyio.create_memory_object_stream[int](1)
    async with send, WatchedReadStream(receive, lambda: ended.append(True)):
        pass
    assert ended == [True]
