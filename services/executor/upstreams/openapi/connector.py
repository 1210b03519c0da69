"""The `openapi` server kind: a REST API served as an MCP server's sessions, without MCP underneath.

`OpenApiConnector.open()` reads the document (in a worker thread: a large one takes a second) and opens
the HTTP client the calls go through; the session lists the document's tools, runs a `tools/call` as
one HTTP request and maps the answer (`http_request`, `results`). The owning upstream keeps the rest as
for any server: argument checks, the circuit breaker, retries of idempotent operations, timeouts.

A health check costs the API nothing while calls succeed; after a call found the API unreachable or
unwell, it probes the base URL (any answer below 500 is alive), so the breaker's probe tells a
recovered API from a dead one. The document is checked for changes at each health check, a file by
its modification time and size, a URL by a conditional GET (`ETag` / `Last-Modified`, else its bytes'
digest): a changed one is listed again (which pinning sees as drift). With Bastion's upstream OAuth
(`auth: {type: oauth}`), opening a session probes the resource URL, so a missing token makes the
server (or the user's session) `needs_auth` with its link, as an MCP server's 401 does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

import httpx2
import mcp_types as types

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome, GatewayError, ToolCall, UpstreamRequest
from libs.common.contracts.openapi_config import OpenApiClientCredentials, OpenApiSection, OpenApiUpstreamOAuth
from libs.common.runtime import tracing
from libs.common.web.egress_rules import EgressRules

from ...answer_limits import answer_cutoff
from ...replies import ran, refusal
from ..egress_guard import refusal_in
from ..interface import CallContext, Connector, Listing, SessionHooks
from ..mcp.http_client import http_client
from .api import Api, load_api
from .auth import ClientCredentials, TokenError, apply_static
from .http_request import ArgumentError, build_request
from .results import Answer, OutputCheck, to_result
from .source import DocumentError, DocumentStamp, Reader, is_url

__all__ = ["MakeClient", "OpenApiConnector", "OpenApiSession", "connector"]

log = logging.getLogger(__name__)

MakeClient = Callable[[dict[str, str], httpx2.Timeout, httpx2.Auth | None], httpx2.AsyncClient]
"""(default headers, timeout, auth) -> the executor's HTTP client for upstreams (pooling, answers bounded
at the result limit, 401s reported)."""

_NOT_SENT: Final = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout, httpx2.UnsupportedProtocol)
"""Failures before the request left: the API did not run it."""


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _stamp(location: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(location)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class OpenApiSession:
    """One live session (`upstreams.interface.UpstreamSession`): the API as last read, and its client."""

    protocol_version: str | None = None
    subscription_style: Literal["none"] = "none"

    def __init__(
        self,
        name: str,
        section: OpenApiSection,
        api: Api,
        client: httpx2.AsyncClient,
        *,
        load: Callable[[], Api],
        on_list_changed: Callable[[], None],
        egress: EgressRules | None = None,
    ) -> None:
        self.name = name
        self._section = section
        self._egress = egress
        self.api = api
        self._client = client
        self._load = load
        self._on_list_changed = on_list_changed
        self._listed = False
        self._checks: dict[str, OutputCheck] = {}
        self._stamp = None if section.is_url else _stamp(section.document)
        self._unwell = False
        """The last call could not reach the API, or it answered 502-504: health checks probe it."""

    async def list(self) -> Listing:
        """The tools; read from the document again after the first listing (a relisting is a reload)."""
        if self._listed:
            stamp = None if self._section.is_url else _stamp(self._section.document)
            self.api = await asyncio.to_thread(self._load)
            self._stamp = stamp
            self._checks = {}
        self._listed = True
        return Listing(tools=self.api.tools, aliases=self.api.aliases)

    async def ping(self, within: float) -> str | None:
        if await self._document_changed(within):
            log.info("upstream %s: its OpenAPI document changed; listing it again", self.name)
            self._on_list_changed()
        if not self._unwell:
            return None
        try:
            async with asyncio.timeout(within):
                response = await self._client.request("HEAD", self.api.base_url, auth=None)
        except (TimeoutError, httpx2.HTTPError) as exc:
            return f"the API at its base URL is unreachable ({_why(exc)})"
        if response.status_code >= 500:
            return f"the API answered HTTP {response.status_code} at its base URL"
        self._unwell = False
        return None

    async def _document_changed(self, within: float) -> bool:
        """A file: its modification time or size moved.

        A URL: a conditional GET with the validators it was served with (`ETag`, `Last-Modified`) says
        so, or its bytes differ; a fetch that fails concludes nothing (the API's own health is the
        probe's to say)."""
        if not self._section.is_url:
            return _stamp(self._section.document) != self._stamp
        stamp = self.api.stamp
        if stamp is None:
            return False
        try:
            async with asyncio.timeout(within):
                return await asyncio.to_thread(self._revalidate, stamp, within)
        except (TimeoutError, DocumentError) as exc:
            log.info("upstream %s: its OpenAPI document could not be checked for changes (%s)", self.name, exc)
            return False

    def _revalidate(self, stamp: DocumentStamp, within: float) -> bool:
        section, egress = self._section, self._egress
        with Reader(section.document, max_bytes=section.max_document_bytes, timeout=within, egress=egress) as reader:
            return reader.changed(reader.root, stamp)

    async def request(self, request: UpstreamRequest, ctx: CallContext) -> CallOutcome:
        message = f"server {self.name!r} is a REST API: it offers tools only, not {request.method}"
        return refusal(request, ErrorKind.UPSTREAM_ERROR, message, code=types.METHOD_NOT_FOUND)

    async def call_tool(self, call: ToolCall, ctx: CallContext) -> CallOutcome:
        """One HTTP request for the call, due by `ctx.deadline` (event-loop time; the arguments were checked)."""
        deadline, budget = ctx.deadline, ctx.budget
        binding = self.api.bindings.get(call.tool)
        if binding is None:
            return refusal(call, ErrorKind.UNKNOWN_TOOL, f"server {self.name!r} has no tool {call.tool!r}", "not_run")
        operation = binding.operation
        base = operation.servers[0] if operation.servers else self.api.base_url
        try:
            prepared = build_request(binding, call.arguments, base)
        except ArgumentError as exc:
            return refusal(call, ErrorKind.INVALID_ARGUMENTS, str(exc), "not_run")
        apply_static(self._section.auth, prepared)
        headers = dict[str, str]()
        tracing.inject(headers)
        started = time.perf_counter()
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._client.request(
                    prepared.method,
                    prepared.url,
                    headers=[*prepared.headers, *headers.items()],
                    content=prepared.content,
                )
        except TimeoutError:
            message = f"server {self.name!r} did not answer within {budget:.3g} seconds"
            return refusal(call, ErrorKind.UPSTREAM_TIMEOUT, message, "may_have_run", upstream_ms=_since(started))
        except TokenError as exc:
            return refusal(call, ErrorKind.UPSTREAM_ERROR, str(exc), "not_run", upstream_ms=_since(started))
        except httpx2.StreamError as exc:  # the answer is longer than the result limit lets the executor read
            return refusal(call, ErrorKind.RESULT_TOO_LARGE, str(exc), "ran", upstream_ms=_since(started))
        except _NOT_SENT as exc:
            self._unwell = True
            message = f"server {self.name!r} is unreachable: {_why(exc)}"
            return refusal(call, ErrorKind.UPSTREAM_UNAVAILABLE, message, "not_run", upstream_ms=_since(started))
        except httpx2.HTTPError as exc:
            self._unwell = True
            message = f"server {self.name!r} failed during the request: {type(exc).__name__}"
            return refusal(call, ErrorKind.UPSTREAM_UNAVAILABLE, message, "may_have_run", upstream_ms=_since(started))
        answer = Answer(
            status=response.status_code,
            reason=response.reason_phrase,
            content_type=response.headers.get("content-type", ""),
            body=response.content,
            url=prepared.url,
            location=response.headers.get("location"),
        )
        result = to_result(binding, answer, self._check(call.tool), self.name)
        upstream_ms = _since(started)
        if isinstance(result, GatewayError):
            self._unwell = True
            return CallOutcome(
                id=call.id, error=result, decided_by="executor", execution="ran", upstream_ms=upstream_ms
            )
        self._unwell = False
        return ran(call.id, result, upstream_ms)

    def _check(self, tool: str) -> OutputCheck | None:
        binding = self.api.bindings[tool]
        if binding.output_schema is None:
            return None
        check = self._checks.get(tool)
        if check is None:
            check = self._checks[tool] = OutputCheck(binding.output_schema)
        return check

    async def follow(self, uris: Any, within: float) -> bool:
        return False

    async def run(self) -> None:
        return None


class OpenApiConnector:
    """Opens sessions to one REST API (`upstreams.interface.Connector`)."""

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        *,
        connect_timeout: float,
        make_client: MakeClient,
        egress: EgressRules,
        oauth: httpx2.Auth | None,
        on_list_changed: Callable[[], None],
    ) -> None:
        assert config.openapi is not None
        self.name = name
        self.config = config
        self.section: OpenApiSection = config.openapi
        self._connect_timeout = connect_timeout
        self._make_client = make_client
        self._egress = egress
        self._oauth = oauth
        self._on_list_changed = on_list_changed
        self._client_credentials: ClientCredentials | None = None
        """Kept across sessions: a reconnect does not fetch a new token while the last one is fresh."""

    def attempt_failed(self) -> None:
        return None

    def _load(self) -> Api:
        return load_api(self.section, timeout=self._connect_timeout, egress=self._egress)

    def _auth(self, api: Api) -> httpx2.Auth | None:
        auth = self.section.auth
        if isinstance(auth, OpenApiUpstreamOAuth):
            return self._oauth
        if isinstance(auth, OpenApiClientCredentials):
            assert api.token_url is not None  # load_api refuses the document otherwise
            if self._client_credentials is None:
                self._client_credentials = ClientCredentials(auth, api.token_url)
            return self._client_credentials
        return None

    @asynccontextmanager
    async def open(self) -> AsyncIterator[OpenApiSession]:
        api = await asyncio.to_thread(self._load)
        timeout = httpx2.Timeout(self._connect_timeout, read=None)
        client = self._make_client(dict(self.config.headers), timeout, self._auth(api))
        try:
            if self.section.oauth_resource is not None:
                await self._probe(client, self.section.oauth_resource)
            log.info(
                "upstream %s: OpenAPI %s document %r: %d tool(s), %d operation(s) refused",
                self.name,
                api.version,
                api.title,
                len(api.tools),
                len(api.refused),
            )
            yield OpenApiSession(
                self.name,
                self.section,
                api,
                client,
                load=self._load,
                on_list_changed=self._on_list_changed,
                egress=self._egress,
            )
        finally:
            await client.aclose()

    async def _probe(self, client: httpx2.AsyncClient, resource: str) -> None:
        """Ask for the resource with the OAuth flow.

        A 401 that no token answers fails the session's opening (the flow has told the owner, whose
        status becomes `needs_auth`)."""
        response = await client.get(resource)
        if response.status_code == 401:
            raise PermissionError(f"the API answered HTTP 401 at {_shown(resource)}")


def _why(exc: BaseException) -> str:
    """Why a request did not reach the API.

    The egress refusal in full (it names the host and how to allow it), else the kind of failure only (an
    error's text may hold a URL's query)."""
    refused = refusal_in(exc)
    return str(refused) if refused is not None else type(exc).__name__


def _shown(url: str) -> str:
    return url.split("?", 1)[0] if is_url(url) else url


def connector(name: str, config: ServerConfig, hooks: SessionHooks) -> Connector:
    """The `openapi` kind (`upstreams.registry.KINDS`).

    REST calls on the executor's upstream client, answers bounded at the result limit, 401s reported, the
    upstream's OAuth tokens when it has any."""
    cutoff = answer_cutoff(hooks.settings.max_result) if hooks.settings.max_result is not None else None

    def make_client(headers: dict[str, str], timeout: httpx2.Timeout, auth: httpx2.Auth | None) -> httpx2.AsyncClient:
        return http_client(hooks.egress, headers, timeout, auth, hooks.on_unauthorized, cutoff)

    return OpenApiConnector(
        name,
        config,
        connect_timeout=hooks.settings.connect_timeout,
        make_client=make_client,
        egress=hooks.egress,
        oauth=hooks.auth,
        on_list_changed=hooks.on_list_changed,
    )
