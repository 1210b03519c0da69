"""Upstream kinds (`services.executor.upstreams`): every configured transport has an entry in the
registry, and the executor's `Upstream` serves a kind that is no MCP session at all (what the OpenAPI
adapter will be) through the same interface: listing, argument checks, calls, health, the breaker."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.egress import EgressSection
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import Caller, CallOutcome, GatewayError, ServerCatalog, ToolCall, UpstreamRequest
from libs.common.settings import ExecutorSettings
from services.executor.call_path import Call, call_path
from services.executor.upstream import State, Upstream
from services.executor.upstreams import registry
from services.executor.upstreams.interface import (
    CallContext,
    Listing,
    SessionHooks,
    SubscriptionStyle,
    UpstreamSettings,
)
from services.executor.upstreams.mcp.stdio_sandbox import StdioRoot
from tests.support.polling import poll_until

pytestmark = pytest.mark.unit

ADD = {
    "name": "add",
    "inputSchema": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}


def test_every_transport_a_server_can_be_configured_with_has_a_kind() -> None:
    transports = typing.get_args(typing.get_type_hints(ServerConfig.__dict__["transport"].fget)["return"])
    assert set(transports) == set(registry.KINDS)


def test_an_unknown_kind_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "KINDS", {})
    hooks = SessionHooks(UpstreamSettings(), None, lambda: None, lambda: None)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no upstream kind 'stdio'"):
        registry.connector_for("srv", ServerConfig(command="srv"), hooks)


class RestSession:
    """A kind that answers from plain Python, as a REST adapter would from HTTP requests."""

    def __init__(self, calls: list[dict[str, Any]], fail: list[bool]) -> None:
        self.calls = calls
        self.fail = fail

    @property
    def protocol_version(self) -> str | None:
        return None

    @property
    def subscription_style(self) -> SubscriptionStyle:
        return "none"

    async def list(self) -> Listing:
        return Listing([ADD])

    async def ping(self, within: float) -> str | None:
        return None

    async def call_tool(self, call: ToolCall, ctx: CallContext) -> CallOutcome:
        self.calls.append(call.arguments)
        if self.fail[0]:
            error = GatewayError(kind=ErrorKind.UPSTREAM_UNAVAILABLE, message="the API is down")
            return CallOutcome(id=call.id, error=error, decided_by="executor", execution="may_have_run")
        total = call.arguments["a"] + call.arguments["b"]
        return CallOutcome(
            id=call.id, result={"content": [{"type": "text", "text": str(total)}]}, decided_by="executor"
        )

    async def request(self, request: UpstreamRequest, ctx: CallContext) -> CallOutcome:
        raise AssertionError("not routed here")

    async def follow(self, uris: Iterable[str], within: float) -> bool:
        return False

    async def run(self) -> None:
        return None


class RestConnector:
    def __init__(self, session: RestSession) -> None:
        self.session = session

    @asynccontextmanager
    async def open(self) -> AsyncIterator[RestSession]:
        yield self.session

    def attempt_failed(self) -> None:
        pass


def call(**arguments: Any) -> ToolCall:
    return ToolCall(
        caller=Caller(key_id="k", key_name="k"),
        server="rest",
        tool="add",
        name="rest__add",
        arguments=arguments,
        timeout=5,
    )


async def test_a_kind_that_is_no_mcp_session_is_served_like_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    fail = [False]
    session = RestSession(calls, fail)
    monkeypatch.setattr(
        registry, "KINDS", {**registry.KINDS, "http": lambda name, config, hooks: RestConnector(session)}
    )
    published: list[ServerCatalog] = []

    async def publish(_upstream: Upstream, catalog: ServerCatalog) -> bool:
        published.append(catalog)
        return True

    config = ServerConfig.model_validate({"url": "https://api.example/", "circuit_breaker": {"failure_threshold": 1}})
    upstream = Upstream("rest", config, UpstreamSettings(connect_timeout=5, max_backoff=1), publish=publish)
    path = call_path({"rest": upstream})
    upstream.start()
    try:
        await poll_until(lambda: upstream.state is State.READY, "the REST kind to be ready")
        await poll_until(lambda: bool(published) and published[-1].status == "ready", "its catalog")
        assert [t.tool for t in published[-1].tools] == ["add"]

        ok = await path.run(Call(call(a=2, b=3)))
        assert ok.error is None and ok.result == {"content": [{"type": "text", "text": "5"}]}

        refused = await path.run(Call(call(a="two", b=3)))  # the executor's own argument check, as for MCP
        assert refused.error is not None and refused.error.kind is ErrorKind.INVALID_ARGUMENTS
        assert calls == [{"a": 2, "b": 3}], "a call refused by the schema never reaches the kind"

        fail[0] = True
        down = await path.run(Call(call(a=1, b=1)))
        assert down.error is not None and down.error.kind is ErrorKind.UPSTREAM_UNAVAILABLE
        open_ = await path.run(Call(call(a=1, b=1)))  # the breaker opened after one failure
        assert open_.error is not None and open_.error.kind is ErrorKind.CIRCUIT_OPEN
        assert len(calls) == 2
    finally:
        await upstream.stop()
    assert upstream.state is State.STOPPED


def test_upstream_settings_follow_the_executor_settings(tmp_path: Path) -> None:
    """Every upstream limit is the executor setting it is named after, whatever its value."""
    egress = EgressSection(allow_private_hosts=["10.0.0.7"])
    same_named: dict[str, Any] = {"connect_timeout": 3.5, "health_interval": 5.5, "drift_interval": 6.5}
    same_named |= {"catalog_heartbeat": 7.5, "lean_calls": False, "validation_values": True}  # none the default
    settings = ExecutorSettings(**same_named, reconnect_max_backoff=4.5, max_result_bytes=12345, egress=egress)
    root = StdioRoot(tmp_path, (tmp_path,))
    upstream = UpstreamSettings.of(settings, root)
    assert {name: getattr(upstream, name) for name in same_named} == same_named
    renamed = (upstream.max_backoff, upstream.max_result, upstream.egress_allowed, upstream.stdio_root)
    assert renamed == (4.5, 12345, ("10.0.0.7",), root)
