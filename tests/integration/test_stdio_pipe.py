"""The executor's stdio transport (`services.executor.upstreams.mcp.stdio_pipe`) with its lean link
(`lean_stdio.StdioLink` on the pipe) against a real child process: lean answers and log lines are
taken off the pipe as bytes and never reach the SDK session; every other line reaches it as
`stdio_client` would hand it over; the child is stopped on exit, as the SDK stops it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import orjson
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from services.executor.answer_limits import AnswerTooLarge, answer_cutoff
from services.executor.upstreams.mcp.lean_stdio import StdioLink
from services.executor.upstreams.mcp.stdio_pipe import stdio_pipe
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

CHILD = r"""
import json, os, sys, time
with open(os.environ["PIDFILE"], "w") as pidfile:
    pidfile.write(str(os.getpid()))
for line in sys.stdin:
    message = json.loads(line)
    with open(os.environ["SEEN"], "a") as seen:
        seen.write(line)
    if message.get("method") != "tools/call":
        continue
    arguments = message["params"]["arguments"]
    for raw in arguments.get("before", []):  # lines to write before the answer, as latin-1 bytes
        sys.stdout.buffer.write(raw.encode("latin-1") + b"\n")
    time.sleep(arguments.get("delay", 0))
    if arguments.get("answer", True):
        text = arguments.get("text", "") + "x" * arguments.get("pad", 0)
        result = {"content": [{"type": "text", "text": text}], "isError": False}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}) + "\n")
    sys.stdout.flush()
"""

RESULT = {"content": [{"type": "text", "text": "hi"}], "isError": False}
LOG = '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"working bastion-1"}}'
CHANGED = '{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}'


@dataclass
class Piped:
    link: StdioLink
    session: ClientSession
    read: Any
    seen: Path
    pidfile: Path
    logged: list[types.LoggingMessageNotificationParams]

    def requests(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.seen.read_text().splitlines()] if self.seen.exists() else []

    def nothing_for_the_session(self) -> bool:
        return bool(self.read.statistics().tasks_waiting_send == 0)

    async def call(self, **arguments: Any) -> dict[str, Any]:
        with anyio.fail_after(10):
            return await self.link.request(self.session, "tools/call", {"name": "echo", "arguments": arguments})

    async def next_for_session(self) -> Any:
        with anyio.fail_after(10):
            return await self.read.receive()


@asynccontextmanager
async def piped(tmp_path: Path, max_result: int | None = None) -> AsyncIterator[Piped]:
    seen, pidfile = tmp_path / "seen.jsonl", tmp_path / "pid"
    logged: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        await asyncio.sleep(0)  # a callback that yields: the answer must still wait for it
        logged.append(params)

    link = StdioLink(on_log=on_log, max_result=max_result)
    max_line = answer_cutoff(max_result) if max_result is not None else None
    env = {"SEEN": str(seen), "PIDFILE": str(pidfile)}
    params = StdioServerParameters(command=sys.executable, args=["-c", CHILD], env=env)
    with os.fdopen(os.open(os.devnull, os.O_WRONLY), "w") as errlog:
        async with stdio_pipe(params, errlog, link.line, max_line, link.overlong) as ((read, write), send):
            link.send_line = send
            yield Piped(link, ClientSession(read, write), read, seen, pidfile, logged)


async def test_a_lean_call_is_one_line_and_its_answer_never_reaches_the_session(tmp_path: Path) -> None:
    async with piped(tmp_path) as pipe:
        assert await pipe.call(text="hi") == RESULT
        (request,) = pipe.requests()
        assert request["method"] == "tools/call" and request["id"].startswith("bastion-")
        assert request["params"]["arguments"] == {"text": "hi"}
        assert pipe.nothing_for_the_session()  # the answer was taken off the pipe


async def test_a_log_line_goes_to_on_log_before_the_answer_returns(tmp_path: Path) -> None:
    async with piped(tmp_path) as pipe:
        assert await pipe.call(text="hi", before=[LOG]) == RESULT
        assert [(entry.level, entry.data) for entry in pipe.logged] == [("info", "working bastion-1")]
        assert pipe.nothing_for_the_session()


async def test_other_lines_reach_the_session_as_the_sdk_hands_them_over(tmp_path: Path) -> None:
    async with piped(tmp_path) as pipe:
        call = asyncio.create_task(pipe.call(text="hi", before=[CHANGED, "not json", "\xff\xfe bad utf-8"]))
        changed = await pipe.next_for_session()
        assert isinstance(changed, SessionMessage)
        assert isinstance(changed.message, types.JSONRPCNotification)
        assert changed.message.method == "notifications/tools/list_changed"
        assert isinstance(await pipe.next_for_session(), Exception)  # not JSON
        assert isinstance(await pipe.next_for_session(), UnicodeDecodeError)  # and the pipe goes on
        assert await call == RESULT


async def test_an_abandoned_calls_late_answer_is_dropped_and_the_server_is_told(tmp_path: Path) -> None:
    async with piped(tmp_path) as pipe:
        call = asyncio.create_task(pipe.call(text="late", delay=0.3))
        await poll_until(lambda: len(pipe.requests()) == 1, "the request to reach the child")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await pipe.call(text="hi") == RESULT  # answered after the late one
        assert pipe.nothing_for_the_session()  # the late answer was dropped, not handed to the session
        await poll_until(lambda: len(pipe.requests()) == 3, "the cancellation to reach the child")
        methods = sorted(request["method"] for request in pipe.requests())
        assert methods == ["notifications/cancelled", "tools/call", "tools/call"]


async def test_exiting_stops_the_child_and_a_closed_pipe_fails_the_next_call(tmp_path: Path) -> None:
    async with piped(tmp_path) as pipe:
        assert await pipe.call(text="hi") == RESULT
        pid = int(pipe.pidfile.read_text())
        assert _alive(pid)
    await poll_until(lambda: not _alive(pid), "the child to be stopped")
    pipe.link.closed()
    with pytest.raises(MCPError):
        await pipe.call(text="hi")


async def test_an_answer_longer_than_the_limit_fails_its_call_and_is_never_held_whole(tmp_path: Path) -> None:
    max_result = 1_000
    limit = answer_cutoff(max_result)
    async with piped(tmp_path, max_result=max_result) as pipe:
        with pytest.raises(AnswerTooLarge) as caught:  # 2 MB on one line, read in pipe-sized pieces
            await pipe.call(text="big", pad=2_000_000)
        assert caught.value.limit == max_result  # reported against BASTION_MAX_RESULT_BYTES
        assert await pipe.call(text="hi") == RESULT  # the rest of the long line was skipped, not parsed
        call = asyncio.create_task(pipe.call(text="hi", before=["[" + "1," * 100_000 + "1]"]))
        dropped = await pipe.next_for_session()  # a long line that answers nothing: the session hears of it
        assert isinstance(dropped, ValueError) and f"{limit:,} bytes" in str(dropped)
        assert await call == RESULT
        sdk_answer = '{"jsonrpc":"2.0","id":7,"result":{"contents":"' + "y" * 200_000 + '"}}'
        call = asyncio.create_task(pipe.call(text="hi", before=[sdk_answer]))
        failed = await pipe.next_for_session()  # the SDK's request 7 fails now, not at its timeout
        assert isinstance(failed, SessionMessage) and isinstance(failed.message, types.JSONRPCError)
        assert failed.message.id == 7 and "BASTION_MAX_RESULT_BYTES" in failed.message.error.message
        assert await call == RESULT
        assert pipe.nothing_for_the_session()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
