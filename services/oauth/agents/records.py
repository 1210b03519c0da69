"""What the authorization server keeps in KV `bastion_oauth`, one model per kind of record.

Secrets are never stored: client secrets, authorization codes and refresh tokens are kept as their
SHA-256 (they are random 256-bit values, so a fast hash is enough); passwords as scrypt hashes.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Literal

from pydantic import Field

from libs.common.contracts.messages_base import BusMessage

__all__ = [
    "AuthorizationCode",
    "ClientRecord",
    "IssuedAccess",
    "LoginFailures",
    "PasswordRecord",
    "PendingLogin",
    "RefreshFamily",
    "digest",
    "new_secret",
]


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ClientRecord(BusMessage):
    """An OAuth client: registered dynamically (RFC 7591) or pre-registered by an operator."""

    client_id: str
    client_name: str = ""
    redirect_uris: list[str]
    token_endpoint_auth_method: Literal["none", "client_secret_post", "client_secret_basic"] = "none"
    secret_digest: str | None = None
    grant_types: list[str] = Field(default_factory=lambda: ["authorization_code", "refresh_token"])
    created_at: float = Field(default_factory=time.time)
    source: Literal["registration", "operator", "metadata_document"] = "registration"


class LoginFailures(BusMessage):
    """`failures.<digest of a user name>`: wrong passwords for that name since `since`."""

    count: int
    since: float


class PasswordRecord(BusMessage):
    user_id: str
    hash: str
    """`scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>` (`passwords.hash_password`)."""
    updated_at: float = Field(default_factory=time.time)


class PendingLogin(BusMessage):
    """A validated authorization request waiting for the user to log in (`pending.<digest of its id>`)."""

    client_id: str
    redirect_uri: str
    state: str | None
    code_challenge: str
    scope: str
    resource: str
    expires_at: float


class IssuedAccess(BusMessage):
    jti: str
    expires_at: float


class AuthorizationCode(BusMessage):
    """`code.<digest>`: one use. Kept after use (marked `used`) so a replay revokes what it issued."""

    client_id: str
    redirect_uri: str
    user_id: str
    code_challenge: str
    scope: str
    resource: str
    expires_at: float
    used: bool = False
    family_id: str | None = None


class RefreshFamily(BusMessage):
    """`family.<id>`: every refresh token descended from one authorization code.

    Only the newest refresh token (`current_digest`) is valid; presenting an older one means the
    family leaked, so the whole family and its live access tokens are revoked (OAuth 2.1 §4.3.1)."""

    family_id: str
    client_id: str
    user_id: str
    scope: str
    resource: str
    current_digest: str
    expires_at: float
    revoked: bool = False
    access: list[IssuedAccess] = Field(default_factory=list)
    """Access tokens issued in this family that may still be live (pruned as they expire)."""
