"""Roles, deny by default, proven against the running admin service.

The table test is generated from the app's own route list: every route of the admin service, for
every built-in role, a custom role and an anonymous caller, answers 401/403 exactly when the
caller lacks the permission the route declares, and a 403 names that permission. A route added
without a permission cannot even be built (`test_a_route_without_a_permission_is_refused_when_built`),
and one that is not an admin route fails `test_every_route_declares_a_permission`.

Requests carry no valid body (`{"?": 1}`, which every request model refuses) and ids that name
nothing, so an allowed request ends in 404/422 (or answers a read) and changes nothing; the
permission is checked before the body is read. Then the attacks: a key manager of team A against
team B's keys, and a principal who may manage principals trying to make more of itself.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount

from cli.stack import EmbeddedNats
from libs.common.settings import AdminSettings
from services.admin.api.errors import PERMISSION_KEY, permission_of
from services.admin.app import DOCS_PATHS
from services.admin.roles import AUTHENTICATED, BUILTIN_ROLES, PUBLIC
from services.admin.routing import flat_routes
from services.admin.service import AdminService
from tests.support.admin_api import BOOTSTRAP, RoleHolders, first_owner, principal_token, role_holders

pytestmark = pytest.mark.integration

CUSTOM = ("release-manager", ["servers:read", "servers:write", "tools:approve"])
"""A custom role, checked like the built-in ones."""
_PATH_VALUES = {
    "key_id": "0" * 64,
    "token_id": "0" * 64,
    "entity_id": "nothing-here",
    "user_id": "nothing-here",
    "name": "nothing-here",
}


@dataclass
class Stack(RoleHolders):
    """The admin service beside a principal of each role."""

    admin: AdminService


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    server = EmbeddedNats(tmp_path_factory.mktemp("roles") / "nats").start()
    admin = AdminService(AdminSettings(nats_url=server.url, admin_port=0, admin_bootstrap_token=BOOTSTRAP))
    try:
        await admin.start()
        holders = await role_holders(admin, await first_owner(admin), CUSTOM, "as")
        yield Stack(holders.owner, holders.tokens, holders.permissions, admin)
    finally:
        await admin.stop()
        server.stop()


def _routes(stack: Stack) -> list[tuple[str, str, str]]:
    """(method, path, permission) of every route of the running app."""
    assert stack.admin.app is not None
    found = []
    for route in flat_routes(stack.admin.app.routes):
        if isinstance(route, APIRoute) and (permission := permission_of(route)) is not None:
            found += [(method, route.path, permission) for method in sorted(route.methods) if method != "HEAD"]
    return found


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: _PATH_VALUES.get(m.group(1), "nothing-here"), path)


def test_every_route_declares_a_permission(stack: Stack) -> None:
    """Every route of the app is an admin route with a declared permission, but FastAPI's own documentation."""
    assert stack.admin.app is not None
    undeclared = []
    for route in flat_routes(stack.admin.app.routes):
        path = getattr(route, "path", "")
        if path in DOCS_PATHS:
            continue
        if isinstance(route, Mount) or not isinstance(route, APIRoute):
            undeclared.append(f"{path} (not an admin route)")
        elif permission_of(route) is None:
            undeclared.append(path)
    assert not undeclared, f"routes without a permission: {undeclared}"
    assert len(_routes(stack)) >= 70  # the whole API is here, not a slice of it


def test_the_reference_shows_each_routes_permission(stack: Stack) -> None:
    assert stack.admin.app is not None
    operations = [op for item in stack.admin.app.openapi()["paths"].values() for op in item.values()]
    assert operations and all(PERMISSION_KEY in op for op in operations)


async def test_each_role_against_every_route(stack: Stack) -> None:
    routes = _routes(stack)
    callers = ["", *stack.tokens]
    checked = 0
    wrong: list[str] = []
    async with httpx.AsyncClient(base_url=stack.admin.url, timeout=30, follow_redirects=False) as http:
        for method, path, permission in routes:
            for caller in callers:
                headers = {"Authorization": f"Bearer {stack.tokens[caller]}"} if caller else {}
                body = {"content": b'{"?": 1}', "headers": {**headers, "Content-Type": "application/json"}}
                answer = await http.request(
                    method, _url(path), **(body if method in ("POST", "PUT", "PATCH") else {"headers": headers})
                )
                checked += 1
                allowed = permission == PUBLIC or (
                    bool(caller) and (permission == AUTHENTICATED or permission in stack.permissions[caller])
                )
                status = answer.status_code
                if allowed and status in (401, 403):
                    wrong.append(
                        f"{caller or 'anonymous'} {method} {path} ({permission}): refused {status} {answer.text[:120]}"
                    )
                elif not allowed and not caller and status != 401:
                    wrong.append(f"anonymous {method} {path} ({permission}): {status}, not 401")
                elif not allowed and caller and (status != 403 or answer.json().get("permission") != permission):
                    wrong.append(f"{caller} {method} {path} ({permission}): {status} {answer.text[:120]}")
                elif status == 500:  # 503 is fine: no audit service, no sign-in configured here
                    wrong.append(f"{caller or 'anonymous'} {method} {path}: {status}")
    assert not wrong, "\n".join(wrong[:20]) + f"\n({len(wrong)} of {checked})"
    assert checked == len(routes) * len(callers)
    print(f"role x route table: {len(routes)} routes x {len(callers)} callers = {checked} requests")


def test_the_roles_mean_what_the_issue_asks() -> None:
    """Pinned by hand, not read back from the table: what each built-in role must and must not do."""
    must = {
        "owner": {"principals:write", "roles:write", "keys:write", "audit:payloads"},
        "operator": {"servers:write", "providers:write", "groups:write", "tools:approve", "keys:read"},
        "key_manager": {"keys:read", "keys:write"},
        "analyst": {"analytics:read"},
        "auditor": {"analytics:read", "audit:payloads", "audit:verify", "audit:export"},
        "viewer": {"keys:read", "groups:read", "directory:read", "servers:read", "providers:read"},
    }
    must_not = {
        "operator": {
            "keys:write",
            "principals:read",
            "principals:write",
            "roles:write",
            "audit:payloads",
            "servers:command",
        },
        "key_manager": {"servers:write", "principals:write", "analytics:read"},
        "analyst": {"audit:payloads", "audit:export", "keys:read", "servers:read"},
        "auditor": {"keys:write", "servers:write", "principals:write"},
        "viewer": {p for p in BUILTIN_ROLES["owner"][1] if not p.endswith(":read")} | {"principals:read"},
    }
    for role, permissions in must.items():
        assert permissions <= BUILTIN_ROLES[role][1], role
    for role, permissions in must_not.items():
        assert not permissions & BUILTIN_ROLES[role][1], role


# ------------------------------------------------------------------ attacks


async def _call(http: httpx.AsyncClient, token: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return await http.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})


async def test_a_key_manager_of_team_a_cannot_touch_team_b(stack: Stack) -> None:
    owner = stack.owner
    async with httpx.AsyncClient(base_url=f"{stack.admin.url}/admin/v1", timeout=10) as http:
        await _call(http, owner, "POST", "/customers", {"id": "acme", "name": "Acme"})
        for team, customer in (("team-a", "acme"), ("team-b", None), ("team-c", "acme")):
            made = await _call(http, owner, "POST", "/teams", {"id": team, "name": team, "customer_id": customer})
            assert made.status_code == 201, made.text
        keys = {}
        for name, team in (("a1", "team-a"), ("b1", "team-b"), ("c1", "team-c"), ("loose", None)):
            made = await _call(http, owner, "POST", "/keys", {"name": name, "team_id": team})
            keys[name] = made.json()["key"]["id"]
        km_a = await principal_token(stack.admin, owner, "km-a", {"role": "key_manager", "team_id": "team-a"})
        km_acme = await principal_token(stack.admin, owner, "km-acme", {"role": "key_manager", "customer_id": "acme"})

        listed = await _call(http, km_a, "GET", "/keys")
        assert sorted(k["name"] for k in listed.json()) == ["a1"]
        listed = await _call(http, km_acme, "GET", "/keys")
        assert sorted(k["name"] for k in listed.json()) == ["a1", "c1"]  # the customer's teams' keys

        b1 = keys["b1"]
        refusals = [
            await _call(http, km_a, "GET", f"/keys/{b1}"),
            await _call(http, km_a, "POST", "/keys", {"name": "sneaky", "team_id": "team-b"}),
            await _call(http, km_a, "POST", "/keys", {"name": "teamless"}),
            await _call(http, km_a, "POST", "/keys", {"name": "c-too", "team_id": "team-c"}),
            await _call(http, km_a, "POST", f"/keys/{b1}/rotate"),
            await _call(http, km_a, "POST", f"/keys/{b1}/revoke"),
            await _call(http, km_a, "PATCH", f"/keys/{b1}", {"grants": ["*"]}),
            await _call(http, km_a, "PATCH", f"/keys/{keys['a1']}", {"team_id": "team-b"}),  # moving it out
            await _call(http, km_a, "DELETE", f"/keys/{b1}"),
            await _call(http, km_a, "GET", f"/keys/{keys['loose']}"),
            await _call(http, km_acme, "POST", f"/keys/{b1}/revoke"),
        ]
        for refused in refusals:
            assert refused.status_code == 403, refused.text
            assert refused.json()["permission"] in ("keys:read", "keys:write"), refused.text
            assert "team 'team-a'" in refused.text or "customer 'acme'" in refused.text, refused.text
        b_key = (await _call(http, owner, "GET", f"/keys/{b1}")).json()
        assert (b_key["revoked"], b_key["grants"], b_key["team_id"]) == (False, [], "team-b")  # untouched
        assert len((await _call(http, owner, "GET", "/keys")).json()) == 4  # nothing created, nothing deleted

        # inside its team, it is a key manager
        made = await _call(http, km_a, "POST", "/keys", {"name": "a2", "team_id": "team-a"})
        assert made.status_code == 201, made.text
        assert (await _call(http, km_a, "POST", f"/keys/{keys['a1']}/rotate")).status_code == 201
        assert (await _call(http, km_acme, "POST", f"/keys/{made.json()['key']['id']}/revoke")).status_code == 200
        # and nothing else
        for method, path in (("GET", "/servers"), ("GET", "/groups"), ("GET", "/principals")):
            assert (await _call(http, km_a, method, path)).status_code == 403


async def test_nobody_hands_out_more_than_they_hold(stack: Stack) -> None:
    owner = stack.owner
    async with httpx.AsyncClient(base_url=f"{stack.admin.url}/admin/v1", timeout=10) as http:
        role = {"name": "people-admin", "permissions": ["principals:read", "principals:write", "keys:read"]}
        assert (await _call(http, owner, "POST", "/roles", role)).status_code == 201
        hr = await principal_token(stack.admin, owner, "hr", {"role": "people-admin"})

        # not an owner, operator or anything it does not hold in full
        for roles in ([{"role": "owner"}], [{"role": "operator"}], [{"role": "key_manager"}]):
            made = await _call(
                http, hr, "POST", "/principals", {"name": "escalate", "kind": "automation", "roles": roles}
            )
            assert made.status_code == 403, made.text
            assert made.json()["permission"] in BUILTIN_ROLES["owner"][1]
        # nor a token for, a change to, or the deletion of a principal holding more
        assert (await _call(http, hr, "POST", "/principals/test-owner/tokens", {"label": "mine"})).status_code == 403
        assert (
            await _call(http, hr, "PATCH", "/principals/as-viewer", {"roles": [{"role": "owner"}]})
        ).status_code == 403
        assert (await _call(http, hr, "PATCH", "/principals/as-operator", {"disabled": True})).status_code == 403
        assert (await _call(http, hr, "DELETE", "/principals/as-analyst")).status_code == 403
        # nor give itself more (roles:write is not its), nor make a role bigger than itself
        assert (await _call(http, hr, "PATCH", "/principals/hr", {"roles": [{"role": "owner"}]})).status_code == 403
        assert (await _call(http, hr, "POST", "/roles", {"name": "x", "permissions": ["keys:read"]})).status_code == 403
        made = await _call(http, owner, "POST", "/roles", {"name": "x", "permissions": ["keys:read"]})
        assert made.status_code == 201
        refused = await _call(
            http, stack.tokens["operator"], "POST", "/roles", {"name": "y", "permissions": ["keys:write"]}
        )
        assert refused.status_code == 403 and refused.json()["permission"] == "roles:write"
        # what it holds in full it may hand out: a principal with a subset of its permissions
        made = await _call(
            http, hr, "POST", "/principals", {"name": "reader", "kind": "automation", "roles": [{"role": "x"}]}
        )
        assert made.status_code == 201, made.text
        # and an owner changing a custom role cannot be undercut: the role grows only by an owner's hand
        grown = await _call(http, owner, "PUT", "/roles/x", {"permissions": ["keys:read", "keys:write"]})
        assert grown.status_code == 200
        assert (await _call(http, hr, "POST", "/principals/reader/tokens", {"label": "t"})).status_code == 403
