"""HTTP/1.1 limits enforced below the ASGI app, where a hostile client is still cheap to refuse.

uvicorn's httptools protocol bounds neither the request head (llhttp buffers a header of any
size until it ends) nor the time a client takes to send it, so one client trickling headers
holds a connection forever (slowloris) and one 64 MB header is read before authentication. This
subclass adds, per connection:

- a cap on the number of open connections (over it, 503 and close at once);
- caps on the request line, the number of header fields and the bytes of the head (414 / 431);
- a deadline for the head, from the moment the connection opens or the next request begins (408);
- a deadline for the body once the head is in (the app sees a disconnect, the client a closed
  connection).

uvicorn's keep-alive timeout is kept, but its timer is not re-armed on every response and
cancelled on every read: one timer per connection, which on firing closes the connection if it
has been idle long enough, or waits for the rest of the idle time.

Everything else (parsing, keep-alive, pipelining, flow control) is uvicorn's, so the hot path
pays a few integer additions per request. Answers leave in one write each (`response_writes`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import partial
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import unquote

import httptools
import orjson
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, service_unavailable
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from libs.common.settings import IngressSettings
from services.ingress.web.lost_connections import LOST, Callbacks, call_lost
from services.ingress.web.request_cycle import RequestCycle, Wake, ended
from services.ingress.web.response_writes import HeadWithBody

__all__ = ["HttpLimits", "guarded_protocol"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int
    max_request_line_bytes: int
    max_header_bytes: int
    """The request head's header fields, names and values together."""
    max_headers: int
    header_timeout: float
    """Seconds a client has to send a whole request head, counted from the connection opening (or
    the previous response ending and the next request's first byte)."""
    body_timeout: float
    """Seconds a client has to send a request body once its head is in."""

    @classmethod
    def of(cls, settings: IngressSettings) -> HttpLimits:
        """The limits as configured: each is the ingress setting of the same name (docs/configuration.md)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


class _Refused(Exception):
    """Stops the parser; the refusal itself is recorded on the protocol."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[HttpLimits]
    direct: Mapping[str, Any] = MappingProxyType({})
    """Paths served straight by their own app (`guarded_protocol`)."""
    cycle: RequestCycle
    """The request being parsed or served: ingress's own (`request_cycle`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.app is not self.config.app:
            # uvicorn wrapped the app (message logging, proxy headers, an ASGI2 adapter): every
            # path goes through the wrapper, as uvicorn would send it
            self.direct = MappingProxyType({})
        self._plain_tasks = not self.config.reset_contextvars
        self._reading_head = True
        self._reading_body = False
        self._head_bytes = 0
        """Bytes read since this request's head began; may include some of its body."""
        self._chunk_bytes = 0
        """Size of the chunk being parsed."""
        self._head_slack = 0
        """Bytes of the chunk in which this request began that `_head_bytes` does not count (a
        request pipelined behind the previous one): `_head_bytes + _head_slack` bounds the head."""
        self._refusal: tuple[int, str] | None = None
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_for: str | None = None
        """"head" or "body": what the armed deadline is waiting for."""
        self._lost: Callbacks = set()
        """Called when the connection is lost (`lost_connections`): set by the request running."""
        self._idle_since: float | None = None
        """When the last response ended with no request since (None while one is being served)."""

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # answers leave in one write (`response_writes`); flow control keeps the bare transport
        self.transport = HeadWithBody(transport, self.loop)  # type: ignore[assignment]
        self._per_connection = {
            "transport": self.transport,
            "flow": self.flow,
            "logger": self.logger,
            "access_logger": self.access_logger,
            "access_log": self.access_log,
            "on_response": self.on_response_complete,
        }
        """A request cycle's fields that are the same for every request on this connection."""
        if len(self.connections) > self.limits.max_connections:
            _log_now_and_then(
                "over_connections",
                "refusing connections: %d open (limit %d)",
                len(self.connections),
                self.limits.max_connections,
            )
            self._refuse(503, f"too many open connections; this gateway allows {self.limits.max_connections}")
            return
        self._arm("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        super().connection_lost(exc)
        if self._lost:
            call_lost(self._lost)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered already: what the client still sends is read and dropped (see _refuse)
        self._chunk_bytes = size = len(data)
        if self._reading_head:
            self._head_bytes += size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(*self._refusal)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._reading_head:
            # llhttp keeps a header it has not seen the end of in its own buffer, so the head is
            # bounded here, per chunk read from the socket, not only once complete
            if self._head_bytes > self.limits.max_request_line_bytes + self.limits.max_header_bytes:
                self._refuse(431, f"the request head exceeds {self.limits.max_header_bytes} bytes of header fields")
                return
            wanted: str | None = "head"
        else:
            wanted = "body" if self._reading_body else None
        # deadlines are armed only for a request still incomplete after a read: most arrive whole
        # in one, and pay for no timer
        if wanted != self._deadline_for:
            self._arm(wanted)

    # ------------------------------------------------------------------ keep-alive

    def _unset_keepalive_if_required(self) -> None:
        """uvicorn calls this on each read and response; now only as the connection is lost.

        A connection is busy from a request's first byte (`on_message_begin`)."""
        self._idle_since = None

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive timer armed only when none is (`_keep_alive_due`)."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        if self.flow.read_paused:
            self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_since is None:
            return  # serving a request: its response arms the timer again
        left = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_due)
        else:
            self.timeout_keep_alive_handler()

    # ------------------------------------------------------------------ parser callbacks

    # uvicorn's own callbacks are folded into these (not called through `super()`): one Python call
    # per parser event instead of two, and the request cycle's wake-up flag raised without a call

    def on_message_begin(self) -> None:
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
            "extensions": {LOST: self._lost},  # type: ignore[dict-item]  # ASGI types extensions as dicts
        }
        if not self._reading_head:  # the next request on a kept-alive connection
            self._reading_head, self._head_bytes, self._head_slack = True, 0, self._chunk_bytes
        # busy from the request's first byte, not from any read: the blank lines llhttp skips
        # between requests begin none, and must not keep an idle connection open past its timeout
        self._idle_since = None

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's, but only for the head: llhttp hands a chunked body's trailer fields here too, and
        # uvicorn appended them to the request's headers after the app had read them, unbounded (no
        # head limit counts them); they are dropped, as RFC 9110 lets a recipient do
        if self._reading_head:
            name = name.lower()
            if name == b"expect" and value.lower() == b"100-continue":
                self.expect_100_continue = True
            self.headers.append((name, value))

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_request_line_bytes:
            self._stop(414, f"the request target exceeds {self.limits.max_request_line_bytes} bytes")

    def on_headers_complete(self) -> None:
        if len(self.headers) > self.limits.max_headers:
            self._stop(431, f"more than {self.limits.max_headers} header fields")
        # the fields are part of what was read: only a head read in more bytes than the limit
        # needs them counted one by one
        limit = self.limits.max_header_bytes
        if self._head_bytes + self._head_slack > limit and sum(len(n) + len(v) for n, v in self.headers) > limit:
            self._stop(431, f"header fields exceed {self.limits.max_header_bytes} bytes")
        self._reading_head, self._reading_body, self._head_slack = False, True, 0
        # uvicorn's, with ingress's request cycle (`request_cycle`)
        parser, scope = self.parser, self.scope
        http_version = parser.get_http_version()
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return
        parsed_url = httptools.parse_url(self.url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = parsed_url.query or b""
        app = self.direct.get(scope["path"], self.app)
        if self.limit_concurrency is not None and (
            len(self.connections) >= self.limit_concurrency or len(self.tasks) >= self.limit_concurrency
        ):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
        existing_cycle = self.cycle
        self.cycle = cycle = RequestCycle.__new__(RequestCycle)
        # what uvicorn's `RequestResponseCycle.__init__` sets, without the call (a unit test holds
        # the two equal)
        cycle.__dict__ = {
            **self._per_connection,
            "scope": scope,
            "default_headers": self.server_state.default_headers,
            "message_event": Wake(),
            "disconnected": False,
            "keep_alive": http_version != "1.0" and parser.should_keep_alive(),
            "waiting_for_100_continue": self.expect_100_continue,
            "body": bytearray(),
            "more_body": True,
            "response_started": False,
            "response_complete": False,
            "chunked_encoding": None,
            "expected_content_length": 0,
        }
        if existing_cycle is not None and not existing_cycle.response_complete:
            # pipelined: served once the one before has answered
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, app))
        elif not self._plain_tasks:
            self._start_asgi_task(cycle, app)
        elif app is self.app:  # `_start_asgi_task` without the call
            task = self.loop.create_task(cycle.run_asgi(app))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)
        else:  # a direct path's app (ingress's own, async) runs as the task, `run_asgi`'s checks once it ends
            task = self.loop.create_task(app(scope, cycle.receive, cycle.send))
            task.add_done_callback(partial(ended, cycle, self.tasks))
            self.tasks.add(task)

    def on_body(self, body: bytes) -> None:
        if self.parser.should_upgrade() and self._should_upgrade():
            return  # an upgrade (checked first: its request has no cycle)
        cycle = self.cycle
        if cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        wake = cycle.message_event
        wake.pending = True
        if wake.event is not None:
            wake.set()

    def on_message_complete(self) -> None:
        self._reading_body = False
        if self.parser.should_upgrade() and self._should_upgrade():
            return  # an upgrade (checked first: its request has no cycle)
        cycle = self.cycle
        if cycle.response_complete:
            return
        cycle.more_body = False
        wake = cycle.message_event
        wake.pending = True
        if wake.event is not None:
            wake.set()

    # ------------------------------------------------------------------ refusals

    def _stop(self, status: int, message: str) -> None:
        self._refusal = (status, message)
        raise _Refused

    def _head_too_slow(self) -> None:
        self._deadline, self._deadline_for = None, None
        if self._reading_head:
            self._refuse(408, f"the request head did not arrive within {self.limits.header_timeout:g}s")

    def _body_too_slow(self) -> None:
        """The app is (or will be) waiting for the rest of the body.

        Closing the connection ends its wait with a disconnect, and it answers nothing."""
        self._deadline, self._deadline_for = None, None
        if not self.transport.is_closing():
            _log_now_and_then(
                "slow_bodies",
                "closing connections whose request body did not arrive within %gs",
                self.limits.body_timeout,
            )
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` and close.

        The close lingers a moment, reading and dropping what the client is still sending: closing a
        socket with unread input resets the connection, and the client would never see the answer saying
        why."""
        self._disarm()
        if self.transport.is_closing() or self._refused:
            return
        self._refused = True
        body = orjson.dumps({"error": _ERRORS[status], "message": message})
        self.transport.write(
            b"".join(
                (
                    STATUS_LINE[status],
                    b"content-type: application/json\r\ncontent-length: ",
                    str(len(body)).encode(),
                    b"\r\nconnection: close\r\n\r\n",
                    body,
                )
            )
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._deadline = self.loop.call_later(_LINGER, self.transport.close)
        self._deadline_for = "close"

    def _arm(self, wait_for: str | None) -> None:
        self._disarm()
        if wait_for == "head":
            self._deadline = self.loop.call_later(self.limits.header_timeout, self._head_too_slow)
        elif wait_for == "body":
            self._deadline = self.loop.call_later(self.limits.body_timeout, self._body_too_slow)
        self._deadline_for = wait_for

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._deadline_for = None


_LINGER = 1.0
"""Seconds a refused connection is drained before it is closed."""
_ERRORS = {
    408: "request_timeout",
    414: "request_line_too_long",
    431: "request_header_fields_too_large",
    503: "too_many_connections",
}


_seen: dict[str, int] = {}


def _log_now_and_then(what: str, message: str, *args: object) -> None:
    """Warn on the 1st, 2nd, 4th, 8th... occurrence: a flood of hostile clients must not flood the log."""
    count = _seen[what] = _seen.get(what, 0) + 1
    if count & (count - 1) == 0:
        log.warning(message + " (%d so far)", *args, count)


def guarded_protocol(limits: HttpLimits, direct: Mapping[str, Any] | None = None) -> type[GuardedHttpToolsProtocol]:
    """The protocol class to hand uvicorn (`Config(http=...)`), bound to `limits`.

    `direct`: paths served by their own ASGI app rather than through the server's app, which must
    route them to the same one (ingress's `/mcp`): one coroutine fewer per request."""
    routes = MappingProxyType(dict(direct or {}))
    return type("BastionHttpProtocol", (GuardedHttpToolsProtocol,), {"limits": limits, "direct": routes})
