"""The NATS client every service connects with: a request the bus refuses fails at once, saying so.

nats-server answers a publish its permissions refuse (`libs.common.permissions`) with nothing but an
asynchronous `-ERR 'Permissions Violation for Publish to "<subject>"'`, which nats-py hands to the
connection's error callback and nowhere else: the request (a JetStream API call, a KV read, an
object-store chunk, a service request) then waits out its whole timeout and fails as a
`TimeoutError`, indistinguishable from a slow or absent responder. A missing permission looked
exactly like that in production (issue 24: a 5 s timeout, then "could not be fetched").

`BusClient` remembers the subject of each request it has in flight; when the server refuses a
publish to that subject, every such request fails with `BusPermissionError`, naming the subject and
the role, as soon as the refusal arrives (one round trip instead of the timeout).

It also parses and writes message headers for less CPU than nats-py does, to the same bytes and
dicts (`parse_header_lines`, `header_block`): every routed request and acknowledgement carries some.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import _HEADER_KEY_RE, _HEADER_VALUE_NEWLINES
from nats.aio.client import Client as NATS
from nats.protocol import command as prot_command

__all__ = ["BusClient", "BusPermissionError", "header_block", "parse_header_lines", "refused_publish"]

_CRLF = b"\r\n"
_WHITESPACE = re.compile(r"\s").search
"""Finds what `str.isspace` calls space (sre's `\\s` is the same test for a str pattern)."""

_REFUSED_PUBLISH = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)


def refused_publish(error: object) -> str | None:
    """The subject of a publish the server refused, from the error nats-py reports (lower case:
    nats-py lowers the server's text), or None when `error` is something else."""
    found = _REFUSED_PUBLISH.search(str(error))
    return found.group(1).lower() if found else None


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """nats-py 2.16's `Client._parse_header_lines`, rule for rule: lines split at the first colon,
    both sides stripped, a name that is not ASCII or holds whitespace dropped, values decoded as
    UTF-8 with U+FFFD for bad bytes. nats-py looks for whitespace with a generator over the name's
    characters, one step each (about 50 per message here); one regex search costs a third of that.
    tests/unit/test_bus_client_headers.py compares the two, so a nats-py that changes its rules fails there."""
    out: dict[str, str] = {}
    for line in raw.split(_CRLF):
        name, sep, value = line.partition(b":")
        if not sep:  # an empty line has no colon either
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _WHITESPACE(key):
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


_VALID_NAME = _HEADER_KEY_RE.fullmatch
_NAMES: dict[str, str] = {}
"""Header names as given -> as sent, once checked: a service sends the same few names all along."""
_NAMES_KEPT = 256


def header_block(headers: dict[str, str]) -> bytes:
    """nats-py 2.16's header block of `Client._send_publish`, rule for rule: names and values
    stripped, an empty name skipped, a name outside HTTP's token characters refused
    (`BadHeaderError`), line breaks in a value made spaces. nats-py extends a bytearray five times
    per header and matches each name every time; a name checked once and one join cost a third of
    that (4.7 -> 1.5 µs for four headers). tests/unit/test_bus_client_headers.py compares the two."""
    lines = ["NATS/1.0\r\n"]
    for given, value in headers.items():
        name = _NAMES.get(given)
        if name is None:
            name = given.strip()
            if not name:
                continue
            if not _VALID_NAME(name):
                raise nats.errors.BadHeaderError(name)
            if len(_NAMES) < _NAMES_KEPT:
                _NAMES[given] = name
        value = value.strip()
        if "\r" in value or "\n" in value:
            value = value.translate(_HEADER_VALUE_NEWLINES)
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


class BusPermissionError(nats.errors.Error):
    """The server refused this connection's role a publish the request needed."""

    def __init__(self, subject: str, role: str) -> None:
        self.subject, self.role = subject, role
        super().__init__(
            f"nats: the bus refused role {role or '(anonymous)'!r} the publish to {subject!r} this request "
            "needs: that role's permissions (libs/common/permissions.py, rendered into nats-server's "
            "authorization) do not allow it"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class BusClient(NATS):
    """nats-py's client, failing refused requests at once (see the module's doc)."""

    _parse_header_lines = staticmethod(parse_header_lines)

    role: str = ""
    """The role the connection authenticates as (`libs.common.permissions`), named in errors."""

    def __init__(self) -> None:
        super().__init__()
        self._asking: dict[str, tuple[str, asyncio.Future[Any]]] = {}
        """Reply token -> (subject lower-cased, the request's future), for the requests in flight."""
        self._replies = ""
        """The reply prefix of this connection's requests (`_INBOX.<role>.<nuid>.`), once it has one."""

    def reporting(self, error_cb: Callable[[Exception], Awaitable[None]]) -> Callable[[Exception], Awaitable[None]]:
        """`error_cb` for `connect`, failing the requests a refusal it reports is about first."""

        async def on_error(exc: Exception) -> None:
            if (subject := refused_publish(exc)) is not None:
                self.refuse(subject)
            await error_cb(exc)

        return on_error

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        if reply:
            if not self._replies and self._resp_sub_prefix:
                self._replies = self._resp_sub_prefix.decode()
            if self._replies and reply.startswith(self._replies):
                self._remember(subject, reply[len(self._replies) :])
        await super().publish(subject, payload, reply, headers)

    async def _send_publish(
        self, subject: str, reply: str, payload: bytes, payload_size: int, headers: dict[str, Any] | None
    ) -> None:
        if headers is None:
            await super()._send_publish(subject, reply, payload, payload_size, headers)
            return
        # nats-py's own, but for the header block (`header_block`)
        if subject == "":
            raise nats.errors.BadSubjectError
        command = prot_command.hpub_cmd(subject, reply, header_block(headers), payload)
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        await self._send_command(command)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    def _remember(self, subject: str, token: str) -> None:
        future = self._resp_map.get(token)
        if future is not None:  # a request: nats-py's `_request_new_style` made its future
            self._asking[token] = (subject.lower(), future)
            future.add_done_callback(lambda _f: self._asking.pop(token, None))

    def refuse(self, subject: str) -> int:
        """Fail the requests in flight to `subject` (lower case) as refused; how many there were."""
        refused = 0
        for asked, future in list(self._asking.values()):
            if asked == subject and not future.done():
                future.set_exception(BusPermissionError(subject, self.role))
                refused += 1
        return refused
