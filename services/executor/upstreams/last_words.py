"""The last lines a server wrote about itself (a stdio child's stderr), kept for its status.

A stdio server that fails to start shows only as "Connection closed (code -32000)" to the SDK; the
real cause ("can't open file ...") is what it wrote on stderr. The executor keeps the last few
lines of each attempt, bounded in lines and characters, and publishes them with the server's status
(`ServerCatalog.stderr_tail`: the admin API and `bastion servers list` show them). The server's own
configured credentials (its `env` and `headers` values) are masked wherever they appear: a server
may well print its configuration when it fails.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable

from libs.common.contracts.config import ServerConfig

__all__ = ["MASK", "LastWords", "configured_secrets"]

MASK = "***"
LINES = 8
"""Lines kept: enough for a traceback's end, small enough for a status line."""
LINE_CHARS = 512
TOTAL_CHARS = 4096

_SECRET_NAME = re.compile(r"(?i)token|secret|key|pass|auth|cred|session|cookie|private")
_SHORTEST = 6
"""Values shorter than this are masked only under a secret-looking name: masking every `1` or `true`
would garble the lines without protecting anything."""


def configured_secrets(config: ServerConfig) -> list[str]:
    """The values in `config` that may be credentials.

    Every `env` and `headers` value of `_SHORTEST` characters or more, any value under a secret-looking
    name, and the token part of an `Authorization`-style header ("Bearer <token>")."""
    found: set[str] = set()
    for name, value in (*config.env.items(), *config.headers.items()):
        value = value.strip()
        if len(value) >= _SHORTEST or (len(value) >= 3 and _SECRET_NAME.search(name)):
            found.add(value)
        _scheme, _, credential = value.partition(" ")
        if credential and len(credential.strip()) >= 3:
            found.add(credential.strip())
    return sorted(found, key=len, reverse=True)  # longest first: a secret holding another is masked whole


class LastWords:
    """The newest lines of one server's last attempt, masked and bounded."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = list(secrets)
        self._lines: deque[str] = deque(maxlen=LINES)

    def mask(self, line: str) -> str:
        """`line` with every configured secret replaced by `MASK`."""
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, MASK)
        return line

    def clear(self) -> None:
        """A new attempt starts: what the last one said is no longer news."""
        self._lines.clear()

    def add(self, line: str) -> None:
        """Keep `line` (already masked) as the newest."""
        self._lines.append(line[:LINE_CHARS])

    def lines(self) -> list[str]:
        """The newest lines that fit in `TOTAL_CHARS` together, oldest first."""
        kept: list[str] = []
        size = 0
        for line in reversed(self._lines):
            size += len(line) + 1
            if size > TOTAL_CHARS:
                break
            kept.append(line)
        return kept[::-1]
