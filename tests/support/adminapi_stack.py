"""One admin service on its own NATS for a whole test module (`module_admin`), for the tests of a module
that only read it or write objects under names no other test of that stack uses: starting the admin
service (its app has a hundred routes to build) costs more than most of these tests do, so a module
pays for it once per stack instead of once per test. A test that needs an empty store, other settings,
or changes what its neighbours rely on (the owner, a shared name) keeps the per-test `admin`/`api`
fixtures of `tests.support.admin_api`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.stack import EmbeddedNats
from libs.common.web.guarded_http import shared_tls
from services.admin.service import AdminService
from tests.support.admin_api import base_url, running_admin

__all__ = ["ModuleAdmin", "module_admin", "module_admin_fixture"]


@dataclass
class ModuleAdmin:
    nats_url: str
    admin: AdminService
    owner_token: str

    def client(self) -> httpx.AsyncClient:
        """The owner's client at `/admin/v1`, as the per-test `api` fixture makes it."""
        headers = {"Authorization": f"Bearer {self.owner_token}"}
        return httpx.AsyncClient(base_url=base_url(self.admin), headers=headers, timeout=30, verify=shared_tls())


@contextlib.asynccontextmanager
async def module_admin(folder: Path) -> AsyncIterator[ModuleAdmin]:
    """A NATS under `folder` and `running_admin` on it (the same admin service and first owner the
    per-test fixtures make)."""
    server = EmbeddedNats(folder / "nats").start()
    try:
        async with running_admin(server.url) as (admin, owner):
            yield ModuleAdmin(server.url, admin, owner)
    finally:
        server.stop()


def module_admin_fixture(name: str) -> Any:
    """The module-scoped fixture `name` holding a `module_admin` stack of its own (in a folder `name`):
    a module binds it under that name, `readers = module_admin_fixture("readers")`."""

    @pytest.fixture(scope="module", name=name)
    async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ModuleAdmin]:
        async with module_admin(tmp_path_factory.mktemp(name)) as started:
            yield started

    return stack
