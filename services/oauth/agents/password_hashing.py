"""Password hashing for the built-in user store: scrypt (memory-hard), constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["MAX_PASSWORD_BYTES", "MIN_PASSWORD_CHARS", "hash_password", "verify_password"]

_N, _R, _P = 2**14, 8, 1
"""RFC 7914 parameters: 16 MiB and tens of milliseconds per hash, OWASP's scrypt minimum."""
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_BYTES = 1024
"""Longer inputs are refused before hashing (hashing cost must not be attacker-controlled)."""


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password may have at most {MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(16)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${_scrypt(password, salt, _N, _R, _P).hex()}"


def verify_password(password: str, stored: str) -> bool:
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        return False
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, bytes.fromhex(expected))
