"""Self-contained, signed MCP session ids.

A handshake-era client gets an `Mcp-Session-Id` at `initialize`. The id carries the negotiated
protocol version and the key it belongs to, signed with a secret all ingress replicas share, so
any replica can serve any session with no shared store and no sticky load balancing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

__all__ = ["SessionCodec", "SessionInfo"]

_REPLY_PREFIX = b"bastion-"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    protocol_version: str
    key_id: str
    issued_at: int
    client: tuple[str, ...] = ()
    """Capabilities the agent declared at `initialize` that upstreams may use: sampling, elicitation, roots."""


class SessionCodec:
    def __init__(self, secret: bytes | str = b"", max_age: float = 24 * 3600.0) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        self._secret = raw or secrets.token_bytes(32)
        self.max_age = max_age
        """Seconds a session id is valid after it was issued."""

    def issue(self, protocol_version: str, key_id: str, client: tuple[str, ...] = ()) -> str:
        payload = orjson.dumps(
            {
                "v": protocol_version,
                "k": key_id[:32],
                "t": int(time.time()),
                "n": secrets.token_hex(4),
                "c": list(client),
            }
        )
        body = base64.urlsafe_b64encode(payload).rstrip(b"=")
        return (body + b"." + self._sign(body)).decode()

    def verify(self, session_id: str, key_id: str) -> SessionInfo | None:
        """The session, or None if the id is forged, corrupt, expired, or belongs to another key."""
        body, _, signature = session_id.encode().partition(b".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            payload = orjson.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if payload.get("k") != key_id[:32] or time.time() - payload["t"] > self.max_age:
            return None
        return SessionInfo(payload["v"], key_id, payload["t"], tuple(payload.get("c") or ()))

    def expires_at(self, session: SessionInfo) -> float:
        return session.issued_at + self.max_age

    def reply_id(self, subject: str, key_id: str) -> str:
        """The JSON-RPC id of a request Bastion sends an agent on an upstream's behalf. It names the
        NATS subject waiting for the answer, signed and bound to the key, so whichever replica the
        agent posts its answer to can deliver it, and nobody can aim an answer elsewhere."""
        body = base64.urlsafe_b64encode(subject.encode()).rstrip(b"=")
        return (_REPLY_PREFIX + body + b"." + self._sign(body + b"\x00" + key_id.encode())).decode()

    def reply_subject(self, request_id: object, key_id: str) -> str | None:
        """The subject a `reply_id` names, or None if `request_id` is not one of ours for this key."""
        if not isinstance(request_id, str) or not request_id.startswith(_REPLY_PREFIX.decode()):
            return None
        body, _, signature = request_id[len(_REPLY_PREFIX) :].encode().partition(b".")
        if not body or not hmac.compare_digest(signature, self._sign(body + b"\x00" + key_id.encode())):
            return None
        try:
            return base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)).decode()
        except ValueError:
            return None

    def _sign(self, body: bytes) -> bytes:
        return base64.urlsafe_b64encode(hmac.new(self._secret, body, hashlib.sha256).digest()[:18])
