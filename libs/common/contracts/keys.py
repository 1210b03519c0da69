"""Virtual key secrets: generation and the one-way id we store instead of the secret."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["generate_key", "key_id"]

KEY_PREFIX = "bk_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_id(secret: str) -> str:
    """A virtual key's id: the sha256 hex of its secret, the only form of it that is ever stored.

    The one rule for it: the config loader, the admin API and ingress's lookup all call this, so a
    key declared in a file, created through the API or presented as a bearer token gets the same id.
    Keys are 256-bit random, so a fast hash is enough (no KDF).
    """
    return hashlib.sha256(secret.encode()).hexdigest()
