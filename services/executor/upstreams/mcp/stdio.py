"""The stdio kind: the server is a child process speaking MCP on its stdin and stdout.

The child is started and stopped by the SDK's own code (`stdio_pipe`); its stderr goes to the
executor's log, line by line, its last lines kept for the server's status (`stderr`). It runs in
a box of its own (`stdio_sandbox`) unless its `sandbox.mode` is off. Lean calls
are written to its stdin as JSON lines and their answers taken off its stdout before the SDK
session sees them (`lean_stdio.StdioLink`).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from mcp.client._transport import TransportStreams
from mcp.client.stdio import StdioServerParameters, get_default_environment

from libs.common.contracts.config import ServerConfig

from ...answer_limits import answer_cutoff
from ..interface import Connector, SessionHooks
from .lean import LeanLink
from .lean_session import lean_session
from .lean_stdio import StdioLink
from .mcp_session import McpConnector
from .stderr import stderr_to_log
from .stdio_pipe import stdio_pipe
from .stdio_sandbox import StdioRoot, launch
from .watched_stream import WatchedReadStream

__all__ = ["connector", "open_streams", "stdio_parameters"]


def stdio_parameters(name: str, config: ServerConfig, root: StdioRoot) -> StdioServerParameters:
    """The child gets the SDK's short list of safe variables.

    (PATH, HOME, ...), its sandbox's cache folders, and the configured `env`, never the executor's whole
    environment, which holds Bastion's own settings."""
    env = get_default_environment() | config.env
    started = launch(name, config, root, env)
    return StdioServerParameters(
        command=started.command, args=started.args, env=get_default_environment() | started.env | config.env,
        cwd=started.cwd,
    )  # fmt: skip


@asynccontextmanager
async def open_streams(
    name: str, config: ServerConfig, hooks: SessionHooks, on_lean: Callable[[LeanLink], None], root: StdioRoot
) -> AsyncIterator[TransportStreams]:
    """Spawn the child and yield its streams; its stderr is logged, each line prefixed with `name`.

    A lean call's answer too long for a result of `hooks.settings.max_result` bytes is not read past
    `answer_cutoff` and fails the call (`answer_limits.AnswerTooLarge`)."""
    max_result = hooks.settings.max_result
    cutoff = answer_cutoff(max_result) if max_result is not None else None
    async with stderr_to_log(name, hooks.last_words) as pipe:
        link = StdioLink(on_log=hooks.agents.on_log, max_result=max_result)
        opened = stdio_pipe(stdio_parameters(name, config, root), pipe.errlog, link.line, cutoff, link.overlong)
        async with opened as ((read_stream, write_stream), send):
            pipe.spawned()
            link.send_line = send
            on_lean(link)
            yield WatchedReadStream(read_stream, hooks.on_end, link), write_stream


def connector(name: str, config: ServerConfig, hooks: SessionHooks) -> Connector:
    """Its sandbox's working folder lies in the executor's stdio root (`SessionHooks.stdio_root`).

    Or in a private temporary folder of its own when it was given none."""
    root = hooks.settings.stdio_root or StdioRoot.of("")
    return McpConnector(name, config, hooks, functools.partial(open_streams, root=root), lean_session)
