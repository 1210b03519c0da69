"""Tenants are a boundary, proven by a generated matrix against the running admin service: every role
(the built-in ones and a custom one), bound to a team and to a customer, x every mutating admin route
x each field that can carry a scope link (customer, team, user, tool group) x the values it can take.
Each case is judged on its outcome (tests/support/tenants.py states the rule apart from the code): a
change is made exactly when the role holds the route's permission in its scope and the object lies
wholly inside that scope before and after; a refusal is a 403 that changed nothing, and what was made
lies inside. The routes of global objects (servers, providers, principals, roles, policies, pins,
approvals) refuse every scoped principal. Then the key manager who minted keys for another tenant.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from cli.stack import EmbeddedNats
from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.settings import AdminSettings
from services.admin.api.errors import permission_of
from services.admin.roles import AUTHENTICATED, BUILTIN_ROLES, SCOPABLE
from services.admin.routing import flat_routes
from services.admin.service import AdminService
from tests.support.admin_api import BOOTSTRAP, first_owner, principal_token
from tests.support.stores import declared
from tests.support.tenants import LINK_VALUES, lies_in, places, seed_tenants

pytestmark = pytest.mark.integration

CUSTOM = ("tenant_admin", sorted(SCOPABLE))
"""A custom role holding every tenant permission."""
BINDINGS = {"team": {"team_id": "team-a"}, "customer": {"customer_id": "acme"}}
NOT_ADMIN_CHANGES = {"keys:read", "analytics:read", "policies:read"}
"""Permissions of POST routes that change nothing: the playground acts as a key by its secret, a query
and a policy check read."""


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    path: str
    permission: str
    fields: tuple[str, ...]
    base: Callable[[str], dict[str, Any]]
    """A fresh record of this kind, lying in acme's team-a where the kind can."""
    fixed: dict[str, Any] | None = None
    """Changed in place (PUT, PATCH) instead of a fresh one, and put back after: (id, record)."""


KINDS = (
    Kind(
        "key",
        "/keys",
        "keys:write",
        ("customer_id", "team_id", "user_id", "groups"),
        lambda u: {"name": u, "team_id": "team-a"},
    ),
    Kind(
        "user", "/users", "directory:write", ("team_id", "groups"), lambda u: {"id": u, "name": u, "team_id": "team-a"}
    ),
    Kind(
        "team",
        "/teams",
        "directory:write",
        ("customer_id", "groups"),
        lambda u: {"id": u, "name": u, "customer_id": "acme"},
        {"id": "team-a", "name": "A", "customer_id": "acme"},
    ),
    Kind("group", "/groups", "groups:write", ("customer_id",), lambda u: {"id": u, "customer_id": "acme"}),
    Kind(
        "customer",
        "/customers",
        "directory:write",
        ("groups",),
        lambda u: {"id": u, "name": u},
        {"id": "acme", "name": "Acme"},
    ),
)
ACTIONS = {"key": ("create", "patch", "delete", "revoke", "rotate")}
ENTITY_ACTIONS = ("create", "put", "patch", "delete")


@dataclass(frozen=True, slots=True)
class Case:
    role: str
    scope: str
    kind: Kind
    action: str
    field: str | None
    value: Any


def tenant_cases(roles: list[str]) -> list[Case]:
    """Every role x scope x (kind, action) x (field, value); actions without a body once."""
    found = []
    for role, scope, kind in itertools.product(roles, BINDINGS, KINDS):
        for action in ACTIONS.get(kind.name, ENTITY_ACTIONS):
            if action in ("delete", "revoke", "rotate"):
                found.append(Case(role, scope, kind, action, None, None))
                continue
            for field in kind.fields:
                values = [
                    v for v in LINK_VALUES[field] if not (v is None and action == "create" and field == "team_id")
                ]
                found += [Case(role, scope, kind, action, field, value) for value in values]
    return found


@dataclass
class Matrix:
    admin: AdminService
    owner: httpx.AsyncClient
    tokens: dict[tuple[str, str], str]
    permissions: dict[str, frozenset[str]]
    serial: itertools.count[int]


@pytest.fixture(scope="module")
async def matrix(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Matrix]:
    server = EmbeddedNats(tmp_path_factory.mktemp("tenants") / "nats").start()
    nc = await connect(server.url, "test-store-owners")  # the audit trail's streams, as its service makes them
    await declared(nc.jetstream(), subjects.AUDIT_STREAM, subjects.AUDIT_DEAD_STREAM)
    await nc.close()
    admin = AdminService(AdminSettings(nats_url=server.url, admin_port=0, admin_bootstrap_token=BOOTSTRAP))
    try:
        await admin.start()
        owner_token = await first_owner(admin)
        headers = {"Authorization": f"Bearer {owner_token}"}
        async with httpx.AsyncClient(base_url=f"{admin.url}/admin/v1", headers=headers, timeout=30) as owner:
            await seed_tenants(owner)
            name, permissions = CUSTOM
            assert (await owner.post("/roles", json={"name": name, "permissions": permissions})).status_code == 201
            grants = {role: perms for role, (_, perms) in BUILTIN_ROLES.items()} | {name: frozenset(permissions)}
            tokens = {}
            for role, scope in itertools.product(grants, BINDINGS):
                binding = {"role": role, **BINDINGS[scope]}
                tokens[role, scope] = await principal_token(admin, owner_token, f"{role}-{scope}", binding)
            yield Matrix(admin, owner, tokens, grants, itertools.count())
    finally:
        await admin.stop()
        server.stop()


def _id_of(kind: Kind, answer: dict[str, Any]) -> str:
    return str(answer.get("key", answer)["id"])  # create and rotate answer the key beside its secret


async def _target(m: Matrix, case: Case, uid: str) -> tuple[str, dict[str, Any]]:
    """The object the case changes, as the owner reads it."""
    kind = case.kind
    if kind.fixed is not None and case.action in ("put", "patch"):
        found = await m.owner.get(f"{kind.path}/{kind.fixed['id']}")
        return kind.fixed["id"], found.json()
    made = await m.owner.post(kind.path, json=kind.base(uid))
    assert made.status_code == 201, made.text
    record = made.json()
    return _id_of(kind, record), record["key"] if kind.name == "key" else record


def _request(case: Case, uid: str, target: str | None, before: dict[str, Any] | None) -> tuple[str, str, Any, Any]:
    """(method, path, body, the record as it would be after; None: deleted)."""
    kind, change = case.kind, {case.field: case.value} if case.field else {}
    item = f"{kind.path}/{target}"
    if case.action == "create":
        body = {**kind.base(uid), **change}
        return "POST", kind.path, body, body
    if case.action == "put":
        body = {k: v for k, v in {**(kind.fixed or kind.base(uid)), **change}.items() if k != "id"}
        return "PUT", item, body, {**body, "id": target}
    if case.action == "patch":
        return "PATCH", item, change, {**(before or {}), **change}
    if case.action == "delete":
        return "DELETE", item, None, None
    return "POST", f"{item}/{case.action}", None, before


async def _run(m: Matrix, case: Case) -> str | None:
    """ "made" or "refused" as the rule says, else what went wrong."""
    uid = f"m{next(m.serial)}"
    kind, permissions = case.kind, m.permissions[case.role] & SCOPABLE
    holds = kind.permission in permissions
    target, before = (await _target(m, case, uid)) if holds and case.action != "create" else ("nothing-here", None)
    method, path, body, after = _request(case, uid, target, before)
    expected = holds and all(lies_in(places(kind.name, r), case.scope) for r in (before, after) if r is not None)
    token = m.tokens[case.role, case.scope]
    answer = await m.owner.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
    said = f"{case.role}@{case.scope} {method} {path} {case.field}={case.value!r}: {answer.status_code}"
    try:
        if expected and answer.status_code >= 300:
            return f"{said}, expected it to be made: {answer.text[:200]}"
        if not expected:
            if answer.status_code != 403:
                return f"{said}, expected 403: {answer.text[:200]}"
            return await _unchanged(m, case, uid, target, before, said) or "refused"
        if after is not None and case.action != "revoke":
            made = answer.json()
            stored = await m.owner.get(f"{kind.path}/{_id_of(kind, made)}")
            if not lies_in(places(kind.name, stored.json()), case.scope):
                return f"{said}: made an object outside the scope: {stored.text[:200]}"
        return "made"
    finally:
        if kind.fixed is not None and case.action in ("put", "patch"):
            restore = {k: v for k, v in kind.fixed.items() if k != "id"}
            assert (await m.owner.put(f"{kind.path}/{kind.fixed['id']}", json=restore)).status_code == 200


async def _unchanged(
    m: Matrix, case: Case, uid: str, target: str, before: dict[str, Any] | None, said: str
) -> str | None:
    kind = case.kind
    if before is not None:
        now = (await m.owner.get(f"{kind.path}/{target}")).json()
        if {k: v for k, v in now.items() if k != "updated_at"} != {
            k: v for k, v in before.items() if k != "updated_at"
        }:
            return f"{said}: refused, yet the object changed: {now}"
    elif case.action == "create" and kind.name != "key":
        if (await m.owner.get(f"{kind.path}/{uid}")).status_code != 404:
            return f"{said}: refused, yet {uid} exists"
    return None


async def test_every_role_route_and_link_keeps_to_its_tenant(matrix: Matrix) -> None:
    cases = tenant_cases(list(matrix.permissions))
    outcomes = [await _run(matrix, case) for case in cases]
    wrong = [found for found in outcomes if found not in ("made", "refused")]
    assert not wrong, "\n".join(map(str, wrong[:25])) + f"\n({len(wrong)} of {len(cases)})"
    made = outcomes.count("made")
    assert made >= 150 and outcomes.count("refused") >= 1000, made  # both sides of the rule are walked
    # no key was minted outside the tenant by any case (a refused create leaves no key behind)
    for key in (await matrix.owner.get("/keys")).json():
        assert lies_in(places("key", key), "customer"), key
    roles, scopes, kinds = len(matrix.permissions), len(BINDINGS), len(KINDS)
    print(f"tenant matrix: {roles} roles x {scopes} scopes x {kinds} kinds' routes: {len(cases)} cases, {made} made")


def _global_routes(admin: AdminService) -> list[tuple[str, str, str]]:
    """(method, path, permission) of every mutating route that writes no tenant object."""
    assert admin.app is not None
    found = []
    tenant = {kind.path for kind in KINDS}
    for route in flat_routes(admin.app.routes):
        permission = permission_of(route) if isinstance(route, APIRoute) else None
        if permission is None or permission in SCOPABLE | NOT_ADMIN_CHANGES | {AUTHENTICATED, "public"}:
            continue
        if any(route.path.startswith(f"/admin/v1{path}") for path in tenant):
            continue
        found += [(m, route.path, permission) for m in sorted(route.methods) if m in ("POST", "PUT", "PATCH", "DELETE")]
    return found


async def test_no_scoped_principal_changes_a_global_object(matrix: Matrix) -> None:
    routes = _global_routes(matrix.admin)
    assert len(routes) >= 20, routes  # servers, providers, principals, roles, policies, pins (approvals: scopable)
    wrong = []
    async with httpx.AsyncClient(base_url=matrix.admin.url, timeout=30) as http:
        for (role, scope), token in matrix.tokens.items():
            for method, path, permission in routes:
                url = path.replace("{name:path}", "x").replace("{", "").replace("}", "")
                answer = await http.request(method, url, json={"?": 1}, headers={"Authorization": f"Bearer {token}"})
                if answer.status_code != 403 or answer.json().get("permission") != permission:
                    wrong.append(f"{role}@{scope} {method} {path}: {answer.status_code} {answer.text[:120]}")
    assert not wrong, "\n".join(wrong[:20])
    print(f"global routes: {len(matrix.tokens)} scoped principals x {len(routes)} routes")


async def test_a_scoped_import_of_another_tenants_key_writes_nothing(matrix: Matrix) -> None:
    token = matrix.tokens["tenant_admin", "customer"]
    yaml = f'keys:\n  - name: imported-b\n    team: team-b\n    key_sha256: "{"ab" * 32}"\n'
    answer = await matrix.owner.post("/config/apply", json={"yaml": yaml}, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403, answer.text
    assert "imported-b" not in {k["name"] for k in (await matrix.owner.get("/keys")).json()}


# ------------------------------------------------------------------ a key minted for another tenant


async def test_a_team_key_manager_cannot_mint_a_key_for_another_tenant(matrix: Matrix) -> None:
    """A key manager of team A minted keys naming team A and customer B, or team A and a
    user of team B (any one link in scope was enough), and those keys acted for the other tenant."""
    km = {"Authorization": f"Bearer {matrix.tokens['key_manager', 'team']}"}
    for sneaky in (
        {"name": "f4-customer", "team_id": "team-a", "customer_id": "globex"},
        {"name": "f4-user", "team_id": "team-a", "user_id": "ub"},
        {"name": "f4-group", "team_id": "team-a", "groups": ["g-globex"]},
    ):
        refused = await matrix.owner.post("/keys", json=sneaky, headers=km)
        assert refused.status_code == 403, refused.text
        assert refused.json()["permission"] == "keys:write"
        assert "team 'team-a'" in refused.json()["message"]
    made = await matrix.owner.post("/keys", json={"name": "f4-ok", "team_id": "team-a", "user_id": "ua"}, headers=km)
    assert made.status_code == 201, made.text
    moved = await matrix.owner.patch(f"/keys/{made.json()['key']['id']}", json={"customer_id": "globex"}, headers=km)
    assert moved.status_code == 403, moved.text
    names = {k["name"] for k in (await matrix.owner.get("/keys")).json()}
    assert "f4-ok" in names and not names & {"f4-customer", "f4-user", "f4-group"}


async def test_a_scoped_principal_sees_only_its_tenant(matrix: Matrix) -> None:
    headers = {"Authorization": f"Bearer {matrix.tokens['tenant_admin', 'customer']}"}
    teams = {t["id"] for t in (await matrix.owner.get("/teams", headers=headers)).json()}
    assert {"team-a", "team-a2"} <= teams and "team-b" not in teams
    groups = {g["id"] for g in (await matrix.owner.get("/groups", headers=headers)).json()}
    assert "g-acme" in groups and not groups & {"g-globex", "g-shared"}
    assert (await matrix.owner.get("/users/ub", headers=headers)).status_code == 403
    assert (await matrix.owner.get("/customers/globex", headers=headers)).status_code == 403
