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


@dataclass(frozen=True, slots=True)
class SessionInfo:
    protocol_version: str
    key_id: str
    issued_at: int


class SessionCodec:
    def __init__(self, secret: bytes | str = b"") -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        self._secret = raw or secrets.token_bytes(32)

    def issue(self, protocol_version: str, key_id: str) -> str:
        payload = orjson.dumps({"v": protocol_version, "k": key_id[:32], "t": int(time.time()), "n": secrets.token_hex(4)})
        body = base64.urlsafe_b64encode(payload).rstrip(b"=")
        return (body + b"." + self._sign(body)).decode()

    def verify(self, session_id: str, key_id: str) -> SessionInfo | None:
        """The session, or None if the id is forged, corrupt, or belongs to another key."""
        body, _, signature = session_id.encode().partition(b".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            payload = orjson.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if payload.get("k") != key_id[:32]:
            return None
        return SessionInfo(payload["v"], key_id, payload["t"])

    def _sign(self, body: bytes) -> bytes:
        return base64.urlsafe_b64encode(hmac.new(self._secret, body, hashlib.sha256).digest()[:18])
