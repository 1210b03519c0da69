"""The admin API's permissions and roles as pure functions: what bindings grant, what nobody may
hand out, and that a route cannot exist without declaring a permission."""

from __future__ import annotations

import pytest
from fastapi import APIRouter

from libs.common.contracts.admin_principals import RoleBinding
from services.admin.api.admin_route import AdminRoute
from services.admin.api.errors import needs
from services.admin.login import safe_next
from services.admin.roles import BUILTIN_ROLES, PERMISSIONS, SCOPABLE, Grants, Scope, grants_of, missing_to_grant

pytestmark = pytest.mark.unit


def test_a_scoped_binding_grants_only_key_permissions_and_only_there() -> None:
    grants = grants_of([RoleBinding(role="owner", team_id="a")], {})
    assert grants.everywhere == frozenset()
    assert set(grants.scoped) == SCOPABLE
    assert grants.allows_in("keys:write", Scope("team", "a"))
    assert not grants.allows_in("keys:write", Scope("team", "b"))
    assert not grants.allows("servers:write") and not grants.allows("principals:write")


def test_bindings_add_up_and_everywhere_wins_over_a_scope() -> None:
    grants = grants_of([RoleBinding(role="key_manager", team_id="a"), RoleBinding(role="viewer")], {})
    assert grants.scopes("keys:read") is None  # the viewer reads every key
    assert grants.scopes("keys:write") == frozenset({Scope("team", "a")})
    custom = grants_of([RoleBinding(role="mine")], {"mine": frozenset({"tools:approve"})})
    assert custom.everywhere == {"tools:approve"}
    assert grants_of([RoleBinding(role="gone")], {}) == Grants()  # a deleted role grants nothing


def test_nobody_grants_what_they_do_not_hold() -> None:
    operator = grants_of([RoleBinding(role="operator")], {})
    assert missing_to_grant(operator, [RoleBinding(role="viewer")], {}) is None
    assert missing_to_grant(operator, [RoleBinding(role="owner")], {}) is not None
    assert missing_to_grant(operator, [RoleBinding(role="key_manager")], {}) == ("keys:write", None)
    km_a = grants_of([RoleBinding(role="key_manager", team_id="a")], {})
    assert missing_to_grant(km_a, [RoleBinding(role="key_manager", team_id="a")], {}) is None
    assert missing_to_grant(km_a, [RoleBinding(role="key_manager", team_id="b")], {}) == (
        "keys:read",
        Scope("team", "b"),
    )


def test_every_role_holds_only_documented_permissions() -> None:
    for name, (description, permissions) in BUILTIN_ROLES.items():
        assert description and permissions <= set(PERMISSIONS), name
    assert BUILTIN_ROLES["owner"][1] == set(PERMISSIONS)
    assert "tools:approve" in PERMISSIONS  # the supply-chain work's approvals


def test_a_route_without_a_permission_is_refused_when_built() -> None:
    router = APIRouter(route_class=AdminRoute)
    with pytest.raises(ValueError, match="declares no permission"):

        @router.get("/admin/v1/forgotten")
        async def forgotten() -> None: ...

    with pytest.raises(ValueError, match="not a permission"):
        needs("keys:wirte")


def test_a_binding_is_scoped_to_a_team_or_a_customer_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        RoleBinding(role="key_manager", team_id="a", customer_id="b")
    assert RoleBinding(role="key_manager", customer_id="acme").label() == "key_manager@customer:acme"


@pytest.mark.parametrize(
    ("asked", "goes"),
    [
        ("/dashboard", "/dashboard"),
        ("/admin/v1/me?x=1", "/admin/v1/me?x=1"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        (None, "/"),
        ("dashboard", "/"),
    ],
)
def test_after_signing_in_only_this_service_is_a_destination(asked: str | None, goes: str) -> None:
    assert safe_next(asked) == goes
