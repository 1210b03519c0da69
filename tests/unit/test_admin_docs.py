"""docs/admin-api.md's permission and role tables are the code's: generated here from
`services.admin.roles` and the routes of the admin app itself (built without connecting anywhere),
and compared with the page. On a difference the assertion prints the table to paste."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from nats.aio.client import Client as NATS

from libs.common.settings import AdminSettings
from services.admin.api.errors import permission_of
from services.admin.api.outcome_rules import RULES
from services.admin.app import build_app
from services.admin.roles import AUTHENTICATED, BUILTIN_ROLES, PERMISSIONS, PUBLIC, SCOPABLE
from services.admin.routing import flat_routes

pytestmark = pytest.mark.unit

PAGE = Path(__file__).resolve().parents[2] / "docs" / "admin-api.md"


def _routes_by_permission() -> dict[str, list[str]]:
    app = build_app(NATS(), AdminSettings(), lambda event: None, lambda: "http://127.0.0.1:8421")
    found: dict[str, list[str]] = {}
    for route in flat_routes(app.routes):
        if isinstance(route, APIRoute) and (permission := permission_of(route)) is not None:
            for method in sorted(route.methods - {"HEAD"}):
                path = route.path.removeprefix("/admin/v1") if route.path.startswith("/admin/v1/") else route.path
                found.setdefault(permission, []).append(f"`{method} {path}`")
    return found


def permissions_table() -> str:
    routes = _routes_by_permission()
    roles = list(BUILTIN_ROLES)
    lines = [
        "| permission | opens | " + " | ".join(roles) + " | routes |",
        "|---|---|" + "---|" * len(roles) + "---|",
    ]
    for name, what in PERMISSIONS.items():
        held = " | ".join("✓" if name in BUILTIN_ROLES[role][1] else "" for role in roles)
        scoped = " (scopable)" if name in SCOPABLE else ""
        lines.append(f"| `{name}`{scoped} | {what} | {held} | {', '.join(routes.get(name, [])) or '-'} |")
    for marker, what in ((AUTHENTICATED, "any signed-in principal"), (PUBLIC, "no credential")):
        lines.append(f"| *{marker}* | {what} | {' | '.join('✓' for _ in roles)} | {', '.join(routes[marker])} |")
    return "\n".join(lines)


def _block(name: str) -> str:
    found = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", PAGE.read_text(), re.S)
    assert found, f"docs/admin-api.md has no {name} block"
    return found.group(1)


def test_the_permission_table_is_the_codes() -> None:
    expected = permissions_table()
    assert _block("permissions") == expected, f"paste into docs/admin-api.md:\n{expected}"


def test_every_route_is_in_the_table() -> None:
    documented = _block("permissions")
    for routes in _routes_by_permission().values():
        for route in routes:
            assert route in documented, route


def outcome_table() -> str:
    lines = ["| object | write needs | scope rule | why |", "|---|---|---|---|"]
    for rule in RULES.values():
        lines.append(f"| {rule.kind} | `{rule.permission}` | {rule.scope} | {rule.why} |")
    return "\n".join(lines)


def test_the_outcome_rule_table_is_the_codes() -> None:
    expected = outcome_table()
    assert _block("outcome-rules") == expected, f"paste into docs/admin-api.md:\n{expected}"
