"""The admin service in-process, its first owner made with the bootstrap token, and an ingress beside it
to see changes arrive: fixtures `admin`, `owner_token`, `api` and `ingress` (a pytest plugin,
registered in tests/conftest.py; a module may define its own, which wins), and `principal_token` for
a principal of any role."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.admin_principals import Principal, RoleBinding
from libs.common.settings import AdminSettings, IngressSettings
from libs.common.web.guarded_http import shared_tls
from services.admin.api.access_store import AccessStore
from services.admin.api.tables import Buckets
from services.admin.roles import BUILTIN_ROLES
from services.admin.service import AdminService
from services.ingress.service import IngressService
from tests.support.egress import LOOPBACK_UPSTREAMS
from tests.support.stores import declared

__all__ = [
    "BOOTSTRAP",
    "ECHO",
    "RoleHolders",
    "admin",
    "admin_pages",
    "api",
    "base_url",
    "first_owner",
    "ingress",
    "owner_token",
    "principal_token",
    "role_holders",
    "running_admin",
    "seeded_token",
    "servers_list",
]

BOOTSTRAP = "test-bootstrap-token-0123456789abcdef"
ECHO = {"command": "python", "args": ["echo_server.py"], "env": {"API_TOKEN": "upstream-secret-value"}}


def base_url(service: AdminService) -> str:
    return f"{service.url}/admin/v1"


async def first_owner(service: AdminService, name: str = "test-owner") -> str:
    """The bootstrap token's one job: an owner, with an API token (returned)."""
    body = {"name": name, "kind": "automation", "roles": [{"role": "owner"}], "token": {"label": "tests"}}
    async with httpx.AsyncClient(timeout=30, verify=shared_tls()) as http:
        made = await http.post(
            f"{base_url(service)}/principals", json=body, headers={"Authorization": f"Bearer {BOOTSTRAP}"}
        )
    assert made.status_code == 201, made.text
    secret: str = made.json()["token"]["secret"]
    return secret


async def principal_token(
    service: AdminService,
    owner: str,
    name: str,
    *roles: dict[str, Any],
    kind: str = "automation",
    user_id: str | None = None,
) -> str:
    """A principal holding `roles` (`{"role": "analyst"}`, `{"role": "key_manager", "team_id": "a"}`),
    made by the owner (a person signing in as `user_id`, when given); returns its API token."""
    body = {"name": name, "kind": kind, "roles": list(roles), "token": {"label": "tests"}, "user_id": user_id}
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {owner}"}, verify=shared_tls()) as http:
        made = await http.post(f"{base_url(service)}/principals", json=body)
    assert made.status_code == 201, made.text
    secret: str = made.json()["token"]["secret"]
    return secret


@dataclass
class RoleHolders:
    """The first owner's token and a principal of each built-in role and of one custom role: each
    role's API token, and the permissions it grants."""

    owner: str
    tokens: dict[str, str]
    permissions: dict[str, frozenset[str]]


async def role_holders(
    service: AdminService, owner: str, custom: tuple[str, Iterable[str]], prefix: str
) -> RoleHolders:
    """Makes the `custom` role (name, permissions), then a principal `<prefix>-<role>` holding each role."""
    name, permissions = custom
    headers = {"Authorization": f"Bearer {owner}"}
    async with httpx.AsyncClient(base_url=base_url(service), headers=headers, timeout=30, verify=shared_tls()) as http:
        made = await http.post("/roles", json={"name": name, "permissions": sorted(permissions)})
    assert made.status_code == 201, made.text
    grants = {role: perms for role, (_, perms) in BUILTIN_ROLES.items()} | {name: frozenset(permissions)}
    tokens = {role: await principal_token(service, owner, f"{prefix}-{role}", {"role": role}) for role in grants}
    return RoleHolders(owner, tokens, grants)


async def seeded_token(nats_url: str, name: str, *roles: dict[str, Any], kind: str = "automation") -> str:
    """A principal and its API token written straight into KV `bastion_admin`, as `bastion up` makes its
    owner: no admin event is published (for tests that count the audit trail's events)."""
    nc = await connect(nats_url, "test-seed")
    try:
        access = AccessStore(Buckets(nc.jetstream()))
        bindings = [RoleBinding.model_validate(role) for role in roles]
        await access.principals.create(name, Principal(name=name, kind=kind, roles=bindings))  # type: ignore[arg-type]
        secret, _ = await access.issue_token(name, "tests", 1, "tests")
    finally:
        await nc.close()
    return secret


@contextlib.asynccontextmanager
async def running_admin(nats_url: str, **settings: Any) -> AsyncIterator[tuple[AdminService, str]]:
    """An admin service on a free port and its first owner's token, on a NATS whose audit streams and
    catalog exist (as once the audit service and an executor, their owners, have started): the admin
    changes' events are published at once, and a test may write the catalog as an executor would."""
    nc = await connect(nats_url, "test-store-owners")
    await declared(nc.jetstream(), subjects.AUDIT_STREAM, subjects.AUDIT_DEAD_STREAM, subjects.KV_CATALOG)
    await nc.close()
    settings.setdefault("registries", {})  # the default registry is on the internet: a test names its own
    settings.setdefault("egress", LOOPBACK_UPSTREAMS)  # the console's test reaches the suite's own servers
    service = AdminService(
        AdminSettings(nats_url=nats_url, admin_port=0, admin_bootstrap_token=SecretStr(BOOTSTRAP), **settings)
    )
    await service.start()
    try:
        yield service, await first_owner(service)
    finally:
        await service.stop()


@pytest.fixture
async def admin_and_owner(nats_url: str) -> AsyncIterator[tuple[AdminService, str]]:
    async with running_admin(nats_url) as both:
        yield both


@pytest.fixture
def admin(admin_and_owner: tuple[AdminService, str]) -> AdminService:
    return admin_and_owner[0]


@pytest.fixture
def owner_token(admin_and_owner: tuple[AdminService, str]) -> str:
    return admin_and_owner[1]


@pytest.fixture
async def ingress(nats_url: str) -> AsyncIterator[IngressService]:
    """A public replica, to see what the admin service changes take effect there."""
    service = IngressService(IngressSettings(nats_url=nats_url, port=0))
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def admin_pages(admin: AdminService) -> AsyncIterator[httpx.AsyncClient]:
    """The admin service's pages as a browser without a token asks for them (not below `/admin/v1`)."""
    async with httpx.AsyncClient(base_url=admin.url, timeout=10, trust_env=False, verify=shared_tls()) as client:
        yield client


@pytest.fixture
async def api(admin: AdminService, owner_token: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {owner_token}"}
    async with httpx.AsyncClient(base_url=base_url(admin), headers=headers, timeout=30, verify=shared_tls()) as client:
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
