"""Server-initiated messages on agents' standalone streams (`GET /mcp`).

Each replica tells the streams it holds when the catalog's tools, prompts or resources change
(`notifications/*/list_changed`), and a session's streams when its own tool list grew (discovery
mode); it delivers `notifications/resources/updated` to the sessions that subscribed to that
resource, whichever replica took the subscription.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from nats.aio.msg import Msg
from pydantic import ValidationError

from libs.common.contracts.messages import ResourceUpdated
from services.ingress.catalog.aggregated import Catalog
from services.ingress.sessions.session_state import SessionState

__all__ = ["Listener", "Notifier"]

log = logging.getLogger(__name__)

_QUEUE_LIMIT = 1000
"""Messages a slow stream may have pending; beyond that the oldest are dropped (they are hints)."""


@dataclass(eq=False)
class Listener:
    """One open stream.

    A session's `GET /mcp` (everything, resources as the session subscribed), or a 2026-07-28
    `subscriptions/listen` (only the kinds and resources it asked for, each message stamped with its
    subscription id)."""

    session: str | None
    kinds: frozenset[str] | None = None
    """"tools", "prompts", "resources" list changes wanted; None: all."""
    resources: set[tuple[str, str]] | None = None
    """(server, uri) whose updates this stream wants; None: the session's subscriptions."""
    subscription_id: Any = None
    key_id: str | None = None
    """The key a sessionless stream listens for: what that key's sessionless agents found reaches it."""
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=lambda: asyncio.Queue(_QUEUE_LIMIT))
    """Messages for the stream; None ends it (its session was ended)."""

    def end(self) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    def push(self, message: dict[str, Any]) -> None:
        if self.subscription_id is not None:
            meta = {SUBSCRIPTION_ID_META_KEY: self.subscription_id}
            message = {**message, "params": {**message.get("params", {}), "_meta": meta}}
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(message)


class Notifier:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._listeners: set[Listener] = set()
        self._signatures = self._signature()

    def listen(self, session: str | None, **wants: Any) -> Listener:
        listener = Listener(session, **wants)
        self._listeners.add(listener)
        return listener

    def forget(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    def session_ended(self, session: str) -> None:
        """The agent ended its session (on any replica): its streams here end too."""
        for listener in self._listeners:
            if listener.session == session:
                listener.end()

    def catalog_changed(self) -> None:
        signatures = self._signature()
        changed = [kind for kind, old in self._signatures.items() if signatures[kind] != old]
        self._signatures = signatures
        for kind in changed:
            message = {"jsonrpc": "2.0", "method": f"notifications/{kind}/list_changed"}
            for listener in self._listeners:
                if listener.kinds is None or kind in listener.kinds:
                    listener.push(message)

    def tools_found(self, key_id: str, session: str) -> None:
        """Discovery mode found tools for one list.

        A session's own (only its streams hear), or, with no session (2026-07-28), the list the key's
        sessionless agents share (only their streams, `subscriptions/listen` opened with that key, hear)."""
        message = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
        for listener in self._listeners:
            hears = listener.session == session if session else listener.session is None and listener.key_id == key_id
            if hears and (listener.kinds is None or "tools" in listener.kinds):
                listener.push(message)

    async def on_resource_updated(self, sessions: SessionState, msg: Msg) -> None:
        """An upstream resource changed.

        The streams that asked for it hear (`sessions` holds what each session subscribed to)."""
        try:
            update = ResourceUpdated.model_validate_json(msg.data)
        except ValidationError:
            return
        pair = (update.server, update.uri)
        message = {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": update.uri}}
        for listener in self._listeners:
            wanted = (
                listener.resources
                if listener.resources is not None
                else sessions.subscriptions.get(listener.session or "", ())
            )
            if pair in wanted:
                listener.push(message)

    def _signature(self) -> dict[str, bytes]:
        catalog = self._catalog
        kinds = {
            "tools": catalog.entries,
            "prompts": catalog.prompts.entries,
            "resources": [*catalog.resources.entries, *catalog.templates.entries],
        }
        return {
            kind: hashlib.blake2b(orjson.dumps([(e.server, e.definition) for e in entries]), digest_size=16).digest()
            for kind, entries in kinds.items()
        }
