"""The NATS client every service connects with: a request the bus refuses fails at once, saying so.

nats-server answers a publish its permissions refuse (`libs.common.bus.permissions`) with nothing but an
asynchronous `-ERR 'Permissions Violation for Publish to "<subject>"'`, which nats-py hands to the
connection's error callback and nowhere else: the request (a JetStream API call, a KV read, an
object-store chunk, a service request) then waits out its whole timeout and fails as a
`TimeoutError`, indistinguishable from a slow or absent responder. A missing permission looked
exactly like that in production: a 5 s timeout, then "could not be fetched", and nothing naming the cause.

`BusClient` remembers the subject of each request it has in flight; when the server refuses a
publish to that subject, every such request fails with `BusPermissionError`, naming the subject and
the role, as soon as the refusal arrives (one round trip instead of the timeout).

It also notices a member that stops answering while the socket stays open (a paused or hung
nats-server: nothing closes the connection, every request just times out). nats-py's own PINGs catch
it after `ping_interval` x `max_outstanding_pings` (`libs.common.settings`); `BusClient` also counts
requests that time out in a row, and after `timeout_streak` of them sends one PING: no PONG within
`ping_wait` seconds (the connect timeout), and the connection moves to another member
(`force_reconnect`). A member that still answers its PING keeps the connection: the responders are
slow, not the bus. Moves are announced to `when_moved` callbacks (`moved()`), so a call waiting on
the connection it left learns it at once (`libs.common.bus.relay`).
`stuck_since(mark)` tells a caller whose request timed out whether the bus was the part that went
silent, so its error can name NATS rather than the service it was asking.

Its `flush` keeps its promise: nats-py 2.16 writes a flush's PING straight to the socket, ahead of
the commands still waiting for its flusher task, so the PONG could come back before the server had
the SUB written just before it, and a message published to that subject then was lost (about 1 in 100
times on a fresh connection, tests/unit/test_bus_client_headers.py). `_send_ping` queues the PING
behind them, as nats-py did before.

A subscription whose callback is `in_place.immediate` has its messages handled as they are parsed,
without its pending queue and task (`in_place` says when); `in_place(sub)` is that handler for a
local lane's publisher too, so the two deliverers share one.

It also parses and writes message headers for less CPU than nats-py does, to the same bytes and
dicts (`parse_header_lines`, `header_block`): every routed request and acknowledgement carries some.
Its `publish` makes nats-py's checks inline (26 -> 20 Python calls for a publish with headers).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import _HEADER_KEY_RE, _HEADER_VALUE_NEWLINES, _SUBJECT_INVALID_RE, PING_PROTO, Srv
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import (
    DEFAULT_SUB_PENDING_BYTES_LIMIT,
    DEFAULT_SUB_PENDING_MSGS_LIMIT,
    Subscription,
)
from nats.protocol import command as prot_command

from libs.common.bus.in_place import InPlace, handler_of, overflows

__all__ = [
    "BusClient",
    "BusMark",
    "BusPermissionError",
    "BusStuck",
    "header_block",
    "parse_header_lines",
    "refused_publish",
]

log = logging.getLogger(__name__)

_CRLF = b"\r\n"
_WHITESPACE = re.compile(r"\s").search
"""Finds what `str.isspace` calls space (sre's `\\s` is the same test for a str pattern)."""

_INVALID_SUBJECT = _SUBJECT_INVALID_RE.search
"""nats-py's `_validate_subject` for a publish: whitespace or a line break (a CRLF would inject commands)."""

_REFUSED_PUBLISH = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)


def refused_publish(error: object) -> str | None:
    """The subject of a publish the server refused, from the error nats-py reports.

    (Lower case: nats-py lowers the server's text), or None when `error` is something else."""
    found = _REFUSED_PUBLISH.search(str(error))
    return found.group(1).lower() if found else None


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """nats-py 2.16's `Client._parse_header_lines`, rule for rule.

    Lines split at the first colon, both sides stripped, a name that is not ASCII or holds whitespace
    dropped, values decoded as UTF-8 with U+FFFD for bad bytes. nats-py looks for whitespace with a
    generator over the name's characters, one step each (about 50 per message here); one regex search
    costs a third of that. tests/unit/test_bus_client_headers.py compares the two, so a nats-py that
    changes its rules fails there."""
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
    """nats-py 2.16's header block of `Client._send_publish`, rule for rule.

    Names and values stripped, an empty name skipped, a name outside HTTP's token characters refused
    (`BadHeaderError`), line breaks in a value made spaces. nats-py extends a bytearray five times per
    header and matches each name every time; a name checked once and one join cost a third of that (4.7
    -> 1.5 µs for four headers). tests/unit/test_bus_client_headers.py compares the two."""
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
            "needs: that role's permissions (libs/common/bus/permissions.py, rendered into nats-server's "
            "authorization) do not allow it"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class BusStuck(nats.errors.TimeoutError):
    """A request timed out because the NATS member went silent (or was left), not its responder."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    def __str__(self) -> str:
        return f"nats: {self.reason}"


BusMark = tuple[int, int, int]
"""What the connection had heard when a request left (`BusClient.mark`): messages in, PONGs, reconnects."""


class BusClient(NATS):
    """nats-py's client, failing refused requests at once and leaving a silent member (see the module's doc)."""

    _parse_header_lines = staticmethod(parse_header_lines)

    role: str = ""
    """The role the connection authenticates as (`libs.common.bus.permissions`), named in errors."""
    timeout_streak = 3
    """Requests timed out in a row after which the member is asked for a PONG (`connect` sets it)."""
    ping_wait = 2.0
    """Seconds that PONG may take before the connection moves to another member (`connect` sets it)."""

    def __init__(self) -> None:
        super().__init__()
        self._timeouts = 0
        """Requests timed out since the last one answered."""
        self._checking: asyncio.Task[None] | None = None
        self.left = ""
        """The last member this connection lost (`connect`'s disconnect callback names it)."""
        self._movers: list[Callable[[], None]] = []
        self._asking: dict[str, tuple[str, asyncio.Future[Any]]] = {}
        """Reply token -> (subject lower-cased, the request's future), for the requests in flight."""
        self._replies = ""
        """The reply prefix of this connection's requests (`_INBOX.<role>.<nuid>.`), once it has one."""
        self._in_place: dict[int, InPlace] = {}
        """Subscription id -> its `immediate` handler, for the subscriptions that have one."""

    async def subscribe(
        self,
        subject: str,
        queue: str = "",
        cb: Callable[[Msg], Awaitable[None]] | None = None,
        future: asyncio.Future[Msg] | None = None,
        max_msgs: int = 0,
        pending_msgs_limit: int = DEFAULT_SUB_PENDING_MSGS_LIMIT,
        pending_bytes_limit: int = DEFAULT_SUB_PENDING_BYTES_LIMIT,
    ) -> Subscription:
        sub = await super().subscribe(subject, queue, cb, future, max_msgs, pending_msgs_limit, pending_bytes_limit)
        self._subscribed(sub)
        return sub

    def _subscribed(self, sub: Subscription) -> None:
        """Note a new subscription (in the subscriber's context): its handler runs in place if `immediate`."""
        handler = handler_of(sub._cb)
        if handler is not None and not sub._max_msgs:  # one that ends after N messages keeps nats-py's count
            self._in_place[sub._id] = InPlace(handler)

    def in_place(self, sub: Subscription) -> InPlace | None:
        """`sub`'s handler to run in place, if its callback is `immediate`."""
        return self._in_place.get(sub._id)

    def _remove_sub(self, sid: int, max_msgs: int = 0) -> None:
        super()._remove_sub(sid, max_msgs)
        self._in_place.pop(sid, None)

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        """nats-py's, but a message for an `immediate` subscription with nothing queued is handled here.

        What nats-py does for a plain subscription's message up to its queue (stats, count, headers,
        the `Msg`), then the handler instead of the queue (`in_place`)."""
        in_place = self._in_place.get(sid)
        sub = self._subs.get(sid) if in_place is not None else None  # any other message: nats-py's, unlooked
        if in_place is None or sub is None or not in_place.takes(sub) or overflows(sub, len(data)):
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        stats = self.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        msg = self._build_message(sid, subject, reply, data, await self._process_headers(headers) if headers else None)
        in_place.deliver(sub, msg)

    async def request(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float = 0.5,  # noqa: ASYNC109 - nats-py's signature
        old_style: bool = False,
        headers: dict[str, Any] | None = None,
    ) -> Msg:
        mark = self.mark()
        try:
            reply = await super().request(subject, payload, timeout, old_style, headers)
        except nats.errors.TimeoutError:
            self.timed_out()
            if (reason := self.stuck_since(mark)) is not None:
                raise BusStuck(f"{reason} (a request to {subject} got no answer within {timeout:g}s)") from None
            raise
        self._timeouts = 0
        return reply

    def when_moved(self, callback: Callable[[], None]) -> None:
        """Call `callback` each time the connection is back, on another member or the same."""
        self._movers.append(callback)

    def moved(self) -> None:
        """The connection is back (`connect`'s reconnect callback): what waits on the old one learns it."""
        for callback in self._movers:
            callback()

    async def _connect_to_server(self, s: Srv) -> None:
        # nats-py reuses one transport for every attempt and replaces its socket: an attempt that timed
        # out waiting for a paused member's hello would leave that socket open
        if self._transport is not None:
            self._transport.close()
        await super()._connect_to_server(s)

    def mark(self) -> BusMark:
        """What the connection has heard so far; `stuck_since` compares a later state with it."""
        return self.stats["in_msgs"], self._pongs_received, self.stats["reconnects"]

    def stuck_since(self, mark: BusMark) -> str | None:
        """Why the bus, not a responder, explains a request (sent at `mark`) that got no answer.

        The connection moved to another member since, or has heard nothing at all (not a PONG) while a
        PING was due; None when the member kept talking."""
        messages, pongs, reconnects = mark
        if self.stats["reconnects"] != reconnects:
            return (
                f"the connection to the NATS member {self.left or '?'} broke (it stopped answering or went "
                "away) and moved to another member"
            )
        # silence means something only while a PING waits for its PONG
        if (
            self.stats["in_msgs"] == messages
            and self._pongs_received == pongs
            and (self._pings_outstanding or self._pongs)
        ):
            member = self.connected_url.netloc if self.connected_url else "?"
            return f"the NATS member {member} has answered nothing since, not even a PING"
        return None

    def timed_out(self) -> None:
        """A request went unanswered (here or in a caller's own request loop).

        `timeout_streak` in a row and the member must answer a PING or be left."""
        if not self.is_connected:
            return
        self._timeouts += 1
        if self._timeouts >= self.timeout_streak and (self._checking is None or self._checking.done()):
            self._timeouts = 0
            self._checking = asyncio.create_task(self._check_member(), name="nats-member-check")

    def answered(self) -> None:
        """A request got its answer: the timeouts before it were the responders', not the member's."""
        self._timeouts = 0

    async def _check_member(self) -> None:
        member = self.connected_url.netloc if self.connected_url else "?"
        connection = self.stats["reconnects"]
        try:
            await self.flush(timeout=self.ping_wait)  # type: ignore[arg-type]  # annotated int; a float is waited
        except TimeoutError:  # nats-py's FlushTimeoutError is one
            if self.stats["reconnects"] != connection:
                return  # its PINGs left that member meanwhile (the PING asked it was dropped with it)
            log.warning(
                "nats: %d requests in a row timed out and %s did not answer a PING within %gs; "
                "moving to another member",
                self.timeout_streak,
                member,
                self.ping_wait,
            )
            await self.force_reconnect()
        except nats.errors.Error:
            return  # closed or reconnecting already

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
        # nats-py's `publish`, check for check, without its six Python calls per message (two
        # `_validate_subject`s, three status properties, the call itself): every request, reply and
        # acknowledgement passes here. tests/unit/test_bus_client_headers.py pins nats-py's source.
        if not self._skip_subject_validation and (
            not subject or _INVALID_SUBJECT(subject) or (reply and _INVALID_SUBJECT(reply))
        ):
            raise nats.errors.BadSubjectError
        status = self._status
        if status == NATS.CLOSED:
            raise nats.errors.ConnectionClosedError
        if status == NATS.DRAINING_PUBS:
            raise nats.errors.ConnectionDrainingError
        payload_size = len(payload)
        if (
            status != NATS.CONNECTED
            and status != NATS.DRAINING_SUBS
            and (self._max_pending_size <= 0 or payload_size + self._pending_data_size > self._max_pending_size)
        ):
            raise nats.errors.OutboundBufferLimitError  # reconnecting with the buffer off or full
        if payload_size > self._max_payload:
            raise nats.errors.MaxPayloadError
        await self._send_publish(subject, reply, payload, payload_size, headers)

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

    async def _send_ping(self, future: asyncio.Future[Any] | None = None) -> None:
        self._pongs.append(future if future is not None else asyncio.get_running_loop().create_future())
        await self._send_command(PING_PROTO)  # behind what is pending: its PONG then vouches for it
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
