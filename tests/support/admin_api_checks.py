"""What the admin REST API's test modules share beyond the admin service itself: an error answer
checked (`assert_error`), and the bus as the admin role sees it (`admin_bus`, and the per-test `js`
fixture a module imports)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import pytest

from libs.common.bus.permissions import ADMIN
from libs.common.bus.stores import declare_owned
from libs.common.settings import StoreSettings

__all__ = ["admin_bus", "assert_error", "js"]


@contextlib.asynccontextmanager
async def admin_bus(nats_url: str) -> AsyncIterator[Any]:
    """JetStream on `nats_url`, with the admin role's configuration buckets declared."""
    nc = await nats.connect(nats_url)
    await declare_owned(nc.jetstream(), ADMIN, StoreSettings())
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[Any]:
    """The bus as the admin role sees it: its configuration buckets exist (the admin API, their
    owner, declares them when it starts; a test using `AdminStore` alone declares them here)."""
    async with admin_bus(nats_url) as bus:
        yield bus


def assert_error(response: httpx.Response, status: int, *says: str) -> dict[str, Any]:
    """`response` is an error answer of `status` whose message holds each of `says`: its body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message"}, body
    for text in says:
        assert text in body["message"], body
    return body
