"""Self-contained, signed MCP session ids, and the ids of requests relayed to an agent.

A handshake-era client gets an `Mcp-Session-Id` at `initialize`: a compact JWS (HS256, joserfc)
whose claims carry the negotiated protocol version, the key it belongs to and its expiry (`exp`),
signed with a secret all ingress replicas share, so any replica can serve any session with no
shared store and no sticky load balancing. A session lives `BASTION_SESSION_MAX_AGE` seconds from
its `initialize` (the setting when it was issued: the expiry is in the id).

Verifying an id costs a signature check once per replica: an id that checked out is remembered
(a bounded map), so the requests of a session cost a dict lookup and the expiry and key checks. An
id that does not check out is never remembered.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from services.ingress.sessions.session_state import SessionState, session_key

__all__ = ["LiveSessions", "SessionCodec", "SessionInfo"]

_HEADER = {"alg": "HS256"}
_ALGORITHMS = ["HS256"]
_REPLY_PREFIX = "bastion-"
_MAX_ID = 2048
"""Characters of a session or reply id worth a signature check: ours are about 160."""
_REMEMBERED = 10_000
"""Verified session ids a replica remembers (about 2 MB); the oldest is forgotten first."""
_KEY_DOMAIN = b"bastion session ids\x00"
"""Derives the signing key from `BASTION_SESSION_SECRET` (of any length) for this one use."""


def _bound(key_id: str) -> str:
    """What an id names of the key it is bound to.

    128 bits of its sha256, the same length for a virtual key and an OAuth user (`user:<id>`), with no
    prefix shared by two keys."""
    return base64.urlsafe_b64encode(hashlib.sha256(key_id.encode()).digest()[:16]).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class SessionInfo:
    protocol_version: str
    key_id: str
    """The key the session belongs to."""
    expires_at: float
    client: tuple[str, ...] = ()
    """Capabilities the agent declared at `initialize` that upstreams may use: sampling, elicitation, roots."""
    handle: str = ""
    """`session_key` of the id: what state kept across requests is filed under (never the id itself)."""


class SessionCodec:
    def __init__(self, secret: bytes | str = b"", max_age: float = 24 * 3600.0) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        self._key = OctKey.import_key(hashlib.sha256(_KEY_DOMAIN + (raw or secrets.token_bytes(32))).digest())
        self.max_age = max_age
        """Seconds a session id is valid after it was issued."""
        self._verified: dict[tuple[str, str], SessionInfo] = {}
        """(session id, key id) -> the session, for ids that checked out for that key."""

    def issue(self, protocol_version: str, key_id: str, client: tuple[str, ...] = ()) -> str:
        claims: dict[str, Any] = {
            "v": protocol_version,
            "k": _bound(key_id),
            "exp": int(time.time() + self.max_age),
            "n": secrets.token_hex(4),  # two sessions issued in one second differ
        }
        if client:
            claims["c"] = list(client)
        return jwt.encode(_HEADER, claims, self._key, algorithms=_ALGORITHMS, default_type=None)

    def verify(self, session_id: str, key_id: str) -> SessionInfo | None:
        """The session, or None if the id is forged, corrupt, expired, or belongs to another key."""
        remembered = (session_id, key_id)
        session = self._verified.get(remembered)
        if session is None:
            session = self._check(session_id, key_id)
            if session is None:
                return None
            if len(self._verified) >= _REMEMBERED:
                del self._verified[next(iter(self._verified))]
            self._verified[remembered] = session
        return session if time.time() <= session.expires_at else None

    def _check(self, session_id: str, key_id: str) -> SessionInfo | None:
        if len(session_id) > _MAX_ID:
            return None
        try:
            claims = jwt.decode(session_id, self._key, algorithms=_ALGORITHMS).claims
        except (JoseError, ValueError, TypeError):
            return None
        version, key, expires, client = claims.get("v"), claims.get("k"), claims.get("exp"), claims.get("c", [])
        if not (isinstance(version, str) and key == _bound(key_id) and type(expires) is int):
            return None
        if not isinstance(client, list) or not all(isinstance(c, str) for c in client):
            return None
        return SessionInfo(version, key_id, float(expires), tuple(client), session_key(session_id))

    def reply_id(self, subject: str, key_id: str) -> str:
        """The JSON-RPC id of a request Bastion sends an agent on an upstream's behalf.

        It names the NATS subject waiting for the answer, signed and bound to the key, so whichever
        replica the agent posts its answer to can deliver it, and nobody can aim an answer elsewhere."""
        payload = jwt.encode(
            _HEADER, {"s": subject, "k": _bound(key_id)}, self._key, algorithms=_ALGORITHMS, default_type=None
        )
        return _REPLY_PREFIX + payload

    def reply_subject(self, request_id: object, key_id: str) -> str | None:
        """The subject a `reply_id` names, or None if `request_id` is not one of ours for this key."""
        if not isinstance(request_id, str) or not request_id.startswith(_REPLY_PREFIX) or len(request_id) > _MAX_ID:
            return None
        try:
            claims = jwt.decode(request_id[len(_REPLY_PREFIX) :], self._key, algorithms=_ALGORITHMS).claims
        except (JoseError, ValueError, TypeError):
            return None
        subject = claims.get("s")
        if claims.get("k") != _bound(key_id) or not isinstance(subject, str):
            return None
        return subject


class LiveSessions:
    """The sessions `/mcp` serves.

    An id this deployment issued, to this key, not expired, and not ended by its agent (`DELETE /mcp`, on
    any replica)."""

    __slots__ = ("codec", "state")

    def __init__(self, codec: SessionCodec, state: SessionState) -> None:
        self.codec, self.state = codec, state

    def find(self, session_id: str, key_id: str) -> SessionInfo | None:
        session = self.codec.verify(session_id, key_id)
        if session is None or self.state.is_ended(session.handle):
            return None
        return session
