"""Two tenants in the admin directory, and where each of their objects lies: what the tenant matrix
(tests/integration/test_admin_outcome_matrix.py) and the tenant property test judge outcomes by.

`acme` holds teams `team-a` and `team-a2`, `globex` holds `team-b`; each team has a user, `loner` has
no team; `g-acme` and `g-globex` are the tenants' tool groups, `g-shared` everyone's. The scope rule is
stated here again, plainly and apart from the code under test: a principal bound to customer `acme`
reaches what lies wholly in acme; one bound to `team-a` what lies in team-a (a link naming acme
alone is allowed beside a link into team-a).
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["LINK_VALUES", "PLACE", "directory_of", "lies_in", "places", "seed_tenants"]

Place = tuple[str | None, str | None]

PLACE: dict[tuple[str, str], Place | None] = {
    ("customer", "acme"): ("acme", None),
    ("customer", "globex"): ("globex", None),
    ("team", "team-a"): ("acme", "team-a"),
    ("team", "team-a2"): ("acme", "team-a2"),
    ("team", "team-b"): ("globex", "team-b"),
    ("user", "ua"): ("acme", "team-a"),
    ("user", "ua2"): ("acme", "team-a2"),
    ("user", "ub"): ("globex", "team-b"),
    ("user", "loner"): (None, None),
    ("group", "g-acme"): ("acme", None),
    ("group", "g-globex"): ("globex", None),
    ("group", "g-shared"): None,
}
"""(kind, id) -> (customer, team) it lies in; None: shared, in every tenant and none."""

LINK_VALUES: dict[str, list[Any]] = {
    "customer_id": ["acme", "globex", None],
    "team_id": ["team-a", "team-a2", "team-b", None],
    "user_id": ["ua", "ua2", "ub", "loner"],
    "groups": [["g-acme"], ["g-globex"], ["g-shared"]],
}
"""Each field that can carry a scope link, and the values tried in it."""

_LINK_KIND = {"customer_id": "customer", "team_id": "team", "user_id": "user"}


def directory_of(records: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], Place | None]:
    """`PLACE` for the directory as it is: (kind, id) -> its record, as the owner reads them."""
    found: dict[tuple[str, str], Place | None] = {}
    for (kind, record_id), record in records.items():
        if kind == "customer":
            found[kind, record_id] = (record_id, None)
        elif kind == "team":
            found[kind, record_id] = (record.get("customer_id"), record_id)
        elif kind == "group":
            found[kind, record_id] = (record["customer_id"], None) if record.get("customer_id") else None
    for (kind, record_id), record in records.items():
        if kind == "user":
            team = record.get("team_id")
            found[kind, record_id] = (found.get(("team", team)) or (None, team)) if team else (None, None)
    return found


def places(
    kind: str, record: dict[str, Any], directory: dict[tuple[str, str], Place | None] | None = None
) -> list[Place]:
    """Where every scope link of `record` (an admin API answer) lies, in `directory` (default: the seed's)."""
    where = PLACE if directory is None else directory
    found: list[Place] = []
    if kind == "customer":
        found.append((record["id"], None))
    elif kind == "team":
        found.append((record.get("customer_id"), record["id"]))
    elif kind == "group" and record.get("customer_id"):
        found.append((record["customer_id"], None))
    elif kind == "user":
        team = record.get("team_id")
        found.append((where.get(("team", team)) or (None, team)) if team else (None, None))
    elif kind == "key":
        for field, link in _LINK_KIND.items():
            if record.get(field):
                found.append(where.get((link, record[field])) or _dangling(link, record[field]))
    for group in record.get("groups") or []:
        if (place := where.get(("group", group))) is not None:
            found.append(place)
    return found


def _dangling(link: str, record_id: str) -> Place:
    """Where a link to a record that is not there lies: a team in no customer, else nowhere."""
    return (None, record_id) if link == "team" else (None, None)


def lies_in(found: list[Place], scope: str) -> bool:
    """Whether an object with these places lies wholly inside `scope` (`customer` acme or `team` team-a)."""
    if not found:
        return False
    if scope == "customer":
        return all(customer == "acme" for customer, _ in found)
    return any(team == "team-a" for _, team in found) and all(p in {("acme", "team-a"), ("acme", None)} for p in found)


async def seed_tenants(http: httpx.AsyncClient) -> None:
    """The two tenants, made by an owner (`http` carries its token)."""
    writes: list[tuple[str, dict[str, Any]]] = [
        ("/customers", {"id": "acme", "name": "Acme"}),
        ("/customers", {"id": "globex", "name": "Globex"}),
        ("/teams", {"id": "team-a", "name": "A", "customer_id": "acme"}),
        ("/teams", {"id": "team-a2", "name": "A2", "customer_id": "acme"}),
        ("/teams", {"id": "team-b", "name": "B", "customer_id": "globex"}),
        ("/users", {"id": "ua", "name": "ua", "team_id": "team-a"}),
        ("/users", {"id": "ua2", "name": "ua2", "team_id": "team-a2"}),
        ("/users", {"id": "ub", "name": "ub", "team_id": "team-b"}),
        ("/users", {"id": "loner", "name": "loner"}),
        ("/groups", {"id": "g-acme", "customer_id": "acme"}),
        ("/groups", {"id": "g-globex", "customer_id": "globex"}),
        ("/groups", {"id": "g-shared"}),
    ]
    for path, body in writes:
        made = await http.post(path, json=body)
        assert made.status_code == 201, made.text
