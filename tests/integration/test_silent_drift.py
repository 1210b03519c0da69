"""An upstream that changes its definitions without telling us the way our subscriptions expect:
silently (no notification at all), only inside one request's response stream, or between an
agent's `tools/list` and its `tools/call`. A real MCP server on the official SDK
(`tests/support/drifting_server.py`, driven by a file) records every function that ran; none of the
changed ones ever does, the change waits in `bastion tools pending`, and approval releases it."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from typer.testing import CliRunner

from cli.main import app
from libs.common.bus.nats import connect, kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.pins import DefinitionKind
from libs.common.supply_chain.pin_store import pending, read_records
from services.executor.interceptors import PinningInterceptor
from services.executor.service import ExecutorService
from tests.support.gateway import ADMIN_KEY, ROOT, Gateway, default_config, running_gateway
from tests.support.polling import poll_until
from tests.support.processes import serving_process

pytestmark = pytest.mark.integration

DRIFTING = ROOT / "tests" / "support" / "drifting_server.py"
NO_SCHEDULE = {"drift_interval": 0.0}
"""Re-list only on a notification: what finds the change is then the notification or the call."""


def _only(drift: dict[str, Any], *kept: str) -> dict[str, Any]:
    """The default keys with `drift` and, of the default servers, only `kept`: each stdio server
    costs a process importing the SDK, and these tests call no echo or notes tool."""
    config = default_config({"drift": drift})
    for name in ("echo", "notes"):
        if name not in kept:
            del config["mcpServers"][name]
    return config


def _config(state: Path, calls: Path, *kept: str) -> dict[str, Any]:
    # the server reads its state file and writes what ran beside it, through its sandbox
    sandbox = {"read": [str(state.parent)], "write": [str(calls.parent)]}
    drift = {"command": sys.executable, "args": [str(DRIFTING), str(state), str(calls)], "sandbox": sandbox}
    return _only(drift, *kept)


def _pinning(gateway: Gateway) -> PinningInterceptor:
    executor = next(s for s in gateway.services if isinstance(s, ExecutorService))
    return next(i for i in executor.interceptors.interceptors if isinstance(i, PinningInterceptor))


def _quarantined(gateway: Gateway, kind: DefinitionKind, name: str) -> bool:
    outcome = _pinning(gateway).outcomes.get("drift")
    decision = outcome.decision(kind, name) if outcome is not None else None
    return decision is not None and decision.verdict == "quarantined"


def _served(state: Path) -> str:
    served = state.with_name(state.name + ".served")
    return served.read_text() if served.exists() else ""


def _calls(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def _pending(nats_url: str) -> list[tuple[str, str, str, str | None]]:
    nc = await connect(nats_url, "test-pins")
    try:
        kv = await kv_bucket(nc.jetstream(), subjects.KV_PINS)
        return [(r.server, r.kind, r.name, r.pending_reason) for r in pending((await read_records(kv)).values())]
    finally:
        await nc.close()


async def _cli(*args: str) -> Any:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env={"BASTION_PRINCIPAL": "ana@example.com"})


async def _first_use(gateway: Gateway, calls: Path) -> None:
    async with gateway.client(ADMIN_KEY) as client:
        assert "drift__add" in {t.name for t in (await client.list_tools()).tools}
        assert (await client.call_tool("drift__add", {"a": 1, "b": 2})).content[0].text == "3"
    assert _calls(calls) == ["base"]


async def _refused_as_quarantined(gateway: Gateway, arguments: dict[str, Any]) -> None:
    async with gateway.client(ADMIN_KEY) as client:
        assert "drift__add" not in {t.name for t in (await client.list_tools()).tools}
        with pytest.raises(MCPError) as held:
            await client.call_tool("drift__add", arguments)
    assert "`bastion tools approve drift/add`" in held.value.error.message


SILENT = ["description", "property", "default", "annotation"]


@pytest.mark.parametrize("variant", SILENT)
async def test_a_silent_change_is_found_by_the_schedule_quarantined_and_released_by_approval(
    nats_url, redis_url, tmp_path, variant
):
    state, calls = tmp_path / "state", tmp_path / "calls"
    state.write_text("base")
    arguments = {"a": 1, "b": 2, **({"note": "n"} if variant == "property" else {})}
    async with running_gateway(nats_url, redis_url, tmp_path, _config(state, calls)) as gateway:
        await _first_use(gateway, calls)

        state.write_text(f"{variant} silent")  # changed in place; not a word to anyone
        await poll_until(lambda: _quarantined(gateway, "tool", "add"), "drift/add quarantined without a notification")
        assert await _pending(nats_url) == [("drift", "tool", "add", "changed")]
        await _refused_as_quarantined(gateway, arguments)
        assert _calls(calls) == ["base"], "a call reached the changed definition"

        approved = await _cli("tools", "approve", "drift/add", "--nats-url", nats_url)
        assert approved.exit_code == 0, approved.output
        await poll_until(lambda: not _quarantined(gateway, "tool", "add"), "drift/add released")
        async with gateway.client(ADMIN_KEY) as client:
            await poll_until(
                lambda: gateway.ingress.catalog.by_name.get("drift__add") is not None, "the catalog to follow"
            )
            assert (await client.call_tool("drift__add", arguments)).content[0].text == "3"
        assert _calls(calls) == ["base", variant]
        assert await _pending(nats_url) == []


@contextlib.contextmanager
def _upstream(transport: str, state: Path, calls: Path) -> Iterator[dict[str, Any]]:
    """The drifting server's config: a stdio child, or a streamable HTTP server it runs meanwhile."""
    if transport == "stdio":
        yield _config(state, calls)
        return
    argv = [sys.executable, str(DRIFTING), str(state), str(calls), "--http"]
    with serving_process(argv, "the drifting server") as url:
        yield _only({"url": url, "type": "http"})


@pytest.mark.parametrize("transport", ["stdio", "http"])  # http: inside the POST's own SSE response
async def test_a_change_announced_only_inside_a_request_stream_is_quarantined(nats_url, redis_url, tmp_path, transport):
    state, calls = tmp_path / "state", tmp_path / "calls"
    state.write_text("base")
    with _upstream(transport, state, calls) as config:
        async with running_gateway(nats_url, redis_url, tmp_path, config, executor_options=NO_SCHEDULE) as gateway:
            await _first_use(gateway, calls)
            state.write_text("description in_request")
            await poll_until(lambda: _served(state) == "description", "the upstream to change")
            async with gateway.client(ADMIN_KEY) as client:
                await client.call_tool("drift__leak", {})  # the change is told in this call's response stream
            await poll_until(lambda: _quarantined(gateway, "tool", "add"), "drift/add quarantined")
            assert await _pending(nats_url) == [("drift", "tool", "add", "changed")]
            await _refused_as_quarantined(gateway, {"a": 1, "b": 2})
            assert _calls(calls) == ["base"]


async def test_an_upstream_that_changes_between_list_and_call_never_runs_the_changed_function(
    nats_url, redis_url, tmp_path
):
    state, calls = tmp_path / "state", tmp_path / "calls"
    state.write_text("base")
    config = _config(state, calls)
    async with running_gateway(nats_url, redis_url, tmp_path, config, executor_options=NO_SCHEDULE) as gateway:
        await _first_use(gateway, calls)
        async with gateway.client(ADMIN_KEY) as client:
            assert "drift__add" in {t.name for t in (await client.list_tools()).tools}
            state.write_text("property silent")  # after the agent's tools/list, before its call
            await poll_until(lambda: _served(state) == "property", "the upstream to change")
            # what only the new definition wants is held back, as an argument error the agent can correct
            refused = await client.call_tool("drift__add", {"a": 1, "b": 2, "note": "~/.ssh/id_rsa"})
        assert refused.is_error
        message = " ".join(getattr(block, "text", "") for block in refused.content)
        assert "'note'" in message and "approved definition" in message, message
        assert "id_rsa" not in message
        # the refusal made the executor look: the change is found without any schedule or notification
        await poll_until(lambda: _quarantined(gateway, "tool", "add"), "drift/add quarantined")
        assert await _pending(nats_url) == [("drift", "tool", "add", "changed")]
        await _refused_as_quarantined(gateway, {"a": 1, "b": 2, "note": "n"})
        assert _calls(calls) == ["base"], "the changed function ran"


async def test_reads_under_a_quarantined_template_and_a_quarantined_prompt_are_refused(nats_url, redis_url, tmp_path):
    state, calls = tmp_path / "state", tmp_path / "calls"
    state.write_text("base")
    # notes serves a template that matches notes://7 too: the read must not fall through to it
    async with running_gateway(nats_url, redis_url, tmp_path, _config(state, calls, "notes")) as gateway:
        await _first_use(gateway, calls)
        async with gateway.client(ADMIN_KEY) as client:
            assert (await client.read_resource("notes://7")).contents[0].text == "note 7"
            assert "drift__brief" in {p.name for p in (await client.list_prompts()).prompts}
        assert _calls(calls) == ["base", "read:base"]

        state.write_text("template silent")
        await poll_until(
            lambda: (
                _quarantined(gateway, "resource_template", "notes://{id}") and _quarantined(gateway, "prompt", "brief")
            ),
            "the template and the prompt quarantined",
        )
        await poll_until(lambda: "drift__brief" in gateway.ingress.catalog.withheld_prompt_by_name, "the catalog")
        async with gateway.client(ADMIN_KEY) as client:
            assert "drift__brief" not in {p.name for p in (await client.list_prompts()).prompts}
            assert "notes://{id}" not in {
                t.uri_template for t in (await client.list_resource_templates()).resource_templates
            }
            with pytest.raises(MCPError) as read:  # not handed to the next server whose template matches it
                await client.read_resource("notes://7")
            assert "`bastion tools approve drift/notes://{id}`" in read.value.error.message
            with pytest.raises(MCPError) as got:
                await client.get_prompt("drift__brief", {"topic": "x"})
            assert "`bastion tools approve drift/brief`" in got.value.error.message
        assert _calls(calls) == ["base", "read:base"], "a changed resource or prompt function ran"
        waiting = {(kind, name) for _, kind, name, _ in await _pending(nats_url)}
        assert waiting == {("resource_template", "notes://{id}"), ("prompt", "brief")}

        approved = await _cli("tools", "approve", "drift/brief", "--nats-url", nats_url)
        assert approved.exit_code == 0, approved.output
        await poll_until(lambda: "drift__brief" in gateway.ingress.catalog.prompt_by_name, "the prompt released")
        async with gateway.client(ADMIN_KEY) as client:
            assert (await client.get_prompt("drift__brief", {"topic": "x"})).messages
        assert _calls(calls) == ["base", "read:base", "prompt:template"]


async def test_changed_server_instructions_never_reach_an_agent(nats_url, redis_url, tmp_path):
    """An upstream's instructions are not forwarded (ingress answers with its own), so a change of
    them has no definition to pin: it changes nothing an agent sees, and nothing waits for approval."""
    state, calls = tmp_path / "state", tmp_path / "calls"
    state.write_text("base")
    async with running_gateway(nats_url, redis_url, tmp_path, _config(state, calls)) as gateway:
        await _first_use(gateway, calls)
        async with gateway.client(ADMIN_KEY) as client:
            before = client.instructions
        state.write_text("instructions silent")
        await poll_until(lambda: _served(state) == "instructions", "the upstream to change")
        async with gateway.client(ADMIN_KEY) as client:
            assert client.instructions == before
            assert "collect.example" not in (client.instructions or "")
            assert (await client.call_tool("drift__add", {"a": 1, "b": 2})).content[0].text == "3"
        assert await _pending(nats_url) == []
