"""What a 2026-07-28 upstream announces.

List changes and resource updates on one `subscriptions/listen` stream (that era has no
`notifications/*/list_changed` outside it and no `resources/subscribe`).

The stream's filter names the resources agents subscribed to through this executor, so it is
reopened whenever that set changes. An event published while it reopens is missed; the executor
re-lists on every reconnect, and resource updates are hints an agent can always re-read after.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable

import anyio
from mcp.client.session import ClientSession
from mcp.client.subscriptions import listen
from mcp.shared.subscriptions import ResourceUpdated

from ...error_mapping import describe_exception

__all__ = ["ChangeListener"]

log = logging.getLogger(__name__)

_RETRY_AFTER = 1.0
"""Seconds before reopening a stream that failed (a server without `subscriptions/listen` support
fails at once; this keeps that from spinning). A fixed pause, not tenacity: it must end early when
the filter changes (an agent's `resources/subscribe` waits for the reopened stream), and the session
it belongs to is health-checked and reconnected by its owner (`reconnect`) anyway."""


class ChangeListener:
    def __init__(
        self,
        server: str,
        on_list_changed: Callable[[], None],
        on_resource_updated: Callable[[str], Awaitable[None]],
    ) -> None:
        self.server = server
        self._on_list_changed = on_list_changed
        self._on_resource_updated = on_resource_updated
        self._uris: frozenset[str] = frozenset()
        self._refilter = anyio.Event()
        self._live: frozenset[str] | None = None
        """The resource filter of the stream the server last acknowledged."""
        self._opened = anyio.Event()

    async def subscribe_to(self, uris: Iterable[str], within: float) -> bool:
        """Want updates for exactly `uris` from now on.

        Reopens the stream if that changed and waits (at most `within` seconds) until the server
        acknowledged the new filter, so an update right after an agent's `resources/subscribe` returns is
        not missed."""
        uris = frozenset(uris)
        if uris != self._uris:
            self._uris = uris
            self._refilter.set()
        with anyio.move_on_after(within):
            while self._live != uris:
                await self._opened.wait()
        return self._live == uris

    @staticmethod
    def supports_resource_subscriptions(session: ClientSession) -> bool:
        caps = session.server_capabilities
        return caps is not None and caps.resources is not None and bool(caps.resources.subscribe)

    async def run(self, session: ClientSession) -> None:
        """Keep a stream open for the session's life (cancelled with it)."""
        caps = session.server_capabilities
        if caps is None:
            return
        tools = bool(caps.tools and caps.tools.list_changed)
        prompts = bool(caps.prompts and caps.prompts.list_changed)
        resources = bool(caps.resources and caps.resources.list_changed)
        while True:
            self._refilter = anyio.Event()
            uris = sorted(self._uris) if self.supports_resource_subscriptions(session) else []
            if not (tools or prompts or resources or uris):
                await self._refilter.wait()
                continue
            try:
                async with listen(
                    session,
                    tools_list_changed=tools,
                    prompts_list_changed=prompts,
                    resources_list_changed=resources,
                    resource_subscriptions=uris,
                ) as subscription:
                    self._live = frozenset(uris)
                    opened, self._opened = self._opened, anyio.Event()
                    opened.set()
                    async with anyio.create_task_group() as group:
                        group.start_soon(self._consume, subscription)
                        await self._refilter.wait()
                        group.cancel_scope.cancel()
            except Exception as exc:
                log.debug("upstream %s: change stream ended (%s)", self.server, describe_exception(exc))
                with anyio.move_on_after(_RETRY_AFTER):
                    await self._refilter.wait()

    async def _consume(self, subscription: AsyncIterable[object]) -> None:
        async for event in subscription:
            if isinstance(event, ResourceUpdated):
                await self._on_resource_updated(event.uri)
            else:
                self._on_list_changed()
        await anyio.sleep(_RETRY_AFTER)  # the server ended the stream: open a new one
        self._refilter.set()
