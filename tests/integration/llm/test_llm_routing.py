"""Routed models end to end (docs/llm-routing.md): the `openai` SDK -> ingress -> policy (model
grants, per-minute limits, budgets at the dearest deployment) -> executor (deployments in order,
failover before any token, cool-downs from `Retry-After`) -> two scripted providers; every attempt
in the audit row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.admin_api import principal_token
from tests.support.gateway import ADMIN_KEY, Gateway, gateway_on_own_servers
from tests.support.llm_gateway import anthropic_client, audit_rows_since, sdk_client
from tests.support.llm_provider import Cut, Drop, Fail, Reply, ScriptedProvider, scripted_provider
from tests.support.llm_routing import (
    LISTED,
    NARROW_KEY,
    RPM_KEY,
    TEAM_KEY,
    THRIFTY_KEY,
    TPM_KEY,
    routing_config,
)
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
async def providers() -> AsyncIterator[tuple[ScriptedProvider, ScriptedProvider]]:
    """Providers `a` and `b` of `routing_config`, serving the module's gateway."""
    async with scripted_provider() as first, scripted_provider() as second:
        yield first, second


def _fresh(provider: ScriptedProvider) -> ScriptedProvider:
    provider.reset()
    provider.always = None
    return provider


@pytest.fixture
def a(providers: tuple[ScriptedProvider, ScriptedProvider]) -> ScriptedProvider:
    return _fresh(providers[0])


@pytest.fixture
def b(providers: tuple[ScriptedProvider, ScriptedProvider]) -> ScriptedProvider:
    return _fresh(providers[1])


@pytest.fixture(scope="module")
async def shared_gateway(
    tmp_path_factory: pytest.TempPathFactory, providers: tuple[ScriptedProvider, ScriptedProvider]
) -> AsyncIterator[Gateway]:
    """One gateway for the module: each test uses routes (and so deployments, breakers and
    cool-downs) and keys (and so limits) of its own."""
    workdir = tmp_path_factory.mktemp("llm-routing")
    async with gateway_on_own_servers(workdir, routing_config(*providers), admin=True) as gw:
        await poll_until(lambda: "gpt-guarded" in gw.ingress.models.models, "the routes in the ingress view")
        yield gw


async def _row(gateway: Gateway, since: float, model: str) -> Any:
    rows = await audit_rows_since(gateway, 1, since)
    return next(row for row in rows if row.tool == model)


async def test_a_failing_deployment_hands_the_request_to_the_next_priced_at_the_one_that_answered(gateway, a, b, began):
    a.script, b.script = [Fail(503, "overloaded")], [Reply("from b", usage=(1000, 100))]
    completion = await sdk_client(gateway).chat.completions.create(model="gpt-failover", messages=HI)
    assert completion.choices[0].message.content == "from b"
    assert [r.body["model"] for r in a.received] == ["gpt-failover-a"]
    assert [r.body["model"] for r in b.received] == ["gpt-failover-b"]  # the upstream name, not the route's
    row = await _row(gateway, began, "gpt-failover")
    assert (row.status, row.server) == ("ok", "b")
    assert [line.split(" in ")[0] for line in row.llm_attempts] == [
        "a/gpt-failover-a (gpt-failover): upstream_unavailable",
        "b/gpt-failover-b (gpt-failover): ok",
    ]
    assert row.cost_usd == pytest.approx((1000 * 10.0 + 100 * 20.0) / 1_000_000)  # b's price, not a's


async def test_the_messages_front_fails_over_as_chat_completions_does(gateway, a, b, began):
    a.script, b.script = [Fail(503, "overloaded")], [Reply("from b", usage=(1000, 100))]
    message = await anthropic_client(gateway).messages.create(
        model="gpt-messages-failover", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert [block.text for block in message.content if block.type == "text"] == ["from b"]
    assert [r.body["model"] for r in a.received + b.received] == ["gpt-messages-failover-a", "gpt-messages-failover-b"]
    row = await _row(gateway, began, "gpt-messages-failover")
    assert (row.status, row.server) == ("ok", "b")
    assert [line.split(": ")[1].split(" in ")[0] for line in row.llm_attempts] == ["upstream_unavailable", "ok"]
    assert row.cost_usd == pytest.approx((1000 * 10.0 + 100 * 20.0) / 1_000_000)  # b's price, not a's


async def test_the_responses_front_streams_from_the_deployment_failed_over_to(gateway, a, b, began):
    a.script, b.script = [Drop()], [Reply("streamed by b")]
    stream = await sdk_client(gateway).responses.create(model="gpt-responses-failover", input="hi", stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "streamed by b"
    row = await _row(gateway, began, "gpt-responses-failover")
    assert (row.status, row.server) == ("ok", "b")
    assert [line.split(": ")[1].split(" in ")[0] for line in row.llm_attempts] == ["upstream_unavailable", "ok"]


async def test_a_stream_fails_over_while_no_chunk_reached_the_client(gateway, a, b, began):
    a.script, b.script = [Drop()], [Reply("streamed by b")]
    stream = await sdk_client(gateway).chat.completions.create(model="gpt-stream-failover", messages=HI, stream=True)
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == "streamed by b"
    row = await _row(gateway, began, "gpt-stream-failover")
    assert [line.split(": ")[1].split(" in ")[0] for line in row.llm_attempts] == ["upstream_unavailable", "ok"]


async def test_retry_after_keeps_requests_off_a_deployment_until_it_passed(gateway, a, b, began):
    a.script = [Fail(429, "slow down", retry_after=600)]
    b.script = [Reply("one"), Reply("two")]
    client = sdk_client(gateway)
    for text in ("one", "two"):
        completion = await client.chat.completions.create(model="gpt-retry", messages=HI)
        assert completion.choices[0].message.content == text
    assert len(a.received) == 1  # the second request never went to it
    rows = sorted((r for r in await audit_rows_since(gateway, 2, began) if r.tool == "gpt-retry"), key=lambda r: r.ts)
    assert "rate_limited" in rows[0].llm_attempts[0]
    assert "cooling_down" in rows[1].llm_attempts[0] and ": ok in" in rows[1].llm_attempts[1]


async def test_a_request_the_provider_refuses_is_not_sent_to_the_next_deployment(gateway, a, b, began):
    a.script = [Fail(400, "bad request")]
    with pytest.raises(openai.APIStatusError):
        await sdk_client(gateway).chat.completions.create(model="gpt-no-failover", messages=HI)
    assert b.received == []
    row = await _row(gateway, began, "gpt-no-failover")
    assert len(row.llm_attempts) == 1


async def test_no_failover_once_a_chunk_reached_the_client(gateway, a, b):
    """A retry elsewhere would repeat text the client has already seen."""
    a.script = [Cut("partial answer")]
    base = gateway.url.removesuffix("/mcp")
    async with httpx.AsyncClient(timeout=30) as http:
        body = {"model": "gpt-mid-stream", "messages": HI, "stream": True}
        response = await http.post(f"{base}/v1/chat/completions", json=body, headers=_bearer(ADMIN_KEY))
    assert "part" in response.text
    assert b.received == []


async def test_a_key_without_the_model_grant_is_refused_naming_its_grants_and_audited(gateway, a, began):
    client = sdk_client(gateway, NARROW_KEY)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await client.chat.completions.create(model="gpt-failover", messages=HI)
    message = str(refused.value)
    assert "may not use model 'gpt-failover'" in message and "'gpt-guarded'" in message
    assert a.received == []
    row = await _row(gateway, began, "gpt-failover")
    assert (row.status, row.error_kind, row.key_name) == ("denied", "forbidden", "narrow")
    assert [m.id for m in (await client.models.list()).data] == ["gpt-guarded"]


async def test_a_fallback_into_a_model_the_key_may_not_use_is_skipped_not_used(gateway, a, b, began):
    a.script = [Fail(503), Fail(503)]
    b.always = Reply("the secret model")
    with pytest.raises(openai.APIStatusError):
        await sdk_client(gateway, NARROW_KEY).chat.completions.create(model="gpt-guarded", messages=HI)
    assert b.received == []
    row = await _row(gateway, began, "gpt-guarded")
    assert [line.split(" in ")[0] for line in row.llm_attempts] == [
        "a/up-guarded (gpt-guarded): upstream_unavailable",
        "b/up-secret (gpt-secret): not_granted",
    ]
    # the same fallback serves a key that may use it
    completion = await sdk_client(gateway).chat.completions.create(model="gpt-guarded", messages=HI)
    assert completion.choices[0].message.content == "the secret model"


async def test_team_and_group_grants_decide_for_a_key_that_states_none(gateway, a):
    client = sdk_client(gateway, TEAM_KEY)
    assert [m.id for m in (await client.models.list()).data] == ["gpt-failover", "gpt-routed"]
    with pytest.raises(openai.PermissionDeniedError):
        await client.chat.completions.create(model=LISTED, messages=HI)
    assert a.received == []
    # no model grant anywhere: every model, as before model grants existed
    everything = {m.id for m in (await sdk_client(gateway).models.list()).data}
    assert {LISTED, "gpt-b-listed", "gpt-secret", "gpt-routed"} <= everything


async def test_the_upstream_name_of_a_deployment_is_not_a_way_around_its_route(gateway, a):
    with pytest.raises(openai.NotFoundError):
        await sdk_client(gateway).chat.completions.create(model="gpt-failover-a", messages=HI)
    assert a.received == []


@pytest.mark.parametrize("key", [RPM_KEY, TPM_KEY])
async def test_requests_and_tokens_per_minute_per_key(gateway, a, key):
    """Six requests span at most two minutes' windows, each of which lets two through (two requests,
    or 15 + 15 tokens against 20): at least two are refused, whatever second the test starts at."""
    a.always = Reply("ok", usage=(10, 5))
    client = sdk_client(gateway, key)
    refused = 0
    for _ in range(6):
        try:
            await client.chat.completions.create(model=LISTED, messages=HI)
        except openai.RateLimitError as exc:
            assert "per minute" in str(exc)
            refused += 1
    assert refused >= 2
    assert len(a.received) == 6 - refused


async def test_a_budget_is_checked_at_the_dearest_deployment_a_request_may_reach(gateway, a, b):
    """`a` would cost $0.002 for 1000 tokens, its fallback deployment `b` $0.02: a one-cent budget
    cannot cover the request, cheap first deployment or not."""
    with pytest.raises(openai.APIStatusError) as refused:
        await sdk_client(gateway, THRIFTY_KEY).chat.completions.create(
            model="gpt-limited", messages=HI, max_tokens=1000
        )
    assert "budget" in str(refused.value)
    assert a.received == [] and b.received == []


async def test_the_routes_record_is_not_a_provider_to_the_admin_api(gateway, caplog):
    """The routes live beside the providers in their bucket, under a key no provider can have."""
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=30) as admin:
        listed = await admin.get("/llm-providers")
    assert [p["name"] for p in listed.json()] == ["a", "b"]
    assert "malformed" not in caplog.text


async def test_model_grants_made_through_the_admin_api_apply(gateway, a):
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=30) as admin:
        created = await admin.post("/keys", json={"name": "api-narrow", "models": ["gpt-guarded"]})
        assert created.status_code == 201, created.text
        assert created.json()["key"]["models"] == ["gpt-guarded"]
        group = await admin.post("/groups", json={"id": "listed-users", "models": [LISTED]})
        assert group.status_code == 201, group.text
        patched = await admin.patch(f"/keys/{created.json()['key']['id']}", json={"groups": ["listed-users"]})
        assert patched.status_code == 200, patched.text
    client = sdk_client(gateway, created.json()["secret"])

    async def listed_both() -> bool:
        try:
            return [m.id for m in (await client.models.list()).data] == ["gpt-guarded", LISTED]
        except openai.AuthenticationError:  # the key not in the ingress view yet
            return False

    await poll_until(listed_both, "the key and its group in the ingress view")
    with pytest.raises(openai.PermissionDeniedError):
        await client.chat.completions.create(model="gpt-failover", messages=HI)
    assert a.received == []


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_the_admin_api_lists_each_model_with_its_deployments_and_strategy(gateway):
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=30) as admin:
        listed = await admin.get("/llm-models")
        routed = await admin.get("/llm-models/gpt-routed")
        missing = await admin.get("/llm-models/gpt-nowhere")
    assert listed.status_code == 200, listed.text
    models = {m["name"]: m for m in listed.json()}
    assert {"gpt-routed", "gpt-guarded", LISTED, "gpt-b-listed"} <= set(models)
    assert routed.json() == models["gpt-routed"]
    assert (routed.json()["routed"], routed.json()["strategy"], routed.json()["source"]) == (True, "weighted", "config")
    assert [(d["provider"], d["model"], d["priority"]) for d in routed.json()["deployments"]] == [
        ("a", "gpt-routed-a", 0),
        ("b", "gpt-routed-b", 1),
    ]
    assert models["gpt-guarded"]["fallbacks"] == ["gpt-secret"]
    # a model a provider lists is its own route: one deployment at the provider's price
    listed_route = models[LISTED]
    assert (listed_route["routed"], listed_route["strategy"], listed_route["fallbacks"]) == (False, "priority", [])
    assert [(d["provider"], d["model"], d["price"]["input"]) for d in listed_route["deployments"]] == [
        ("a", LISTED, 1.0)
    ]
    assert missing.status_code == 404 and "gpt-nowhere" in missing.text


API_ROUTE = {
    "deployments": [
        {"provider": "b", "model": "up-api-b", "priority": 0},
        {"provider": "a", "model": "up-api-a", "priority": 1},
    ],
    "fallbacks": ["gpt-secret"],
}


async def test_a_route_written_through_the_admin_api_routes_survives_config_apply_and_is_deleted(
    gateway, providers, a, b
):
    client = sdk_client(gateway)
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=30) as admin:
        put = await admin.put("/llm-models/gpt-api-route", json=API_ROUTE)
        assert put.status_code == 200, put.text
        assert (put.json()["source"], put.json()["routed"]) == ("api", True)
        await poll_until(lambda: "gpt-api-route" in gateway.ingress.models.models, "the API route in the ingress view")
        a.script, b.script = [Reply("from a")], [Fail(503, "overloaded")]
        completion = await client.chat.completions.create(model="gpt-api-route", messages=HI)
        assert completion.choices[0].message.content == "from a"
        assert [r.body["model"] for r in b.received + a.received] == ["up-api-b", "up-api-a"]  # its order, failed over

        await gateway.apply(routing_config(*providers))  # the file does not name it
        kept = await admin.get("/llm-models/gpt-api-route")
        assert (kept.status_code, kept.json()["source"]) == (200, "api"), kept.text
        assert (await admin.get("/llm-models/gpt-routed")).json()["source"] == "config"

        file_route = await admin.delete("/llm-models/gpt-routed")
        assert file_route.status_code == 409 and "config file" in file_route.json()["message"]
        deleted = await admin.delete("/llm-models/gpt-api-route")
        assert deleted.status_code == 204, deleted.text
        assert (await admin.get("/llm-models/gpt-api-route")).status_code == 404
    await poll_until(lambda: "gpt-api-route" not in gateway.ingress.models.models, "the route gone from ingress")
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-api-route", messages=HI)


async def test_a_model_name_with_slashes_is_one_path_parameter(gateway):
    client = sdk_client(gateway)
    name = "team-a/meta/llama-3-70b"  # as model hubs name them
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=30) as admin:
        put = await admin.put(f"/llm-models/{name}", json=API_ROUTE)
        assert (put.status_code, put.json()["name"]) == (200, name), put.text
        assert (await admin.get(f"/llm-models/{name}")).json()["name"] == name
        await poll_until(lambda: name in gateway.ingress.models.models, "the slashed route in the ingress view")
        listed = await client.models.list()
        assert name in {model.id for model in listed.data}
        assert (await admin.delete(f"/llm-models/{name}")).status_code == 204
        assert (await admin.get(f"/llm-models/{name}")).status_code == 404


async def test_a_route_naming_an_unknown_provider_or_a_listed_model_is_refused_naming_the_problem(gateway):
    unknown = {"deployments": [{"provider": "nowhere", "model": "m"}]}
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=30) as admin:
        no_provider = await admin.put("/llm-models/gpt-bad", json=unknown)
        listed = await admin.put(f"/llm-models/{LISTED}", json={"deployments": [{"provider": "b", "model": "m"}]})
        bad_field = await admin.put("/llm-models/gpt-bad", json={"deployments": [], "strategy": "random"})
        looped = await admin.put(
            "/llm-models/gpt-loop", json={"deployments": [{"provider": "a", "model": "m"}], "fallbacks": ["gpt-loop"]}
        )
        absent = await admin.get("/llm-models/gpt-bad")
    assert no_provider.status_code == 422 and "unknown provider 'nowhere'" in no_provider.json()["message"]
    assert listed.status_code == 422 and f"provider 'a' lists {LISTED!r}" in listed.json()["message"]
    assert bad_field.status_code == 422 and "deployments" in bad_field.json()["message"], bad_field.text
    assert looped.status_code == 422 and "cannot fall back to itself" in looped.json()["message"]
    assert absent.status_code == 404


async def test_a_reader_may_list_routes_but_not_write_them(gateway):
    assert gateway.admin is not None
    viewer = await principal_token(gateway.admin, gateway.admin_token, "routes-viewer", {"role": "viewer"})
    route = {"deployments": [{"provider": "a", "model": "up-viewer"}]}
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=_bearer(viewer), timeout=30) as reader:
        listed = await reader.get("/llm-models")
        put = await reader.put("/llm-models/gpt-viewer", json=route)
        deleted = await reader.delete("/llm-models/gpt-routed")
        after = await reader.get("/llm-models")
    assert listed.status_code == 200
    assert put.status_code == 403 and "providers:write" in put.json()["message"]
    assert deleted.status_code == 403 and "providers:write" in deleted.json()["message"]
    assert {m["name"] for m in after.json()} == {m["name"] for m in listed.json()}


async def test_a_route_the_file_also_names_becomes_the_files_at_apply(gateway, providers, caplog):
    """The file is what the operator declared: it wins a clash, and apply says which route it took over."""
    route = {"deployments": [{"provider": "a", "model": "up-clash-api"}]}
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=30) as admin:
        put = await admin.put("/llm-models/gpt-clash", json=route)
        assert put.status_code == 200, put.text
        config = routing_config(*providers)
        config["llm"]["models"]["gpt-clash"] = {"deployments": [{"provider": "b", "model": "up-clash-file"}]}
        await gateway.apply(config)
        taken = await admin.get("/llm-models/gpt-clash")
        changed = await admin.put("/llm-models/gpt-clash", json=route)
    assert (taken.json()["source"], taken.json()["deployments"][0]["model"]) == ("config", "up-clash-file")
    assert "route 'gpt-clash' written through the admin API is replaced by the file's" in caplog.text
    assert changed.status_code == 409 and "config file" in changed.json()["message"]
