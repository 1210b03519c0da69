"""What an agent session asked for that outlives one request.

Its log level, its resource subscriptions, and whether the agent ended it (`DELETE /mcp`), kept in KV
`bastion_sessions` so every ingress replica honours them (the request that sets them and the one that
relies on them may reach different replicas). Each replica keeps what the KV watch delivers in memory, so
checking a session costs a dict lookup."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

import orjson
from nats.js.kv import KeyValue

__all__ = ["SessionState", "session_key"]

log = logging.getLogger(__name__)


def session_key(session_id: str) -> str:
    """The KV-safe handle of a session id (which is a bearer-like token: never stored as is)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


def _subscription_key(session: str, server: str, uri: str) -> str:
    digest = hashlib.blake2b(f"{server}\x00{uri}".encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
    return f"{session}.sub.{digest}"


class SessionState:
    def __init__(self, kv: KeyValue | None = None, on_ended: Callable[[str], None] | None = None) -> None:
        """`kv`: the sessions bucket, which every replica watches (None: this replica only)."""
        self.levels: dict[str, str] = {}
        self.subscriptions: dict[str, set[tuple[str, str]]] = {}
        """session -> {(server, uri)}"""
        self._by_key: dict[str, tuple[str, tuple[str, str]]] = {}
        self.ended: dict[str, float] = {}
        """session -> when its id would have expired anyway (unix time): until then it is refused."""
        self.on_ended = on_ended
        """Told of each session ended, by this replica or another (to end its open streams)."""
        self._kv = kv

    # ------------------------------------------------------------------ KV watch feed

    def put(self, key: str, value: bytes, _revision: int = 0) -> None:
        session, _, rest = key.partition(".")
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError:
            log.warning("ignoring an unreadable session record")
            return
        if rest == "level" and isinstance(data, str) and session not in self.ended:
            self.levels[session] = data
        elif rest == "ended" and isinstance(data, int | float):
            self._ended(session, float(data))
        elif rest.startswith("sub.") and isinstance(data, dict):
            pair = (str(data.get("server")), str(data.get("uri")))
            self._by_key[key] = (session, pair)
            self.subscriptions.setdefault(session, set()).add(pair)

    def delete(self, key: str) -> None:
        session, _, rest = key.partition(".")
        if rest == "level":
            self.levels.pop(session, None)
        elif (entry := self._by_key.pop(key, None)) is not None:
            pairs = self.subscriptions.get(entry[0], set())
            pairs.discard(entry[1])
            if not pairs:
                self.subscriptions.pop(entry[0], None)

    def is_ended(self, session: str) -> bool:
        return session in self.ended

    def _ended(self, session: str, expires_at: float) -> None:
        if len(self.ended) >= 1024 and len(self.ended) & 1023 == 0:  # now and then, forget what expired anyway
            now = time.time()
            self.ended = {s: t for s, t in self.ended.items() if t > now}
        known = session in self.ended
        self.ended[session] = expires_at
        self.levels.pop(session, None)  # kept for ever otherwise, on every replica: one per session
        if not known and self.on_ended is not None:
            self.on_ended(session)

    # ------------------------------------------------------------------ writes

    async def end(self, session: str, expires_at: float) -> None:
        """The agent ended the session: every replica refuses it from now on.

        The record outlives the id's own expiry (`expires_at`), after which the id is refused for its age
        anyway."""
        self._ended(session, expires_at)
        if self._kv is not None:
            await self._kv.put(f"{session}.ended", orjson.dumps(expires_at))

    async def set_level(self, session: str, level: str) -> None:
        self.levels[session] = level  # this replica at once; the others through the watch
        if self._kv is not None:
            await self._kv.put(f"{session}.level", orjson.dumps(level))

    async def subscribe(self, session: str, server: str, uri: str) -> None:
        self.subscriptions.setdefault(session, set()).add((server, uri))
        if self._kv is not None:
            await self._kv.put(_subscription_key(session, server, uri), orjson.dumps({"server": server, "uri": uri}))

    async def unsubscribe(self, session: str, server: str, uri: str) -> None:
        self.subscriptions.get(session, set()).discard((server, uri))
        if self._kv is not None:
            try:
                await self._kv.delete(_subscription_key(session, server, uri))
            except Exception as exc:
                log.warning("cannot drop a subscription record (%s)", exc)
