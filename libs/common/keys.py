"""Virtual key secrets: generation and the one-way id we store instead of the secret."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["generate_key", "key_id"]

KEY_PREFIX = "bk_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_id(secret: str) -> str:
    """sha256 hex of the secret: keys are 256-bit random, so a fast hash is enough (no KDF)."""
    return hashlib.sha256(secret.encode()).hexdigest()
