"""Which audit replica owns an embedded store: the one holding its lock file.

The embedded engine (chdb) is one process's: a second process cannot open a store another has open.
So of two audit replicas configured with one `chdb://` store, the one that takes the lock file beside
it (`<store>.owner`, an exclusive `flock`) serves, and the other stands by until it can take it
(`AuditService`). The kernel drops the lock with its holder, however that dies, so a standby takes the
store over as soon as the owner is gone. A ClickHouse server needs no lock: every replica serves.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["StoreLock"]


class StoreLock:
    """The lock file of the store at `url` (None for a ClickHouse server: nothing to hold)."""

    def __init__(self, url: str) -> None:
        path = url.removeprefix("chdb://") if url.startswith("chdb://") else ""
        self.path = Path(path.rstrip("/") + ".owner") if path else None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self.path is None or self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if it is free (never waits); True if this process holds it now."""
        if self.held:
            return True
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who owns it, for a person looking
        self._fd = fd
        return True

    def release(self) -> None:
        """Let another replica take the store (after it was closed here)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
