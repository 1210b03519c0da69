"""The admin service in-process, with an ingress beside it to see changes arrive: fixtures `admin`,
`api` and `ingress` (a pytest plugin, registered in tests/conftest.py; a module may define its own,
which wins)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from libs.common.settings import AdminSettings, IngressSettings
from services.admin.service import AdminService
from services.ingress.service import IngressService

__all__ = ["ECHO", "TOKEN", "admin", "api", "base_url", "ingress"]

TOKEN = "test-admin-token-0123456789abcdef"
ECHO = {"command": "python", "args": ["echo_server.py"], "env": {"API_TOKEN": "upstream-secret-value"}}


@pytest.fixture
async def admin(nats_url: str) -> AsyncIterator[AdminService]:
    service = AdminService(AdminSettings(nats_url=nats_url, admin_port=0, admin_token=TOKEN))
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def ingress(nats_url: str) -> AsyncIterator[IngressService]:
    """A public replica, to see what the admin service changes take effect there."""
    service = IngressService(IngressSettings(nats_url=nats_url, port=0))
    await service.start()
    yield service
    await service.stop()


def base_url(service: AdminService) -> str:
    return f"{service.url}/admin/v1"


@pytest.fixture
async def api(admin: AdminService) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base_url(admin), headers=headers, timeout=10) as client:
        yield client
