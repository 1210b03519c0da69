"""Authentication: which virtual key is calling. (Authorization is the policy service's job.)

Ingress keeps the key records from the KV watch so an unknown or revoked key is turned away with
HTTP 401 before any message is sent; the policy service re-checks on every call.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from libs.common.kvwatch import decode_value
from libs.common.messages import Caller, KeyRecord

__all__ = ["AuthFailure", "KeyDirectory"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuthFailure:
    error: str
    message: str
    challenge: str | None = None
    """The `WWW-Authenticate` value to answer with (RFC 9728 §5.1: names the protected resource metadata)."""


_MISSING = AuthFailure("missing_key", "this endpoint needs a Bastion virtual key: send 'Authorization: Bearer <key>'")
_MALFORMED = AuthFailure("malformed_authorization", "the Authorization header must be 'Bearer <key>'")
_UNKNOWN = AuthFailure("invalid_key", "the key is not a valid Bastion virtual key")
_REVOKED = AuthFailure("revoked_key", "the key has been revoked; ask your administrator for a new one")


class KeyDirectory:
    def __init__(self) -> None:
        self._by_id: dict[str, tuple[KeyRecord, Caller, int]] = {}

    def put(self, key_id: str, value: bytes, revision: int = 0) -> None:
        record = decode_value(KeyRecord, value, f"key record {key_id[:8]}…")
        if record is None:
            return
        caller = Caller(
            key_id=key_id,
            key_name=record.name,
            user_id=record.user_id,
            team_id=record.team_id,
            customer_id=record.customer_id,
            content_logging=record.content_logging,
        )
        self._by_id[key_id] = (record, caller, revision)

    def delete(self, key_id: str) -> None:
        self._by_id.pop(key_id, None)

    def record(self, key_id: str) -> KeyRecord | None:
        entry = self._by_id.get(key_id)
        return entry[0] if entry else None

    def code_mode(self, key_id: str) -> bool:
        """The key's Code Mode setting (a request header may override it)."""
        entry = self._by_id.get(key_id)
        return entry is not None and entry[0].code_mode

    def revision(self, key_id: str) -> int:
        entry = self._by_id.get(key_id)
        return entry[2] if entry else -1

    def authenticate(self, authorization: str | None) -> Caller | AuthFailure:
        if not authorization:
            return _MISSING
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            return _MALFORMED
        entry = self._by_id.get(hashlib.sha256(secret.encode()).hexdigest())
        if entry is None:
            return _UNKNOWN
        if entry[0].revoked:
            return _REVOKED
        return entry[1]
