"""The default guardrails through the whole gateway: credentials in a real upstream's result are
redacted before the agent sees them and the audit row says which rule did what where (never the
secret); credentials in arguments are redacted before any upstream gets them, over stdio and
streamable HTTP, from an agent, a Code Mode script and the LLM side's tool execution; a tool whose
description carries injected instructions is flagged when listed."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from libs.common.settings import CodeModeSettings
from services.codemode.service import CodeModeService
from tests.support.audit_rows import audit_rows
from tests.support.gateway import ADMIN_KEY, ROOT, default_config, example_server_over_http, running_gateway
from tests.support.llm_gateway import execute_call
from tests.support.polling import poll_until
from tests.support.server_values import server_values

pytestmark = pytest.mark.integration

DRIFTING = ROOT / "tests" / "support" / "drifting_server.py"
CODER_KEY = "bk_test_guardrails_coder_00000"


# the drifting server's example credentials (its module reads argv, so load it with some)
VALUES = server_values(DRIFTING, "drifting_values", ["drifting", "/nonexistent-state", "/nonexistent-calls"])
SECRETS = (VALUES.AWS_KEY_ID, VALUES.AWS_SECRET, VALUES.GITHUB_TOKEN)


def _text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def _clean(text: str) -> bool:
    return not any(secret in text for secret in SECRETS)


async def test_default_guardrails_on_every_path(nats_url, redis_url, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="services.executor.interceptors.chain")
    state, calls = tmp_path / "state", tmp_path / "calls"
    async with example_server_over_http("--http") as url:
        config = default_config(
            {
                "drift": {
                    "command": sys.executable,
                    "args": [str(DRIFTING), str(state), str(calls)],
                    "sandbox": {"write": [str(tmp_path)]},
                },
                "web": {"url": url},
            }
        )
        config["keys"].append({"name": "coder", "key": CODER_KEY, "tools": ["drift/*", "echo/*"], "code_mode": True})
        codemode = CodeModeSettings(sandbox_workers=1, sandbox_wall_seconds=20)
        async with running_gateway(nats_url, redis_url, tmp_path, config, codemode=codemode) as gateway:
            token = VALUES.GITHUB_TOKEN
            async with gateway.client(ADMIN_KEY) as client:
                # a result: redacted before the agent sees it
                leaked = _text(await client.call_tool("drift__leak", {}))
                assert _clean(leaked), leaked
                assert "[REDACTED:aws_access_key_id]" in leaked and "[REDACTED:github_token]" in leaked
                assert "deploy log" in leaked and "done" in leaked
                # arguments: a credential in them refuses the call, naming the rule and the field; the
                # upstream never runs on an altered value (stdio and HTTP)
                for server in ("echo", "web"):
                    with pytest.raises(MCPError) as refused:
                        await client.call_tool(f"{server}__echo", {"text": f"push with {token}"})
                    message = refused.value.error.message
                    assert "'default-secrets'" in message and "github_token" in message, message
                    assert "at /text" in message and _clean(message), message
                # an ordinary call passes untouched
                assert _text(await client.call_tool("echo__echo", {"text": "plain"})) == "plain"

            # a Code Mode script's inner call
            service = next(s for s in gateway.services if isinstance(s, CodeModeService))
            await poll_until(lambda: ("drift", "leak") in service.catalog.pairs, "the codemode catalog")
            async with gateway.client(CODER_KEY) as client:
                run = _text(await client.call_tool("execute_code", {"code": "result = drift.leak()"}))
            assert _clean(run) and "[REDACTED:github_token]" in run, run

            # the LLM side's tool execution
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": "echo__echo", "arguments": json.dumps({"text": f"token {token}"})},
            }
            answer = await execute_call(gateway, call)
            assert answer.status_code == 403 and "'default-secrets'" in answer.text, answer.text
            assert _clean(answer.text), answer.text

            rows = await audit_rows(nats_url, "admin", at_least=5)
            # what the gateway recorded of the upstream's side: results and decisions (a row's `arguments`
            # are the agent's own request as it came, recorded before the executor redacted them)
            leaks = [
                (r.name, f) for r in rows for f, v in r.model_dump().items() if f != "arguments" and not _clean(str(v))
            ]
            assert not leaks, f"a secret reached the audit trail: {leaks}"
            leak = next(r for r in rows if r.name == "drift__leak")
            found = {(d.interceptor, d.rule, d.action, d.where, d.detail) for d in leak.interceptions}
            assert (
                "guardrails",
                "default-secrets",
                "redact",
                "result",
                "secrets: aws_access_key_id at /content/0/text",
            ) in found
            assert (
                "guardrails",
                "default-secrets",
                "redact",
                "result",
                "secrets: github_token at /content/0/text",
            ) in found
            echo = next(r for r in rows if r.name == "web__echo")
            assert echo.status == "denied" and echo.execution == "not_run"
            assert next((d.rule, d.action, d.where) for d in echo.interceptions) == (
                "default-secrets",
                "block",
                "arguments",
            )
            plain = [r for r in rows if r.name == "echo__echo" and not r.interceptions]
            assert plain, "a call nothing fired on records no decision"
            inner = await audit_rows(nats_url, "coder", at_least=2)
            assert any(r.kind == "tool_call" and r.interceptions and _clean(str(r.result)) for r in inner)

    # the injected description: listed (tofu, warn) but flagged, naming the rule and the kind of marker
    flagged = [r.getMessage() for r in caplog.records if "guardrails warn" in r.getMessage()]
    assert any("'lookup'" in m and "default-injection" in m and "injection: override" in m for m in flagged), flagged
