"""What Bastion keeps per upstream, and under which secret names.

Everything here holds a secret (a client secret, tokens, a PKCE verifier), so it is stored only
through a `SecretStore`, never in a plain KV bucket or a log line."""

from __future__ import annotations

import hashlib
import time

from pydantic import BaseModel

from .client import ClientRegistration, TokenSet
from .discovery import Discovered
from .secret_stores import SecretStore

__all__ = ["SHARED", "Flow", "Records", "ServerAuth", "owner_of"]

SHARED = "_shared"
"""The owner of a server's one token when it is not configured per user."""


def _token(text: str) -> str:
    """A server name made a KV key token (server names are `[A-Za-z0-9_.-]`; dots separate tokens)."""
    return text.replace(".", "=")


def owner_of(user: str | None) -> str:
    """A user id as a key token: hashed, so any id is safe in a name and none is readable there."""
    return SHARED if user is None else "u" + hashlib.sha256(user.encode()).hexdigest()[:40]


class ServerAuth(BaseModel):
    """How to get tokens for one server: its authorization server and Bastion's client there."""

    discovered: Discovered
    client: ClientRegistration
    redirect_uri: str


class Flow(BaseModel):
    """An authorization step in progress, between the redirect to the upstream and its callback."""

    server: str
    url: str
    transport: str
    user: str | None
    verifier: str
    created_at: float


class _ServersAt(BaseModel):
    servers: list[str]


def _issuer_key(issuer: str) -> str:
    """An issuer URL as a secret name: hashed (URLs hold dots, slashes and colons)."""
    return "issuer." + hashlib.sha256(issuer.rstrip("/").encode()).hexdigest()[:40]


class Records:
    def __init__(self, store: SecretStore) -> None:
        self.store = store

    async def server_auth(self, server: str) -> ServerAuth | None:
        raw = await self.store.get(f"client.{_token(server)}")
        return ServerAuth.model_validate_json(raw) if raw else None

    async def save_server_auth(self, server: str, auth: ServerAuth) -> None:
        await self.store.put(f"client.{_token(server)}", auth.model_dump_json())

    async def servers_at(self, issuer: str) -> list[str]:
        """Servers whose authorization server is `issuer` (token exchange sources), as noted so far."""
        raw = await self.store.get(_issuer_key(issuer))
        return _ServersAt.model_validate_json(raw).servers if raw else []

    async def note_server_at(self, issuer: str, server: str) -> None:
        """Add `server` to `issuer`'s servers (a read, and a write only when it is new).

        Two replicas noting two new servers of one issuer at once may lose one of them; it is noted again
        the next time that server's authorization record is loaded (`Authorizer._server_auth`)."""
        servers = await self.servers_at(issuer)
        if server not in servers:
            noted = _ServersAt(servers=sorted({*servers, server}))
            await self.store.put(_issuer_key(issuer), noted.model_dump_json())

    async def tokens(self, server: str, user: str | None) -> TokenSet | None:
        raw = await self.store.get(f"token.{_token(server)}.{owner_of(user)}")
        return TokenSet.model_validate_json(raw) if raw else None

    async def save_tokens(self, server: str, user: str | None, tokens: TokenSet) -> None:
        await self.store.put(f"token.{_token(server)}.{owner_of(user)}", tokens.model_dump_json())

    async def forget_tokens(self, server: str, user: str | None) -> None:
        await self.store.delete(f"token.{_token(server)}.{owner_of(user)}")

    async def save_flow(self, state_id: str, flow: Flow) -> None:
        await self.store.put(f"flow.{state_id}", flow.model_dump_json())

    async def take_flow(self, state_id: str, max_age: float) -> Flow | None:
        """The flow for `state_id`, once: it is deleted on the way (a callback cannot be replayed)."""
        raw = await self.store.get(f"flow.{state_id}")
        if raw is None:
            return None
        await self.store.delete(f"flow.{state_id}")
        flow = Flow.model_validate_json(raw)
        return flow if time.time() - flow.created_at <= max_age else None
