"""A stdio server's stderr, line by line into the executor's log, prefixed with the server's name.

And the last lines kept for its status (`last_words.LastWords`), its configured secrets masked in both.

The SDK hands `errlog` to the child as its stderr, so it must be a real file descriptor: we give
it the write end of a pipe, close our copy once the child holds it (so the read end sees EOF
when the child exits), and pump the read end into `logging` without threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import TextIO

import anyio

from ..last_words import LastWords

__all__ = ["StderrPipe", "stderr_to_log"]

log = logging.getLogger(__name__)

_MAX_LINE = 4000
"""Longer lines are cut: a server dumping a blob on stderr must not flood the log record."""
_CHUNK = 65536
_MAX_PARTIAL = 4 * _CHUNK


class StderrPipe:
    """The child's end (`errlog`) and the pump state for one spawn."""

    def __init__(self, name: str, last_words: LastWords | None = None) -> None:
        self.name = name
        self._last_words = last_words or LastWords()
        self._read_fd, write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        self.errlog: TextIO = open(write_fd, "w", closefd=True)  # closed by `spawned` or `close`
        self._partial = b""

    def spawned(self) -> None:
        """The child has its copy of the write end: drop ours, or EOF would never come."""
        self.errlog.close()

    def _emit(self, data: bytes, final: bool = False) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = b"" if final else lines.pop()
        if len(self._partial) > _MAX_PARTIAL:  # a line without end: logged in pieces, never held whole
            lines.append(self._partial)
            self._partial = b""
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if line:
                line = self._last_words.mask(line)[:_MAX_LINE]  # masked whole: a cut must not leave half a secret
                self._last_words.add(line)
                log.info("[%s] %s", self.name, line)

    def _read_available(self) -> bool:
        """Read what is there; False at EOF."""
        while True:
            try:
                data = os.read(self._read_fd, _CHUNK)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            self._emit(data)

    async def pump(self) -> None:
        while self._read_available():
            await anyio.wait_readable(self._read_fd)

    def close(self) -> None:
        """Log what is left in the pipe (a crash's last words), then release both ends."""
        if not self.errlog.closed:
            self.errlog.close()
        with contextlib.suppress(OSError):
            self._read_available()
            self._emit(b"", final=True)
        with contextlib.suppress(OSError):
            os.close(self._read_fd)


@contextlib.asynccontextmanager
async def stderr_to_log(name: str, last_words: LastWords | None = None) -> AsyncIterator[StderrPipe]:
    """Yield a `StderrPipe` whose `errlog` goes to the child.

    Its lines are logged until exit, and the last of them kept in `last_words` (cleared first: they are
    this spawn's)."""
    if last_words is not None:
        last_words.clear()
    pipe = StderrPipe(name, last_words)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipe.pump)
            try:
                yield pipe
            finally:
                tg.cancel_scope.cancel()
    finally:
        pipe.close()
