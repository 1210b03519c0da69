"""One of two deployments of a routed model killed under load (docs/llm-routing.md): requests it
held fail over to the other before any byte reached the client, later ones skip it, none fails,
and each audit row names the attempts. A module of its own: its gateway is the only one running
(the embedded ClickHouse opens one path per process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.gateway import Gateway, running_gateway
from tests.support.llm_gateway import audit_rows_since, close_sdk_clients, sdk_client
from tests.support.llm_provider import Held, Reply, ScriptedProvider
from tests.support.llm_routing import pair_config
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def x(provider: ScriptedProvider) -> ScriptedProvider:
    return provider


@pytest.fixture
def y(second_provider: ScriptedProvider) -> ScriptedProvider:
    return second_provider


@pytest.fixture
async def pair_gateway(nats_url, redis_url, tmp_path, x, y) -> AsyncIterator[Gateway]:
    async with running_gateway(nats_url, redis_url, tmp_path, pair_config(x, y)) as gw:
        await poll_until(lambda: "gpt-pair" in gw.ingress.models.models, "the route in the ingress view")
        yield gw
        await close_sdk_clients()


async def test_killing_one_of_two_deployments_under_load_fails_no_request(pair_gateway, x, y, began):
    """`x` holds every request it gets until it is killed (connections broken before any byte), `y`
    answers at once; then more requests come while `x` refuses connections."""
    x.always, y.always = Held(Reply("x")), Reply("y")
    client = sdk_client(pair_gateway)

    async def one(stream: bool) -> str:
        if not stream:
            completion = await client.chat.completions.create(model="gpt-pair", messages=HI)
            return completion.choices[0].message.content or ""
        chunks = await client.chat.completions.create(model="gpt-pair", messages=HI, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    first = [asyncio.create_task(one(stream=i % 2 == 1)) for i in range(24)]
    await poll_until(lambda: len(x.received) >= 4, "requests held by x")
    await x.kill()
    x.release.set()  # its handlers end (writing into broken connections)
    answers = await asyncio.gather(*first)
    answers += await asyncio.gather(*(one(stream=i % 2 == 1) for i in range(16)))
    assert answers == ["y"] * 40  # not one failed
    rows = await audit_rows_since(pair_gateway, 40, began)
    failed_over = [r for r in rows if len(r.llm_attempts) == 2 and r.llm_attempts[0].startswith("x/pair-x")]
    assert len(failed_over) >= 4
    assert all(r.status == "ok" and r.llm_attempts[-1].startswith("y/pair-y (gpt-pair): ok") for r in rows)
