"""Authentication: which virtual key is calling. (Authorization is the policy service's job.).

Ingress keeps the key records from the KV watch so an unknown or revoked key is turned away with
HTTP 401 before any message is sent; the policy service re-checks on every call.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Final

from libs.common.bus.kvwatch import decode_value
from libs.common.contracts.keys import key_id as key_id_of
from libs.common.contracts.messages import Caller, KeyRecord
from libs.common.runtime.refusals import RefusalReason

__all__ = ["UNAUTHENTICATED", "AuthFailure", "KeyDirectory", "bearer_challenge", "unauthorized"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuthFailure:
    error: str
    message: str
    challenge: str | None = None
    """The `WWW-Authenticate` value to answer with (RFC 9728 §5.1: names the protected resource metadata)."""
    reason: RefusalReason = "invalid"
    """How the refusal is counted and audited (`libs.common.runtime.refusals`); the answer never says
    more than `message`."""


def bearer_challenge(failure: AuthFailure, credentials_sent: bool, metadata_url: str | None = None) -> str:
    """The `WWW-Authenticate` value of a 401 (RFC 6750 §3): no error code when the request carried no credentials.

    `resource_metadata` (RFC 9728 §5.1) only where OAuth is offered."""
    params = []
    if credentials_sent:
        description = failure.message.replace('"', "'").replace("\\", "/")  # a quoted-string, unescaped
        params += ['error="invalid_token"', f'error_description="{description}"']
    if metadata_url is not None:
        params.append(f'resource_metadata="{metadata_url}"')
    return "Bearer " + ", ".join(params) if params else 'Bearer realm="bastion"'


def _failure(error: str, message: str, credentials_sent: bool = True, reason: RefusalReason = "invalid") -> AuthFailure:
    failure = AuthFailure(error, message, reason=reason)
    return dataclasses.replace(failure, challenge=bearer_challenge(failure, credentials_sent))


# Each message starts with what is wrong in the words a user looks for ("invalid key"): it is what
# MCP clients show of a 401 (`unauthorized`).
_MISSING = _failure(
    "missing_key",
    "missing key: this endpoint needs a Bastion virtual key; send 'Authorization: Bearer <key>'",
    credentials_sent=False,
    reason="missing",
)
_MALFORMED = _failure(
    "malformed_authorization", "malformed Authorization header: it must be 'Bearer <key>' (a Bastion virtual key)"
)
_UNKNOWN = _failure("invalid_key", "invalid key: this is not a Bastion virtual key of this gateway")
_REVOKED = _failure(
    "revoked_key", "revoked key: this key has been revoked; ask your administrator for a new one", reason="revoked"
)

UNAUTHENTICATED = -32054
"""The JSON-RPC code of a 401: no valid key or access token (`error.data.kind` says what was wrong)."""


def unauthorized(failure: AuthFailure) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
    """The body and headers of a 401 on `/mcp`.

    The body is a JSON-RPC error, which is what the official SDK (and clients built on it, fastmcp) show
    of an error status: without one they say only "Server returned an error response". The challenge
    carries the message as `error_description`, which OAuth-aware clients (MCP Inspector) read of a 401."""
    challenge = failure.challenge or bearer_challenge(failure, credentials_sent=True)
    body = {
        "jsonrpc": "2.0",
        "id": None,  # answered before the body is read
        "error": {"code": UNAUTHENTICATED, "message": failure.message, "data": {"kind": failure.error}},
    }
    return body, [(b"www-authenticate", challenge.encode())]


_CARRIED: Final[set[str]] = {"user_id", "team_id", "customer_id", "content_logging"}
"""What a caller carries of its key's record, under the same names (the audit event's attribution)."""


class KeyDirectory:
    def __init__(self) -> None:
        self._by_id: dict[str, tuple[KeyRecord, Caller, int]] = {}
        self.with_modes: set[str] = set()
        """Keys with Code Mode or discovery mode on: a request of any other key that sends neither
        header is in neither mode, told without asking either (`Handlers`)."""

    def put(self, key_id: str, value: bytes, revision: int = 0) -> None:
        record = decode_value(KeyRecord, value, f"key record {key_id[:8]}…")
        if record is None:
            return
        caller = Caller(key_id=key_id, key_name=record.name, **record.model_dump(include=_CARRIED))
        self._by_id[key_id] = (record, caller, revision)
        if record.code_mode or record.discovery:
            self.with_modes.add(key_id)
        else:
            self.with_modes.discard(key_id)

    def delete(self, key_id: str) -> None:
        self._by_id.pop(key_id, None)
        self.with_modes.discard(key_id)

    def record(self, key_id: str) -> KeyRecord | None:
        entry = self._by_id.get(key_id)
        return entry[0] if entry else None

    def code_mode(self, key_id: str) -> bool:
        """The key's Code Mode setting (a request header may override it)."""
        entry = self._by_id.get(key_id)
        return entry is not None and entry[0].code_mode

    def discovery(self, key_id: str) -> tuple[bool, list[str]]:
        """The key's discovery-mode setting (a request header may override it) and pinned tools."""
        entry = self._by_id.get(key_id)
        return (entry[0].discovery, entry[0].discovery_pinned) if entry is not None else (False, [])

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
        entry = self._by_id.get(key_id_of(secret))
        if entry is None:
            return _UNKNOWN
        if entry[0].revoked:
            return _REVOKED
        return entry[1]
