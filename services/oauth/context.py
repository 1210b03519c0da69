"""What every part of the oauth service shares: settings, the NATS connection and its KV buckets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from libs.common.runtime.sealing import Sealer
from libs.common.settings import OAuthSettings

__all__ = ["NatsHandler", "OAuthContext"]

NatsHandler = Callable[[bytes], Awaitable[bytes]]
"""A request/reply handler of the dispatch table: request payload in, reply payload out."""


@dataclass(frozen=True, slots=True)
class OAuthContext:
    settings: OAuthSettings
    nc: NATS
    state: KeyValue
    """`subjects.KV_OAUTH`: clients, codes, refresh families, password hashes (never plain secrets)."""
    registrations: KeyValue
    """`subjects.KV_OAUTH_REGISTRATIONS`: anonymous registrations not used yet, and their rate counters."""
    public: KeyValue
    """`subjects.KV_OAUTH_PUBLIC`: what ingress reads (the JWK set)."""
    revoked: KeyValue
    """`subjects.KV_OAUTH_REVOKED`: revoked access tokens by `jti`."""
    sealer: Sealer
    """Encrypts secrets for KV (`libs.common.runtime.sealing`, keys `BASTION_SECRETS_KEY`, newest first)."""
