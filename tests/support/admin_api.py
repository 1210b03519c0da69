"""The admin API served by an in-process ingress: fixtures `ingress` and `api` (a pytest plugin,
registered in tests/conftest.py; a module may define its own `ingress`, which wins)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from libs.common import subjects
from libs.common.nats import connect
from libs.common.settings import IngressSettings
from services.ingress.service import IngressService
from tests.support.stores import declared

__all__ = ["ECHO", "TOKEN", "api", "base_url", "ingress", "servers_list"]

TOKEN = "test-admin-token-0123456789abcdef"
ECHO = {"command": "python", "args": ["echo_server.py"], "env": {"API_TOKEN": "upstream-secret-value"}}


@pytest.fixture
async def ingress(nats_url: str) -> AsyncIterator[IngressService]:
    """An ingress with the admin API, on a NATS whose audit streams and catalog exist (as once the
    audit service and an executor, their owners, have started): the admin changes' events are
    published at once, and a test may write the catalog as an executor would."""
    nc = await connect(nats_url, "test-store-owners")
    await declared(nc.jetstream(), subjects.AUDIT_STREAM, subjects.AUDIT_DEAD_STREAM, subjects.KV_CATALOG)
    await nc.close()
    service = IngressService(IngressSettings(nats_url=nats_url, port=0, admin_token=TOKEN))
    await service.start()
    yield service
    await service.stop()


def base_url(service: IngressService) -> str:
    return f"http://{service.settings.host}:{service.port}/admin/v1"


@pytest.fixture
async def api(ingress: IngressService) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base_url(ingress), headers=headers, timeout=10) as client:
        yield client


async def servers_list(public: str, admin_token: str) -> str:
    """`bastion servers list` against the admin API at `public` (a gateway's base URL), as an admin
    runs it: its output, on a terminal wide enough not to wrap a link."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")} | {"COLUMNS": "200"}
    argv = ["servers", "list", "--admin-url", public, "--admin-token", admin_token]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *argv, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out
    return out.decode()
