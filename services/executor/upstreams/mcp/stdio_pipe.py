"""The stdio transport: the SDK's `stdio_client`, with the lines a lean link wants taken off the pipe as bytes.

Writing a request through `stdio_client`'s write stream and taking its answer off its read stream
costs ~195 µs of CPU per call (a memory-stream hop each way, a pydantic dump of the request, a
pydantic validation of every line read); the same exchange on the pipes directly costs ~55
(docs/benchmarks.md). So lean requests are written to the child's stdin as JSON lines, and each line
read is first offered to the lean link (`StdioLink.line`): the answer to one of its requests, or a
log message, is taken there; every other line is parsed and handed to the SDK session exactly as
`stdio_client` does.

Starting and stopping the child are the SDK's own code (`mcp.client.stdio`, pinned: the executable
lookup, the spawn in its own process group or job object, the spec's shutdown sequence with every
wait bounded); only the two pipe tasks are this module's.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TextIO

import anyio
import anyio.lowlevel
import mcp_types as types
import orjson
from mcp.client import stdio as sdk
from mcp.client._transport import TransportStreams
from mcp.client.stdio import StdioServerParameters
from mcp.shared.message import SessionMessage

__all__ = ["LineTaker", "Overlong", "SendLine", "stdio_pipe"]

LineTaker = Callable[[bytes], Awaitable[bool]]
"""Offered each line read: True when it took the line (the SDK session never sees it)."""
Overlong = Callable[[int | str], bool]
"""Given the id of a line too long to read that answers a request: True when that was a lean
request (now failed); otherwise the SDK session gets an error answer to it in its place."""
_ANSWER_ID = re.compile(rb'"id"\s*:\s*(-?[0-9]+|"[^"\\]*")')
_HEAD = 4096
"""Bytes of an overlong line kept to tell whose answer it was (its id is near the start)."""
SendLine = Callable[[bytes], Awaitable[None]]
"""Writes one whole line (newline included) to the child's stdin."""


@asynccontextmanager
async def stdio_pipe(
    server: StdioServerParameters,
    errlog: TextIO,
    take: LineTaker | None = None,
    max_line: int | None = None,
    overlong: Overlong | None = None,
) -> AsyncIterator[tuple[TransportStreams, SendLine]]:
    """`mcp.client.stdio.stdio_client(server, errlog)`, offering each line to `take` first.

    And also yielding a writer of raw lines to the child's stdin. Lines are UTF-8 (the SDK's default, and
    what `stdio.stdio_parameters` gives). A line longer than `max_line` bytes is not buffered past that:
    its start goes to `overlong`, the rest is skipped up to its end (the SDK's reader would hold any line
    whole, however long)."""
    if server.encoding.lower().replace("-", "") != "utf8":
        raise ValueError(f"stdio_pipe reads UTF-8 lines, not {server.encoding}")
    errors = server.encoding_error_handler
    command = await sdk._get_executable_command(server.command)
    process = await sdk._create_platform_compatible_process(
        command=command,
        args=server.args,
        env=sdk.get_default_environment() | (server.env or {}),
        errlog=errlog,
        cwd=server.cwd,
    )
    # as in the SDK: no awaits until the task group is entered, or a cancellation would leak the child
    read_stream_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_stream_reader = anyio.create_memory_object_stream[SessionMessage](0)
    shutting_down = False
    writer_done = anyio.Event()
    assert process.stdin is not None and process.stdout is not None, "the child is spawned with pipes"
    stdin, stdout = process.stdin, process.stdout

    async def deliver(line: bytes) -> None:
        if max_line is not None and len(line) > max_line:
            await too_long(line[:_HEAD])
        elif take is None or not await take(line):
            await read_stream_writer.send(_parsed(line, errors))

    async def too_long(head: bytes) -> None:
        assert max_line is not None
        request_id = _answer_id(head)
        if request_id is not None and overlong is not None and overlong(request_id):
            return
        sdk.logger.warning("MCP server wrote a line of more than %d bytes; dropped", max_line)
        await read_stream_writer.send(_dropped(request_id, max_line))

    async def stdout_reader() -> None:
        try:
            async with read_stream_writer:
                try:
                    await _split_lines(stdout, max_line, deliver, too_long)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return  # the session is gone; only the drain below remains
                finally:
                    await sdk._drain_stdout(process)
        except anyio.ClosedResourceError:
            pass  # our own shutdown closed stdout under the read
        except (anyio.BrokenResourceError, ConnectionError):
            if not shutting_down:
                sdk.logger.exception("Reading from the MCP server's stdout failed mid-session")

    async def stdin_writer() -> None:
        try:
            async with write_stream_reader:
                async for session_message in write_stream_reader:
                    json = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await stdin.send((json + "\n").encode("utf-8", errors))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_stream_writer.aclose()  # the session sees the connection end, not a hang
        finally:
            writer_done.set()

    async def shutdown() -> None:
        """The SDK's: stop traffic, flush what was accepted, stop the child, release the streams."""
        read_stream.close()
        write_stream.close()
        with anyio.move_on_after(sdk._WRITER_FLUSH_TIMEOUT) as flush_scope:
            await writer_done.wait()
        if flush_scope.cancelled_caught:
            await anyio.lowlevel.cancel_shielded_checkpoint()
        await sdk._stop_server_process(process)
        await sdk._aclose_all(read_stream, write_stream, read_stream_writer, write_stream_reader)
        await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stdout_reader)
        tg.start_soon(stdin_writer)
        try:
            yield (read_stream, write_stream), stdin.send
        finally:
            shutting_down = True
            with anyio.CancelScope(shield=True):  # the child must not outlive a cancelled caller
                await shutdown()
            tg.cancel_scope.cancel()
    await anyio.lowlevel.cancel_shielded_checkpoint()


async def _split_lines(
    stdout: AsyncIterable[bytes],
    max_line: int | None,
    deliver: Callable[[bytes], Awaitable[None]],
    too_long: Callable[[bytes], Awaitable[None]],
) -> None:
    """Each line read from `stdout` (without its newline) to `deliver`.

    Of a line longer than `max_line` bytes only its start goes to `too_long`, and the rest is skipped up
    to its end."""
    parts: list[bytes] = []  # the line being read, in pieces (no copy per chunk)
    size, skipping = 0, False
    async for chunk in stdout:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:  # never inside a UTF-8 character
            if not skipping:
                piece = chunk[start:end]
                await deliver(b"".join((*parts, piece)) if parts else piece)
            parts, size, skipping = [], 0, False
            start = end + 1
        if start < len(chunk) and not skipping:
            parts.append(chunk[start:])
            size += len(chunk) - start
            if max_line is not None and size > max_line:
                await too_long(b"".join(parts)[:_HEAD])
                parts, size, skipping = [], 0, True


def _answer_id(head: bytes) -> int | str | None:
    """The id of the request a line answers, from its start (servers write `id` before `result`).

    None when the line does not start as an answer does."""
    found = _ANSWER_ID.search(head)
    if found is None or b'"method"' in head:
        return None
    request_id: int | str = orjson.loads(found.group(1))
    return request_id


def _dropped(request_id: int | str | None, limit: int) -> SessionMessage | Exception:
    """What the SDK session gets for a line too long to read.

    An error answer to its request when the line answers one (so that request fails now, not at its
    timeout), else an error."""
    if request_id is None:
        return ValueError(f"a line of more than {limit:,} bytes was dropped")
    error = types.ErrorData(
        code=types.INTERNAL_ERROR,
        message=f"the server's answer is more than {limit:,} bytes (BASTION_MAX_RESULT_BYTES); it was dropped",
    )
    return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))


def _parsed(line: bytes, errors: str) -> SessionMessage | Exception:
    """A line for the SDK session: its message, or the error it is (as `stdio_client` reports it)."""
    try:
        text = line.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        sdk.logger.warning("MCP server wrote a line that is not UTF-8: %s", exc)
        return exc
    return sdk._parse_line(text)
