"""One upstream MCP server: a single long-lived session, kept alive by one dedicated task.

The SDK's transports and session are anyio context managers whose cancel scopes must be entered
and exited by the same task, so one task (`_run`) owns them for the server's whole life and
reconnects with backoff when they end. Calls (`upstream.Upstream`) come from many other tasks and
only touch the session object, which multiplexes them over the one connection.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import math
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.session import ClientSession
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from libs.common.config import ServerConfig
from libs.common.messages import ServerCatalog

from .agents import AgentLink
from .breaker import CircuitBreaker
from .catalog import CatalogPublisher, Snapshot
from .error_mapping import describe_exception
from .features import LIST_CHANGED, Features, list_features
from .lean import LeanLink
from .listening import ChangeListener
from .oauth import OAuthTokens
from .reconnect import backoff_delay
from .requests import ping
from .tools import ExposurePolicy, ToolSet, list_tool_definitions
from .transports import open_transport

__all__ = ["Connection", "Publish", "State"]

log = logging.getLogger(__name__)

try:
    _VERSION = importlib.metadata.version("bastion-gateway")
except importlib.metadata.PackageNotFoundError:  # running from a source tree that was never installed
    _VERSION = "0"
_CLIENT_INFO = types.Implementation(name="bastion", version=_VERSION)
_STABLE_AFTER = 10.0
"""A session that lived this long resets the backoff: its loss is news, not a crash loop."""


class State(StrEnum):
    CONNECTING = "connecting"
    READY = "ready"
    DOWN = "down"
    STOPPED = "stopped"


Publish = Callable[["Connection", ServerCatalog], Awaitable[bool]]


class Connection:
    """Owns the connection to one server (`Upstream` adds the calls on it)."""

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        *,
        connect_timeout: float,
        max_backoff: float,
        publish: Publish,
        health_interval: float = 15.0,
        agents: AgentLink | None = None,
        oauth: OAuthTokens | None = None,
        lean_calls: bool = True,
        max_result: int | None = None,
    ) -> None:
        self.name = name
        self._max_result = max_result
        """`BASTION_MAX_RESULT_BYTES`: a lean call's answer is not read far past it (`open_transport`)."""
        self._oauth = oauth
        """Adds the server's OAuth access token to its requests (None: no OAuth for this server)."""
        if oauth is not None:
            oauth.on_lost = self._on_transport_end
        self.agents = agents or AgentLink(None, name)
        """Routes what the server sends during a call back to that call's agent."""
        self.features = Features()
        self._subscriptions: dict[str, set[str]] = {}
        self._listener = ChangeListener(name, self._changes_announced, self.agents.on_resource_updated)
        """Resource URI -> agent sessions subscribed to it through this executor; the upstream is
        subscribed while the set is non-empty, and again after every reconnect."""
        self.config = config
        self.tools: ToolSet | None = None
        """Last listing (kept while reconnecting, so bad calls are still refused locally)."""
        self.protocol_version: str | None = None
        self._policy = ExposurePolicy(config.tools)
        self._listed: list[dict[str, Any]] = []
        """Every tool the server listed, before `config.tools` filtering."""
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff
        self._catalog = CatalogPublisher(name, lambda catalog: publish(self, catalog), self._snapshot)
        self._session: ClientSession | None = None
        self._lean: LeanLink | None = None
        """The live session's link for lean `tools/call` sends (streamable HTTP: `lean.py`; stdio and
        SSE: `lean_stdio.py`)."""
        self._state = State.CONNECTING
        self._error = "connecting"
        self._settled = asyncio.Event()
        self._wake = anyio.Event()
        self._closed = False
        self._relist = False
        self._ready_at: float | None = None
        self._scope = anyio.CancelScope()
        self._task: asyncio.Task[None] | None = None
        self._health_interval = health_interval
        self._unauthorized = False
        """The last finished connection attempt got HTTP 401 (health "needs_auth"). It changes only
        when an attempt ends, so health never flaps to "down" while the next attempt is under way."""
        self._attempt_unauthorized = False
        """The attempt under way got HTTP 401."""
        self._mode = config.protocol
        """How the next connect negotiates. "auto" opens with a `server/discover` probe, which some old
        servers (mcp <= 1.8 over stdio and SSE) answer by dropping the connection; after a failed
        connect in auto mode the next attempt uses the handshake, and the attempt after that auto
        again, so a transient failure never pins a modern server to the old protocol."""
        self._last_ok = 0.0
        self.connects = 0
        """Connection attempts so far (tests count restarts with it)."""
        self.lean_calls = lean_calls
        """Send `tools/call` on streamable-HTTP sessions the lean way (`lean.py`); False: always the SDK's."""
        breaker = config.circuit_breaker
        self.breaker = CircuitBreaker(breaker.failure_threshold, breaker.reset_timeout, on_change=self._catalog.dirty)

    @property
    def state(self) -> State:
        return self._state

    @property
    def needs_auth(self) -> bool:
        """Down because the server answered HTTP 401 and no usable token could be had."""
        return self._state is State.DOWN and self._unauthorized

    @property
    def authorize_url(self) -> str | None:
        """While `needs_auth` on a per-user session: the link its user opens (`oauth.OAuthTokens`)."""
        return self._oauth.authorize_url if self._oauth is not None and self.needs_auth else None

    @property
    def lean_link(self) -> LeanLink | None:
        """The live session's link for lean sends, if there is one."""
        return self._lean

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"upstream:{self.name}")
        self._catalog.start()

    def reconfigurable(self, config: ServerConfig) -> bool:
        """True when `config` differs from ours only in what `reconfigure` applies without reconnecting."""
        live = ("tools", "timeout", "retries", "circuit_breaker", "namespace")
        return config.model_copy(update={k: getattr(self.config, k) for k in live}) == self.config

    async def reconfigure(self, config: ServerConfig) -> None:
        """Apply new `tools` patterns and `timeout` to the live session, and republish the catalog."""
        self.config = config
        self._policy = ExposurePolicy(config.tools)
        self.breaker.configure(config.circuit_breaker.failure_threshold, config.circuit_breaker.reset_timeout)
        if self.tools is not None:
            self.tools = ToolSet(self._listed, self._policy, previous=self.tools)
            if self._state is State.READY:
                await self._catalog.publish("ready")

    async def stop(self) -> None:
        """Close the session (a stdio child is stopped and reaped) and wait until it is gone."""
        self._scope.cancel()
        await self._catalog.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        self._error = f"server {self.name!r} was removed from the configuration"
        self._set_state(State.STOPPED)

    def _changes_announced(self) -> None:
        self._relist = True
        self._poke()

    # ------------------------------------------------------------------ connection (the owning task)

    def _set_state(self, state: State) -> None:
        if (state is State.READY) != (self._state is State.READY):
            self._catalog.dirty()
        self._state = state
        if state is State.CONNECTING:
            self._settled.clear()
        else:
            self._settled.set()

    def _poke(self) -> None:
        self._wake.set()

    def _on_transport_end(self) -> None:
        self._closed = True
        if self._state is State.READY:
            self._set_state(State.CONNECTING)  # calls arriving now wait for the reconnect
        self._poke()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, LIST_CHANGED):
            self._relist = True
            self._poke()
        elif isinstance(message, types.ResourceUpdatedNotification):
            await self.agents.on_resource_updated(str(message.params.uri))

    async def _run(self) -> None:
        failures = 0
        try:
            with self._scope:
                while True:
                    if failures:
                        await anyio.sleep(backoff_delay(failures, self._max_backoff))
                    self._set_state(State.CONNECTING)
                    try:
                        await self._serve_session()
                        reason = "the server closed the connection"
                    except Exception as exc:
                        reason = describe_exception(exc)
                        self._unauthorized = self._attempt_unauthorized
                        if self._unauthorized:
                            reason = (
                                f"the server answered HTTP 401: {self._oauth.problem}"
                                if self._oauth is not None and self._oauth.problem
                                else "the server answered HTTP 401: it needs credentials (set them in the "
                                "server's `headers`)"
                            )
                    if self._ready_at is not None:
                        uptime = time.monotonic() - self._ready_at
                        failures = 0 if uptime >= _STABLE_AFTER else failures + 1
                        log.warning("upstream %s: session lost (%s); reconnecting", self.name, reason)
                        continue
                    failures += 1
                    if self.config.protocol == "auto":
                        self._mode = "legacy" if self._mode == "auto" else "auto"
                    if not self._unauthorized:  # up but not authorized: calls must not wait for the breaker
                        self.breaker.failure()
                    level = logging.WARNING if reason != self._error or failures == 1 else logging.DEBUG
                    log.log(level, "upstream %s: cannot connect (%s); attempt %d", self.name, reason, failures)
                    self._error = reason
                    self._set_state(State.DOWN)
                    await self._catalog.publish("unavailable", reason)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError | GeneratorExit):
                log.exception("upstream %s: connection task crashed", self.name)
            raise

    async def _serve_session(self) -> None:
        """Connect, list tools, publish, then wait until the session ends (returns) or fails (raises)."""
        self._closed = self._relist = self._attempt_unauthorized = False
        self._ready_at = None
        self._lean = None
        self.connects += 1
        timeout = self._connect_timeout
        transport = open_transport(
            self.config,
            connect_timeout=timeout,
            on_end=self._on_transport_end,
            name=self.name,
            on_unauthorized=self._on_unauthorized,
            auth=self._oauth,
            on_lean=self._on_lean,
            on_log=self.agents.on_log,
            max_result=self._max_result,
        )
        with anyio.CancelScope(deadline=anyio.current_time() + timeout) as connect_scope:
            agents = self.agents
            client = Client(
                transport,
                cache=None,
                message_handler=self._on_message,
                client_info=_CLIENT_INFO,
                mode=self._mode,
                logging_callback=agents.on_log,
                sampling_callback=agents.sampling,
                elicitation_callback=agents.elicitation,
                list_roots_callback=agents.roots,
            )
            async with client:
                session = client.session
                await self._refresh_tools(session)
                await self._resubscribe(session)
                connect_scope.deadline = math.inf
                self.protocol_version = session.protocol_version
                self._session = session
                self._ready_at = time.monotonic()
                self._last_ok = asyncio.get_running_loop().time()
                self._unauthorized = False  # a 401 answered by an OAuth retry is not "needs auth"
                self._set_state(State.READY)
                assert self.tools is not None
                log.info(
                    "upstream %s: ready over %s (protocol %s, %d tools exposed)",
                    self.name,
                    self.config.transport,
                    session.protocol_version,
                    len(self.tools),
                )
                await self._catalog.publish("ready")
                try:
                    async with anyio.create_task_group() as tg:
                        if session.protocol_version in MODERN_PROTOCOL_VERSIONS:
                            tg.start_soon(self._listener.run, session)
                        await self._watch(session)
                        tg.cancel_scope.cancel()
                finally:
                    self._session = self._lean = None
        if connect_scope.cancelled_caught and self._ready_at is None:
            raise TimeoutError(f"no MCP session within {timeout:g} seconds")

    async def _watch(self, session: ClientSession) -> None:
        while not self._closed:
            if self._relist:
                self._relist = False
                try:
                    with anyio.fail_after(self._connect_timeout):
                        await self._refresh_tools(session)
                except Exception as exc:
                    log.warning("upstream %s: re-listing tools failed (%s)", self.name, describe_exception(exc))
                    continue
                await self._catalog.publish("ready")
                continue
            self._wake = anyio.Event()
            if not (self._closed or self._relist):
                with anyio.move_on_after(self._health_interval):
                    await self._wake.wait()
                idle = asyncio.get_running_loop().time() - self._last_ok
                if not (self._closed or self._relist or self._wake.is_set()) and idle >= self._health_interval:
                    if not await self._ping(session):
                        return  # ends the session: `_run` reconnects

    async def _ping(self, session: ClientSession) -> bool:
        """Health check of an idle session. While the breaker is open the ping doubles as its
        probe, so a server that recovers is trusted again without waiting for traffic."""
        probe = self.breaker.allow()
        problem = await ping(session, min(self._connect_timeout, max(self._health_interval, 1.0)))
        if problem is not None:
            log.warning("upstream %s: health check failed (%s); reconnecting", self.name, problem)
        else:
            self._last_ok = asyncio.get_running_loop().time()
        if probe:
            self.breaker.failure() if problem is not None else self.breaker.success()
        return problem is None

    async def _refresh_tools(self, session: ClientSession) -> None:
        definitions = await list_tool_definitions(session)
        self.features = await list_features(session, self.name)
        self._listed = definitions
        self.tools = ToolSet(definitions, self._policy, previous=self.tools)

    async def _resubscribe(self, session: ClientSession) -> None:
        """A new session knows nothing of the old one's resource subscriptions (2026-07-28 sessions
        carry them on the change stream instead)."""
        if session.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return
        for uri in list(self._subscriptions):
            try:
                with anyio.fail_after(self._connect_timeout):
                    await session.send_request(
                        types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri)), types.EmptyResult
                    )
            except Exception as exc:
                log.warning("upstream %s: re-subscribing to a resource failed (%s)", self.name, describe_exception(exc))

    def _on_lean(self, link: LeanLink) -> None:
        self._lean = link

    def _on_unauthorized(self) -> None:
        self._attempt_unauthorized = True

    def _snapshot(self) -> Snapshot:
        return Snapshot(
            self.tools,
            self.protocol_version,
            self._state is State.READY,
            self.breaker,
            self.features,
            self.config.namespace,
            self._unauthorized,
        )
