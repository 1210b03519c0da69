"""One upstream server as the executor sees it, whatever its kind.

Its live session, kept by one dedicated task, its listing, its circuit breaker, and what calls on it
share (the agents of the calls in flight, resource subscriptions). Calls reach it through the executor's
call path (`call_path`), from many other tasks, and only use the live session (`session`).

A kind's sessions are context managers that must be entered and exited by the same task, so one
task (`_run`) owns them for the server's whole life: it opens a session through the server's
`Connector` (`upstreams.registry`), lists what the server offers, publishes it, health-checks an
idle session and reconnects with backoff (`reconnect`) when the session ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any

import anyio

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.messages import ServerCatalog
from libs.common.web.egress_rules import EgressRules

from .agents import AgentLink
from .breaker import CircuitBreaker
from .catalog_publisher import CatalogPublisher, Snapshot
from .error_mapping import describe_exception
from .interceptors.chain import InterceptorChain
from .oauth_tokens import OAuthTokens
from .tools import ExposurePolicy, ToolSet
from .upstreams.interface import Features, Listing, SessionHooks, UpstreamSession, UpstreamSettings
from .upstreams.last_words import LastWords, configured_secrets
from .upstreams.reconnect import Backoff, keep_reconnecting
from .upstreams.registry import connector_for

__all__ = ["Publish", "State", "Upstream", "UpstreamSettings"]

log = logging.getLogger(__name__)

_STABLE_AFTER = 10.0
"""A session that lived this long resets the backoff: its loss is news, not a crash loop."""


_RELIST_SHARE = 10
"""A server that takes long to list (thousands of tools, a slow link) waits at least this many times
its listing's time before the next scheduled one, so re-listing never takes more than about a tenth
of its session's time (docs/supply-chain.md)."""


class State(StrEnum):
    CONNECTING = "connecting"
    READY = "ready"
    DOWN = "down"
    STOPPED = "stopped"


Publish = Callable[["Upstream", ServerCatalog], Awaitable[bool]]


class Upstream:
    """One server's session and what calls on it share; `session` is the live one (None while there is none).

    Safe to read from any task."""

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        settings: UpstreamSettings,
        *,
        publish: Publish,
        agents: AgentLink | None = None,
        oauth: OAuthTokens | None = None,
        interceptors: InterceptorChain | None = None,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.user = user
        """The user whose own session this is (a per-user server), else None: the server's shared session."""
        self.config = config
        self.settings = settings
        self.agents = agents or AgentLink(None, name)
        """Routes what the server sends during a call back to that call's agent."""
        self.subscriptions: dict[str, set[str]] = {}
        """Resource URI -> agent sessions subscribed to it through this executor; the upstream is
        subscribed while the set is non-empty, and again after every reconnect."""
        self.lean_calls = settings.lean_calls
        """Send `tools/call` the session's lean way where it has one (`lean.py`); False: always the SDK's."""
        self._interceptors = interceptors
        """Their listing hooks see every listing before it is published (`interceptors.chain`)."""
        self._oauth = oauth
        """Adds the server's OAuth access token to its requests (None: no OAuth for this server)."""
        if oauth is not None:
            oauth.on_lost = self._on_transport_end
        self.features = Features()
        self.withheld: tuple[str, ...] = ()
        self.tools: ToolSet | None = None
        """Last listing (kept while reconnecting, so bad calls are still refused locally)."""
        self.protocol_version: str | None = None
        self.policy = ExposurePolicy(config.tools)
        self._listed: list[dict[str, Any]] = []
        """Every tool the server listed (as the listing interceptors left them), before `config.tools` filtering."""
        self._aliases: Mapping[str, tuple[str, ...]] = {}
        """Their other stable names (`Listing.aliases`), published with them for Cedar."""
        self._catalog = CatalogPublisher(
            name, lambda catalog: publish(self, catalog), self._snapshot, settings.catalog_heartbeat
        )
        self.session: UpstreamSession | None = None
        self.last_words = LastWords(configured_secrets(config))
        """What the server last said about itself, published with its status when it is unavailable."""
        self._connector = connector_for(
            name,
            config,
            SessionHooks(
                settings,
                agents=self.agents,
                on_end=self._on_transport_end,
                on_list_changed=self.relist,
                on_unauthorized=self._on_unauthorized,
                auth=oauth,
                subscriptions=self.subscriptions,
                last_words=self.last_words,
                egress=EgressRules([*settings.egress_allowed, *config.allow_private_hosts]),
            ),
        )
        self.state = State.CONNECTING
        """Where its session stands; an attribute, not a property, as every call's `Settle` reads it (set by
        the session task alone)."""
        self._error = "connecting"
        self._settled = asyncio.Event()
        self._wake = anyio.Event()
        self._closed = False
        self._relist = False
        self._ready_at: float | None = None
        self._failures = 0
        self._failed_connects = 0
        """Breaker failures counted by connection attempts since the last session (`_connected`)."""
        self._scope = anyio.CancelScope()
        self._task: asyncio.Task[None] | None = None
        self._health_interval = settings.health_interval
        self._drift_interval = settings.drift_interval if settings.drift_interval > 0 else math.inf
        """Seconds between scheduled re-listings: an upstream that changes without announcing it."""
        self._raw: Listing | None = None
        """The last listing as the server sent it, so a scheduled re-listing that finds it unchanged
        costs no decision and no publish."""
        self._unauthorized = False
        """The last finished connection attempt got HTTP 401 (health "needs_auth"). It changes only
        when an attempt ends, so health never flaps to "down" while the next attempt is under way."""
        self._attempt_unauthorized = False
        """The attempt under way got HTTP 401."""
        self._last_ok = 0.0
        self.connects = 0
        """Connection attempts so far (tests count restarts with it)."""
        breaker = config.circuit_breaker
        self.breaker = CircuitBreaker(breaker.failure_threshold, breaker.reset_timeout, on_change=self._catalog.dirty)

    @property
    def needs_auth(self) -> bool:
        """Down because the server answered HTTP 401 and no usable token could be had."""
        return self.state is State.DOWN and self._unauthorized

    @property
    def authorize_url(self) -> str | None:
        """While `needs_auth` on a per-user session: the link its user opens (`oauth_tokens.OAuthTokens`)."""
        return self._oauth.authorize_url if self._oauth is not None and self.needs_auth else None

    def reconfigurable(self, config: ServerConfig) -> bool:
        """True when `config` differs from ours only in what `reconfigure` applies without reconnecting."""
        live = ("tools", "timeout", "retries", "circuit_breaker", "namespace")
        return config.model_copy(update={k: getattr(self.config, k) for k in live}) == self.config

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"upstream:{self.name}")
        self._catalog.start()

    async def reconfigure(self, config: ServerConfig) -> None:
        """Apply new `tools` patterns, `timeout`, retries and breaker settings to the live session.

        And republish the catalog."""
        self.config = config
        self.policy = ExposurePolicy(config.tools)
        self.breaker.configure(config.circuit_breaker.failure_threshold, config.circuit_breaker.reset_timeout)
        if self.tools is not None:
            self.tools = ToolSet(self._listed, self.policy, previous=self.tools, aliases=self._aliases)
            if self.state is State.READY:
                await self._catalog.publish("ready")

    async def stop(self) -> None:
        """Close the session (a stdio child is stopped and reaped) and wait until it is gone."""
        self._scope.cancel()
        await self._catalog.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        self._error = f"server {self.name!r} was removed from the configuration"
        self._set_state(State.STOPPED)

    def relist(self) -> None:
        """List the server again soon (it announced a change, or a call found our copy stale)."""
        self._relist = True
        self._poke()

    def succeeded(self) -> None:
        """A call just got an answer: the session works (no health check needed for a while)."""
        self._last_ok = time.monotonic()  # per call: no event-loop lookup (a `getpid` on CPython 3.11)

    async def settled(self, deadline: float) -> bool:
        """Wait (until event-loop time `deadline`) while a connection attempt is under way; False if it still is."""
        if self.state is State.CONNECTING:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._settled.wait()
            except TimeoutError:
                return False
        return True

    def unavailable_reason(self) -> str:
        if self.state is State.STOPPED:
            return self._error
        return f"server {self.name!r} is unavailable: {self._error}"

    # ------------------------------------------------------------------ the owning task

    def _set_state(self, state: State) -> None:
        if (state is State.READY) != (self.state is State.READY):
            self._catalog.dirty()
        self.state = state
        if state is State.CONNECTING:
            self._settled.clear()
        else:
            self._settled.set()

    def _poke(self) -> None:
        self._wake.set()

    def _on_transport_end(self) -> None:
        self._closed = True
        if self.state is State.READY:
            self._set_state(State.CONNECTING)  # calls arriving now wait for the reconnect
        self._poke()

    def _on_unauthorized(self) -> None:
        self._attempt_unauthorized = True

    async def _run(self) -> None:
        try:
            with self._scope:
                await keep_reconnecting(self._attempt, self.settings.max_backoff)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError | GeneratorExit):
                log.exception("upstream %s: connection task crashed", self.name)
            raise

    async def _attempt(self) -> None:
        """One connection attempt and the session it leads to.

        Returns when a session that lived long enough ends (reconnect at once); raises `Backoff`
        otherwise (`reconnect.keep_reconnecting`)."""
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
                    else "the server answered HTTP 401: it needs credentials (set them in the server's `headers`)"
                )
        if self._ready_at is not None:
            log.warning("upstream %s: session lost (%s); reconnecting", self.name, reason)
            if time.monotonic() - self._ready_at >= _STABLE_AFTER:
                self._failures = 0
                return
            self._failures += 1
            raise Backoff(reason)
        self._failures += 1
        self._connector.attempt_failed()
        if not self._unauthorized:  # up but not authorized: calls must not wait for the breaker
            self.breaker.failure()
            self._failed_connects += 1
        level = logging.WARNING if reason != self._error or self._failures == 1 else logging.DEBUG
        log.log(level, "upstream %s: cannot connect (%s); attempt %d", self.name, reason, self._failures)
        self._error = reason
        self._set_state(State.DOWN)
        await self._catalog.publish("unavailable", reason, self.last_words.lines())
        raise Backoff(reason)

    async def _serve_session(self) -> None:
        """Connect, list, publish, then wait until the session ends (returns) or fails (raises)."""
        self._closed = self._relist = self._attempt_unauthorized = False
        self._ready_at = None
        self.connects += 1
        timeout = self.settings.connect_timeout
        with anyio.CancelScope(deadline=anyio.current_time() + timeout) as connect_scope:
            async with self._connector.open() as session:
                await self._list(session)
                connect_scope.deadline = math.inf
                self.protocol_version = session.protocol_version
                self.session = session
                self._ready_at = time.monotonic()
                self.succeeded()
                self._connected()
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
                        tg.start_soon(session.run)
                        await self._watch(session)
                        tg.cancel_scope.cancel()
                finally:
                    self.session = None
        if connect_scope.cancelled_caught and self._ready_at is None:
            raise TimeoutError(f"no MCP session within {timeout:g} seconds")

    def _connected(self) -> None:
        """A session is up after failed attempts.

        The server answered its handshake and listing, so the failures those attempts gave its breaker
        are over, also when they opened it (calls were refused for up to `reset_timeout` after it was up,
        or it stayed "degraded" until some call succeeded). Only theirs: failures of calls in between are
        left to the breaker's rule, or a server that dies on every call but reconnects fine would never
        open it."""
        counted, self._failed_connects = self._failed_connects, 0
        if counted and self.breaker.failures <= counted:
            self.breaker.success()

    async def _watch(self, session: UpstreamSession) -> None:
        next_poll = anyio.current_time() + self._drift_interval
        while not self._closed:
            if self._relist or anyio.current_time() >= next_poll:
                forced, self._relist = self._relist, False
                began = anyio.current_time()
                await self._relist_now(session, forced)
                took = anyio.current_time() - began
                next_poll = began + took + max(self._drift_interval, _RELIST_SHARE * took)
                continue
            self._wake = anyio.Event()
            if not (self._closed or self._relist):
                with anyio.move_on_after(min(self._health_interval, next_poll - anyio.current_time())):
                    await self._wake.wait()
                idle = time.monotonic() - self._last_ok
                if not (self._closed or self._relist or self._wake.is_set()) and idle >= self._health_interval:
                    if not await self._ping(session):
                        return  # ends the session: `_run` reconnects

    async def _relist_now(self, session: UpstreamSession, forced: bool) -> None:
        """List the server again.

        `forced` (it announced a change, a pin changed) decides and publishes whatever it lists; a
        scheduled re-listing only when the server lists something else."""
        # a scheduled one waits no longer than a health ping would: a frozen server is for the ping to find
        within = (
            self.settings.connect_timeout
            if forced
            else min(self.settings.connect_timeout, max(self._health_interval, 1.0))
        )
        try:
            with anyio.fail_after(within):
                changed = await self._list(session, forced)
        except Exception as exc:
            log.warning("upstream %s: re-listing tools failed (%s)", self.name, describe_exception(exc))
            return
        self.succeeded()
        if changed:
            if not forced:
                log.warning("upstream %s: its definitions changed without a notification", self.name)
            await self._catalog.publish("ready")

    async def _ping(self, session: UpstreamSession) -> bool:
        """Health check of an idle session.

        While the breaker is open the ping doubles as its probe, so a server that recovers is trusted
        again without waiting for traffic."""
        probe = self.breaker.allow()
        problem = await session.ping(min(self.settings.connect_timeout, max(self._health_interval, 1.0)))
        if problem is not None:
            log.warning("upstream %s: health check failed (%s); reconnecting", self.name, problem)
        else:
            self.succeeded()
        if probe:
            self.breaker.failure() if problem is not None else self.breaker.success()
        return problem is None

    async def _list(self, session: UpstreamSession, forced: bool = True) -> bool:
        """List, decide and keep what the server offers.

        False when not `forced` and the server listed exactly what it did last time (nothing decided
        again)."""
        raw: Listing = await session.list()
        if not forced and raw == self._raw:
            return False
        listing = raw
        chain = self._interceptors
        if chain is not None and chain.on_listings:
            listing = await chain.at_listing(self.name, self.config, raw, self.user)
        self._raw = raw  # only once decided: a listing the interceptors failed on is decided again
        self.features = listing.features
        self.withheld = listing.withheld
        self._listed = listing.tools
        self._aliases = listing.aliases
        self.tools = ToolSet(listing.tools, self.policy, previous=self.tools, aliases=listing.aliases)
        return True

    def _snapshot(self) -> Snapshot:
        return Snapshot(
            self.tools,
            self.protocol_version,
            self.state is State.READY,
            self.breaker,
            self.features,
            self.config.namespace,
            self._unauthorized,
            self.withheld,
            self.config.tasks,
            self.config.per_user,
        )

    def listing(self) -> ServerCatalog:
        """What this session lists now, as its catalog entry says it (a per-user session's, asked for)."""
        return self._catalog.entry("ready" if self.state is State.READY else "unavailable", self._error)[1]
