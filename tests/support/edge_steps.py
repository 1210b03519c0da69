"""One `/mcp` pipeline step (`services.ingress.mcp_edge`) driven alone, as its unit tests do.

The ASGI wire of a request, an exchange as the steps before a step leave it, and a recorder in
place of the next step.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson

from libs.common.contracts.messages import Caller, KeyRecord
from services.ingress.auth.keys import KeyDirectory
from services.ingress.context import RequestContext
from services.ingress.mcp_edge import Exchange, Step
from services.ingress.mcp_edge.answers import Answer
from services.ingress.sessions.session_ids import LiveSessions, SessionCodec
from services.ingress.sessions.session_state import SessionState

__all__ = [
    "CALLER",
    "ENVELOPE",
    "KEY_ID",
    "MODERN",
    "SECRET",
    "Reached",
    "Wire",
    "exchange",
    "keys",
    "request",
    "run",
    "sessions",
]

SECRET = "bk_edge_steps_secret"
KEY_ID = hashlib.sha256(SECRET.encode()).hexdigest()
CALLER = Caller(key_id=KEY_ID, key_name="dev")
MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


class Wire:
    """The ASGI side of one request: what the client sends, and what the step sent back."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.incoming = list(messages) or [{"type": "http.request", "body": b"", "more_body": False}]
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.incoming:
            return self.incoming.pop(0)
        await asyncio.Event().wait()  # nothing more until the test ends
        raise AssertionError

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)

    @property
    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return dict(start["headers"])

    def json(self) -> Any:
        return orjson.loads(b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body"))


class Reached(Step):
    """The rest of the pipeline: records that the request got this far."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, x: Exchange) -> None:
        self.count += 1


def exchange(
    *headers: tuple[str, str], method: str = "POST", body: bytes = b"", wire: Wire | None = None
) -> tuple[Exchange, Wire]:
    wire = wire or Wire({"type": "http.request", "body": body, "more_body": False})
    scope = {
        "type": "http",
        "method": method,
        "path": "/mcp",
        "headers": [(k.encode(), v.encode()) for k, v in headers],
    }
    return Exchange(scope, wire.receive, wire.send), wire


def request(message: dict[str, Any], *headers: tuple[str, str]) -> tuple[Exchange, Wire]:
    """An exchange as the steps before `BuildContext` leave it."""
    x, wire = exchange(*headers)
    x.caller, x.message, x.body, x.sse_ok = CALLER, message, orjson.dumps(message), False
    x.answer = Answer(wire.send, False)
    if "method" in message and "id" in message:
        x.method, x.params = message["method"], message.get("params")
        x.ctx = RequestContext(caller=CALLER, version="2025-03-26", request_id=message["id"])
    return x, wire


async def run(step: Step, x: Exchange) -> Reached:
    reached = step.next = Reached()
    await step(x)
    return reached


def keys() -> KeyDirectory:
    directory = KeyDirectory()
    directory.put(KEY_ID, KeyRecord(id=KEY_ID, name="dev").model_dump_json().encode())
    return directory


def sessions() -> LiveSessions:
    return LiveSessions(SessionCodec(b"edge-steps-secret-of-some-length"), SessionState())
