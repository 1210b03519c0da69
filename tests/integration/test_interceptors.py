"""The executor's interceptor seam through the whole gateway (`BASTION_DENY_LIST`, the `deny_list`
interceptor): each hook point acting on real upstream calls over stdio and streamable HTTP, sent
the lean way and the SDK's, from an agent and from a Code Mode script, and each decision in the
request's audit row."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from libs.common.settings import CodeModeSettings, DenyList
from services.codemode.service import CodeModeService
from services.executor.interceptors import DenyListInterceptor
from services.executor.service import ExecutorService
from tests.support.audit_rows import audit_rows
from tests.support.gateway import ADMIN_KEY, default_config, example_server_over_http, running_gateway
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

FALCON = "Project Falcon"
CODER_KEY = "bk_test_interceptor_coder_0000"
DENY = {"tools": ["*/sleep", "*/prompt:repeat"], "max_argument_bytes": 2000, "terms": [FALCON]}
SERVERS = ("echo", "web")  # stdio, streamable HTTP


def _echo_config(extra_servers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default config without the notes server: no test here calls it."""
    config = default_config(extra_servers)
    del config["mcpServers"]["notes"]
    return config


def _text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def _sent(executor: ExecutorService, server: str) -> int:
    session = executor.upstreams[server].session
    assert session is not None
    return session.lean_link.sent


def _decisions(row: Any) -> list[tuple[str, str, str, str]]:
    return [(d.interceptor, d.rule, d.action, d.where) for d in row.interceptions]


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "sdk"])
async def test_each_hook_acts_on_real_calls_and_lands_in_the_audit_row(nats_url, redis_url, tmp_path, lean):
    async with example_server_over_http("--http") as url:
        config = _echo_config({"web": {"url": url}})
        config["keys"].append({"name": "coder", "key": CODER_KEY, "tools": ["echo/*", "web/*"], "code_mode": True})
        codemode = CodeModeSettings(sandbox_workers=1, sandbox_wall_seconds=20)
        options = {"deny_list": DENY, "lean_calls": lean}
        async with running_gateway(
            nats_url, redis_url, tmp_path, config, executor_options=options, codemode=codemode
        ) as gateway:
            executor = next(s for s in gateway.services if isinstance(s, ExecutorService))
            async with gateway.client(ADMIN_KEY) as client:
                # at listing: hidden from the catalog (and so from every agent), over both transports
                tools = {tool.name for tool in (await client.list_tools()).tools}
                assert {"echo__echo", "web__echo"} <= tools
                assert not {"echo__sleep", "web__sleep"} & tools
                prompts = {prompt.name for prompt in (await client.list_prompts()).prompts}
                assert not {"echo__repeat", "web__repeat"} & prompts

                for server in SERVERS:
                    sent = _sent(executor, server)
                    # after the result: the term redacted before the agent sees it
                    redacted = await client.call_tool(f"{server}__echo", {"text": f"the {FALCON} plan"})
                    assert _text(redacted) == "the [REDACTED] plan"
                    # before the call: refused, never sent
                    with pytest.raises(MCPError) as refused:
                        await client.call_tool(f"{server}__echo", {"text": "x" * 3000})
                    assert "over this gateway's limit of 2,000 bytes" in refused.value.error.message
                    plain = await client.call_tool(f"{server}__echo", {"text": "plain"})
                    assert _text(plain) == "plain"
                    # the refused call never reached the upstream; the others went the way asked for
                    assert _sent(executor, server) - sent == (2 if lean else 0)

            # a Code Mode script's inner call passes the same hooks
            codemode_service = next(s for s in gateway.services if isinstance(s, CodeModeService))
            await poll_until(lambda: bool(codemode_service.catalog.pairs), "the codemode catalog")
            async with gateway.client(CODER_KEY) as client:
                run = await client.call_tool("execute_code", {"code": f'result = echo.echo(text="{FALCON} inside")'})
            assert not run.is_error and "[REDACTED] inside" in _text(run) and FALCON not in _text(run)

            rows = await audit_rows(nats_url, "admin", at_least=3 * len(SERVERS))
            for server in SERVERS:
                mine = [r for r in rows if r.server == server and r.kind == "tool_call"]
                redact = next(r for r in mine if r.status == "ok" and r.interceptions)
                assert _decisions(redact) == [("deny_list", "terms", "redact", "result")]
                # the text block and its structured twin (`structuredContent.result`)
                assert redact.interceptions[0].detail == "2 match(es)" and redact.execution == "ran"
                blocked = next(r for r in mine if r.status == "denied")
                assert blocked.error_kind == "forbidden" and blocked.execution == "not_run"
                assert _decisions(blocked) == [("deny_list", "max_argument_bytes", "block", "arguments")]
                assert any(r.status == "ok" and not r.interceptions for r in mine), "nothing decided, nothing recorded"
            inner = await audit_rows(nats_url, "coder", at_least=2)
            call = next(r for r in inner if r.kind == "tool_call")
            assert call.parent_id is not None and _decisions(call) == [("deny_list", "terms", "redact", "result")]


async def test_interceptors_swapped_at_run_time_apply_to_listings_and_calls(nats_url, redis_url, tmp_path):
    bare = {"pinning": False, "guardrails": {"defaults": False}}  # neither of the default interceptors
    async with running_gateway(nats_url, redis_url, tmp_path, _echo_config(), executor_options=bare) as gateway:
        executor = next(s for s in gateway.services if isinstance(s, ExecutorService))
        assert not executor.interceptors.on_calls, "nothing configured: the request path passes no hook"
        catalog = gateway.ingress.catalog

        def listed(name: str) -> bool:
            status = catalog.server_status("echo")
            return status is not None and any(t.tool == name for t in status.tools)

        assert listed("add")
        await executor.use_interceptors([DenyListInterceptor(DenyList(tools=["echo/add"], terms=["hidden"]))])
        await poll_until(lambda: not listed("add"), "echo/add to leave the catalog")
        async with gateway.client(ADMIN_KEY) as client:
            assert _text(await client.call_tool("echo__echo", {"text": "not hidden"})) == "not [REDACTED]"
        await executor.use_interceptors([])
        await poll_until(lambda: listed("add"), "echo/add back in the catalog")
        async with gateway.client(ADMIN_KEY) as client:
            assert _text(await client.call_tool("echo__add", {"a": 1, "b": 2})) == "3"
