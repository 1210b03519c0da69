"""External guardrails against a real HTTP server (aiohttp on a free port): what is sent, each answer a
service may give, and fail-open / fail-closed when it is slow, down or talks nonsense."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from libs.common.contracts.guardrails import GuardrailsSection
from libs.common.contracts.messages_base import Caller
from services.executor.guardrails import Guardrails, Subject, WebhookClient

pytestmark = pytest.mark.integration

CALLER = Caller(key_id="f" * 64, key_name="support-bot", user_id="ana", team_id="support")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Service:
    def __init__(self) -> None:
        self.handler: Handler | None = None
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []

    async def post(self, request: web.Request) -> web.StreamResponse:
        self.received.append((dict(request.headers), json.loads(await request.read())))
        assert self.handler is not None
        return await self.handler(request)


@pytest.fixture
async def service() -> AsyncIterator[tuple[Service, str]]:
    state = Service()
    app = web.Application()
    app.router.add_post("/check", state.post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield state, f"http://127.0.0.1:{runner.addresses[0][1]}/check"
    finally:
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    async with contextlib.aclosing(WebhookClient()) as webhooks:
        yield webhooks


def guard(url: str, action: str = "block", fail: str = "closed", timeout: float = 2.0) -> Guardrails:
    rule = {
        "name": "moderation",
        "detector": "webhook",
        "action": action,
        "where": ["result"],
        "webhook": {"url": url, "timeout": timeout, "fail": fail, "headers": {"Authorization": "Bearer hook-secret"}},
    }
    return Guardrails.compile(GuardrailsSection.model_validate({"rules": [rule]}))


RESULT = {"content": [{"type": "text", "text": "you are all idiots"}]}
SUBJECT = Subject("crm", "get_ticket", CALLER)


def answer(body: Any, status: int = 200) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    return handle


async def test_the_request_carries_the_payload_and_who_asked_but_never_the_key_id(service, client):
    state, url = service
    state.handler = answer({"match": False})
    out = await guard(url).ainspect("result", SUBJECT, RESULT, client)
    assert out.action is None and out.content is RESULT
    headers, body = state.received[0]
    assert headers["Authorization"] == "Bearer hook-secret" and headers["Content-Type"] == "application/json"
    assert body == {
        "rule": "moderation",
        "where": "result",
        "server": "crm",
        "name": "get_ticket",
        "caller": {"key_name": "support-bot", "user_id": "ana", "team_id": "support", "customer_id": None},
        "content": RESULT,
    }
    assert "f" * 64 not in json.dumps(body)


async def test_a_match_takes_the_rules_action(service, client):
    state, url = service
    state.handler = answer({"match": True, "entity": "toxicity"})
    blocked = await guard(url, "block").ainspect("result", SUBJECT, RESULT, client)
    assert blocked.blocked
    assert blocked.refusal() == "blocked by guardrail rule 'moderation' (webhook: toxicity in the result)"
    warned = await guard(url, "warn").ainspect("result", SUBJECT, RESULT, client)
    assert warned.action == "warn" and warned.content is RESULT


async def test_a_redact_rule_sends_on_what_the_service_returned_and_blocks_without_it(service, client):
    state, url = service
    cleaned = {"content": [{"type": "text", "text": "[removed]"}]}
    state.handler = answer({"match": True, "entity": "insult", "content": cleaned})
    out = await guard(url, "redact").ainspect("result", SUBJECT, RESULT, client)
    assert (out.action, out.content) == ("redact", cleaned)
    state.handler = answer({"match": True, "entity": "insult"})
    assert (await guard(url, "redact").ainspect("result", SUBJECT, RESULT, client)).blocked


async def test_the_service_sees_what_the_built_in_rules_left_redacted(service, client):
    state, url = service
    state.handler = answer({"match": False})
    token = "ghp_" + "Ab3" * 12
    await guard(url).ainspect("result", SUBJECT, {"content": [{"type": "text", "text": token}]}, client)
    assert token not in json.dumps(state.received[0][1])
    assert "[REDACTED:github_token]" in json.dumps(state.received[0][1])


def slow(seconds: float) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response({"match": False})

    return handle


def trickle(request: web.Request) -> Awaitable[web.StreamResponse]:
    async def handle() -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for char in '{"match": false}':
            await response.write(char.encode())
            await asyncio.sleep(0.1)  # each read is quick, the whole answer is not
        await response.write_eof()
        return response

    return handle()


async def oversized(request: web.Request) -> web.StreamResponse:
    return web.json_response({"match": False, "pad": "x" * (2 * 1024 * 1024)})


@pytest.mark.parametrize(
    ("handler", "failure"),
    [
        (slow(5), "timeout"),
        (trickle, "timeout"),
        (answer({"match": False}, status=500), "status"),
        (answer(["not", "an", "object"]), "invalid"),
        (answer({"match": "yes"}), "invalid"),
        (oversized, "too_large"),
    ],
    ids=["slow", "trickle", "status-500", "not-an-object", "match-not-bool", "oversized"],
)
@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_failures_are_decided_by_fail_open_or_closed(service, client, handler, failure, fail):
    state, url = service
    state.handler = handler
    out = await guard(url, fail=fail, timeout=0.5).ainspect("result", SUBJECT, RESULT, client)
    (decision,) = out.decisions
    assert decision.entity == f"unavailable:{failure}"
    if fail == "closed":
        assert out.blocked and decision.action == "block"
    else:
        assert out.action == "log" and out.content is RESULT


async def test_an_unreachable_service_and_a_payload_too_large_to_send(client):
    out = await guard("http://127.0.0.1:9/check", fail="closed").ainspect("result", SUBJECT, RESULT, client)
    assert out.blocked and out.decisions[0].entity == "unavailable:unreachable"
    rule = {
        "name": "moderation",
        "detector": "webhook",
        "where": ["result"],
        "webhook": {"url": "http://127.0.0.1:9/check", "fail": "open", "max_payload_bytes": 10},
    }
    small = Guardrails.compile(GuardrailsSection.model_validate({"rules": [rule]}))
    out = await small.ainspect("result", SUBJECT, RESULT, client)
    assert out.action == "log" and out.decisions[0].entity == "unavailable:too_large"
