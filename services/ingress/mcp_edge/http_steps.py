"""The HTTP steps of `/mcp`, before any JSON is read.

Headers that must be single and hosts that may be served (`CheckHeaders`), the credential
(`Authenticate`), the HTTP method (`RouteMethod`), the body within its limit (`ReadBody`) and how the
answer may go out (`ChooseAnswer`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp_types import INVALID_REQUEST

from libs.common.runtime.refusals import RefusalLog
from services.ingress.auth.access_tokens import Authenticator
from services.ingress.auth.keys import AuthFailure, KeyDirectory, unauthorized
from services.ingress.auth.refused_credentials import note_refusal
from services.ingress.mcp_edge.answers import Answer
from services.ingress.mcp_edge.chain import Answering, Check, Exchange, Gate, Receive, Refusal
from services.ingress.protocol import error_body
from services.ingress.web.hosts import HostGuard
from services.ingress.web.http_headers import REPEATED_AUTHORIZATION, repeated_headers

__all__ = [
    "Authenticate",
    "CheckHeaders",
    "ChooseAnswer",
    "Gone",
    "ReadBody",
    "RouteMethod",
    "TooLarge",
    "read_body",
]

Branch = Callable[[Exchange], Awaitable[None]]
"""What answers a request `RouteMethod` sends elsewhere (`DELETE`, `GET`)."""

_REPEATED_AUTHORIZATION = Refusal(400, {"error": "repeated_authorization", "message": REPEATED_AUTHORIZATION})
_NOT_POST = Refusal(
    405,
    {"error": "method_not_allowed", "message": "use POST to send MCP messages"},
    [(b"allow", b"GET, POST, DELETE")],
)
_NOT_ACCEPTABLE = Refusal(
    406, {"error": "not_acceptable", "message": "Accept must include application/json or text/event-stream"}
)


class CheckHeaders(Check):
    """403 for a host or origin this gateway does not serve (DNS rebinding) or sent twice.

    400 for two `Authorization` headers (a proxy checking the first and the app reading the last could
    disagree on who is calling)."""

    __slots__ = ("guard",)

    def __init__(self, guard: HostGuard) -> None:
        self.guard = guard

    def check(self, x: Exchange) -> Answering | None:
        headers = x.headers
        repeated = repeated_headers(x.raw_headers) if len(headers) != len(x.raw_headers) else ()
        if "authorization" in repeated:
            return _REPEATED_AUTHORIZATION
        # headers asked by membership and subscript in these steps: no dict.get call a header, a request
        host = headers["host"] if "host" in headers else None
        origin = headers["origin"] if "origin" in headers else None
        if refused := self.guard.problem(host, origin, repeated):
            return Refusal(403, {"error": "forbidden_host", "message": refused})
        return None


class Authenticate(Check):
    """401 without a valid virtual key or OAuth access token.

    (`keys.unauthorized` says why, in a way each MCP client shows), counted and audited (`refusals`);
    else the caller is known from here on."""

    __slots__ = ("authenticator", "refusals")

    def __init__(self, authenticator: KeyDirectory | Authenticator, refusals: RefusalLog | None = None) -> None:
        self.authenticator, self.refusals = authenticator, refusals

    def check(self, x: Exchange) -> Answering | None:
        headers = x.headers
        authorization = headers["authorization"] if "authorization" in headers else None
        match caller := self.authenticator.authenticate(authorization):  # a class pattern: no isinstance call
            case AuthFailure():
                note_refusal(self.refusals, "mcp", caller, authorization, x.scope)
                return Refusal(401, *unauthorized(caller))
        x.caller = caller
        return None


class RouteMethod(Check):
    """`DELETE` ends a session, `GET` opens its stream of notifications.

    (When this gateway keeps them), anything but `POST` is 405; a `POST` carries one JSON-RPC message on."""

    __slots__ = ("end_session", "stream")

    def __init__(self, end_session: Branch, stream: Branch | None) -> None:
        self.end_session, self.stream = end_session, stream

    def check(self, x: Exchange) -> Answering | None:
        method = x.scope["method"]
        if method == "POST":
            return None
        if method == "DELETE":
            return self.end_session
        if method == "GET" and self.stream is not None:
            return self.stream
        return _NOT_POST


class TooLarge(Exception):
    pass


class Gone(Exception):
    """The client disconnected (or was cut off for sending too slowly) before its body arrived."""


async def read_body(receive: Receive, limit: int) -> bytes:
    # the usual body arrives in one event: kept as it is, no list, and its fields asked without a call
    body = b""
    chunks: list[bytes] | None = None
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise Gone
        if "body" in event and (chunk := event["body"]):
            size += len(chunk)
            if size > limit:
                raise TooLarge
            if not body:
                body = chunk
            elif chunks is None:
                chunks = [body, chunk]
            else:
                chunks.append(chunk)
        if "more_body" not in event or not event["more_body"]:
            return body if chunks is None else b"".join(chunks)


class ReadBody(Gate):
    """413 for a body over `limit` bytes, by its `Content-Length` before reading a byte, or while reading.

    Nothing for a client gone before its body arrived."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def admit(self, x: Exchange) -> Answering | None:
        headers = x.headers
        declared = headers["content-length"] if "content-length" in headers else None
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return self._too_large(int(declared))
        try:
            x.body = await read_body(x.receive, self.limit)
        except TooLarge:
            return self._too_large(None)
        except Gone:
            return _nobody
        return None

    def _too_large(self, size: int | None) -> Refusal:
        what = f"{size} bytes" if size is not None else "larger than allowed"
        message = f"request body is {what}; this gateway accepts at most {self.limit} bytes"
        return Refusal(413, error_body(None, INVALID_REQUEST, message))


async def _nobody(x: Exchange) -> None:
    """The answer to a client gone before its body arrived: none, there is nobody to answer."""


class ChooseAnswer(Check):
    """406 unless `Accept` allows JSON or SSE.

    The answer goes out as one SSE event when the agent accepts only that, or when this gateway prefers
    it (`BASTION_RESPONSE_MODE=sse`)."""

    __slots__ = ("prefer_sse",)

    def __init__(self, prefer_sse: bool = False) -> None:
        self.prefer_sse = prefer_sse

    def check(self, x: Exchange) -> Answering | None:
        headers = x.headers
        accept = headers["accept"] if "accept" in headers else "*/*"
        json_ok = "application/json" in accept or "*/*" in accept or "application/*" in accept
        sse_ok = "text/event-stream" in accept
        if not json_ok and not sse_ok:
            return _NOT_ACCEPTABLE
        x.sse_ok = sse_ok
        x.answer = Answer(x.send, sse_ok and (self.prefer_sse or not json_ok))
        return None
