"""Property: random sequences of admin changes by a principal scoped to a team or a customer never
leave an object outside its scope. Hypothesis draws who acts (a custom role holding every tenant
permission, bound to team `team-a` or to customer `acme`), then creates, changes and deletes of keys,
users, teams, tool groups and customers with random links, aimed at any object of either tenant.
After every step the directory, as the owner reads it, differs from before only in objects lying
wholly inside the actor's scope, as they were and as they are (tests/support/tenants.py).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.common.web.guarded_http import shared_tls
from services.admin.roles import SCOPABLE
from services.admin.service import AdminService
from tests.support.admin_api import base_url, principal_token, running_admin
from tests.support.replayable import replayable
from tests.support.tenants import LINK_VALUES, directory_of, lies_in, places, seed_tenants

pytestmark = pytest.mark.integration

PATHS = {"key": "/keys", "user": "/users", "team": "/teams", "group": "/groups", "customer": "/customers"}
FIELDS = {
    "key": ("customer_id", "team_id", "user_id", "groups"),
    "user": ("team_id", "groups"),
    "team": ("customer_id", "groups"),
    "group": ("customer_id",),
    "customer": ("groups",),
}
_VOLATILE = {"revision", "updated_at"}


@dataclass(frozen=True, slots=True)
class Change:
    kind: str
    action: str
    links: dict[str, Any]
    pick: int
    """Which existing object a change or a delete aims at (modulo how many there are)."""


@st.composite
def change(draw: st.DrawFn) -> Change:
    kind = draw(st.sampled_from(sorted(PATHS)))
    action = draw(st.sampled_from(("create", "patch", "delete")))
    fields = draw(st.lists(st.sampled_from(FIELDS[kind]), unique=True, max_size=len(FIELDS[kind])))
    links = {field: draw(st.sampled_from(LINK_VALUES[field])) for field in fields}
    return Change(kind, action, links, draw(st.integers(0, 10_000)))


Snapshot = dict[tuple[str, str], dict[str, Any]]


def _snapshot(owner: httpx.Client) -> Snapshot:
    found: Snapshot = {}
    for kind, path in PATHS.items():
        for record in owner.get(path).json():
            found[kind, record["id"]] = {k: v for k, v in record.items() if k not in _VOLATILE}
    return found


def _body(kind: str, serial: int, links: dict[str, Any]) -> dict[str, Any]:
    """A new object of `kind` in team-a (or acme, for what a team cannot hold), `links` drawn over it."""
    name = f"p{serial}"
    home = {"key": {"team_id": "team-a"}, "user": {"team_id": "team-a"}}.get(kind, {"customer_id": "acme"})
    named = {"key": {"name": name}, "group": {"id": name}}.get(kind, {"id": name, "name": name})
    return named | ({} if kind == "customer" else home) | links


def _apply(actor: httpx.Client, owner_view: Snapshot, step: Change, serial: int) -> int:
    """Make one change as `actor`; its status."""
    if step.action == "create":
        return actor.post(PATHS[step.kind], json=_body(step.kind, serial, step.links)).status_code
    targets = sorted(record_id for kind, record_id in owner_view if kind == step.kind)
    if not targets:
        return 0
    item = f"{PATHS[step.kind]}/{targets[step.pick % len(targets)]}"
    if step.action == "patch":
        return actor.patch(item, json=step.links).status_code
    return actor.delete(item).status_code


def _outside(before: Snapshot, after: Snapshot, scope: str) -> list[str]:
    """The objects that changed though they lie outside `scope`, as they were or as they are."""
    then, now = directory_of(before), directory_of(after)
    wrong = []
    for kind, record_id in before.keys() | after.keys():
        old, new = before.get((kind, record_id)), after.get((kind, record_id))
        if old == new:
            continue
        for record, where in ((old, then), (new, now)):
            if record is not None and not lies_in(places(kind, record, where), scope):
                wrong.append(f"{kind} {record_id}: {old} -> {new}")
    return wrong


def _property(base: str, owner_token: str, tokens: dict[str, str], examples: int) -> tuple[list[str], int]:
    """What went wrong, and how many changes were made (not refused)."""
    failures: list[str] = []
    made = 0
    serial = itertools.count()
    tls = shared_tls()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {owner_token}"}, verify=tls) as owner:

        @replayable(examples)
        @given(scope=st.sampled_from(sorted(tokens)), steps=st.lists(change(), min_size=1, max_size=6))
        def run(scope: str, steps: list[Change]) -> None:
            headers = {"Authorization": f"Bearer {tokens[scope]}"}
            with httpx.Client(base_url=base, headers=headers, verify=tls) as actor:
                nonlocal made
                for step in steps:
                    before = _snapshot(owner)
                    status = _apply(actor, before, step, next(serial))
                    made += 200 <= status < 300
                    if status >= 500:
                        failures.append(f"{scope} {step}: {status}")
                    failures.extend(f"{scope} {step}: {w}" for w in _outside(before, _snapshot(owner), scope))

        run()
    return failures, made


@pytest.fixture
async def tenants(nats_url: str) -> AsyncIterator[tuple[AdminService, str, dict[str, str]]]:
    async with running_admin(nats_url) as (admin, owner):
        headers = {"Authorization": f"Bearer {owner}"}
        async with httpx.AsyncClient(base_url=base_url(admin), headers=headers, verify=shared_tls()) as http:
            await seed_tenants(http)
            made = await http.post("/roles", json={"name": "tenant_admin", "permissions": sorted(SCOPABLE)})
            assert made.status_code == 201, made.text
        tokens = {
            "team": await principal_token(admin, owner, "ta-team", {"role": "tenant_admin", "team_id": "team-a"}),
            "customer": await principal_token(admin, owner, "ta-acme", {"role": "tenant_admin", "customer_id": "acme"}),
        }
        yield admin, owner, tokens


async def test_scoped_changes_never_leave_an_object_outside_the_scope(
    tenants: tuple[AdminService, str, dict[str, str]],
) -> None:
    admin, owner, tokens = tenants
    # blocking HTTP from a worker thread while this loop serves it; the bound is a hang guard, not a speed bar
    failures, made = await asyncio.wait_for(asyncio.to_thread(_property, base_url(admin), owner, tokens, 30), 600)
    assert not failures, "\n".join(failures[:10])
    print(f"tenant property: {made} changes made")
    assert made >= 10, made  # the sequences change things inside the scope too, not only knock on walls
