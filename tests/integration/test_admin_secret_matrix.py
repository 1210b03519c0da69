"""Secrets are bound to their destination, proven by a generated matrix against a running admin service:
every role (the built-in ones and a custom one holding servers:write and providers:write) x every admin
route that writes a server or a provider (PUT and POST, the console's test, config plan and apply) x
every (secret field, destination field) pair an entry kind carries. The secret fields are the ones the
models mask (`map_secrets`, the OpenAPI auth types, a provider's `api_key`), the destination fields the
ones `secret_binding` binds them to (`server_destination`, `provider_destination`), plus the entry's name.

Each case stores the entry as the owner with a known secret, then sends it back as the role with the
secret masked and the destination moved to a recording listener: the write is refused (403, or 422
`secret_unbound` / `invalid_mask`) and the stored entry keeps its revision. Given again in clear, the
same move is made for a role that may make it. Unmoved, the masked entry is kept for every role holding
the permission. In every case neither the listener nor any response ever holds the stored secret.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cli.stack import EmbeddedNats
from libs.common.contracts.command_servers import owner_only_changes
from libs.common.contracts.config import ServerConfig
from libs.common.contracts.llm_config import ProviderConfig
from libs.common.contracts.openapi_config import _SECRET_FIELDS
from services.admin.api.secret_binding import MASK, provider_destination, server_destination
from services.admin.roles import COMMAND_PERMISSION
from tests.support.admin_api import RoleHolders, base_url, role_holders, running_admin
from tests.support.mcp_registry import LIVE, live_document, publish
from tests.support.processes import serving_process
from tests.support.recording_listener import Ear, recording

pytestmark = pytest.mark.integration

CUSTOM = ("secret_writer", frozenset({"servers:write", "providers:write"}))
NAME = "name"
"""The destination dimension that sends the entry under another name (a server or provider not stored)."""
SERVER_ROUTES = ("PUT /servers", "POST /servers", "POST /console/servers/test", "plan", "apply")
PROVIDER_ROUTES = ("PUT /llm-providers", "POST /llm-providers", "plan", "apply")


@dataclass(frozen=True, slots=True)
class EntryKind:
    name: str
    entry: Callable[[str, Ear], dict[str, Any]]
    """The entry carrying `secret` in its one secret field, its destinations at the home listener."""
    provider: bool = False

    def destinations(self, home: Ear) -> list[str]:
        """The destination fields of `secret_binding` this entry has (a dotted path present in it)."""
        sample = self.entry("s", home)
        fields = provider_destination(self.model(sample)) if self.provider else server_destination(self.model(sample))
        return [f for f in fields if _get(sample, f) is not None] + [NAME]

    def model(self, entry: dict[str, Any]) -> Any:
        return (ProviderConfig if self.provider else ServerConfig).model_validate(entry)

    def secrets(self, home: Ear) -> list[str]:
        if self.provider:
            return ["api_key"]
        found: list[str] = []
        self.model(self.entry("s", home)).map_secrets(lambda where, value: found.append(where) or value)
        return found


def _openapi(auth_type: str, secret_field: str) -> Callable[[str, Ear], dict[str, Any]]:
    extra = {
        "api_key": {"name": "X-Api-Key"},
        "basic": {"username": "bastion"},
        "oauth2_client_credentials": {"client_id": "bastion"},
    }.get(auth_type, {})

    def entry(secret: str, home: Ear) -> dict[str, Any]:
        auth = {"type": auth_type, secret_field: secret, **extra}
        if auth_type == "oauth2_client_credentials":
            auth["token_url"] = home.url("token")
        api = {"document": home.url("openapi.json"), "base_url": home.url("v1"), "auth": auth}
        return {"openapi": api, "disabled": True}

    return entry


KINDS = (
    EntryKind("http", lambda s, h: {"url": h.url("mcp"), "headers": {"Authorization": s}, "disabled": True}),
    EntryKind("sse", lambda s, h: {"url": h.url("sse"), "type": "sse", "headers": {"X-Key": s}, "disabled": True}),
    EntryKind(
        "stdio",
        lambda s, h: {"command": "python", "args": ["srv.py"], "cwd": "/srv", "env": {"TOKEN": s}, "disabled": True},
    ),
    *(
        EntryKind(f"openapi-{auth}", _openapi(auth, fields[0]))
        for auth, fields in _SECRET_FIELDS.items()
        if fields  # `oauth` stores no secret: the tokens are each user's
    ),
    EntryKind(
        "openapi-headers",
        lambda s, h: {"openapi": {"document": h.url("openapi.json"), "base_url": h.url("v1")}, "headers": {"X-K": s}},
    ),
    EntryKind("provider", lambda s, h: {"base_url": h.url("v1"), "api_key": s, "models": ["m-home"]}, provider=True),
)


def _get(entry: dict[str, Any], path: str) -> Any:
    found: Any = entry
    for part in path.split("."):
        found = found.get(part) if isinstance(found, dict) else None
    return found


def _moved(entry: dict[str, Any], path: str, ear: Ear) -> dict[str, Any]:
    """`entry` with the destination at `path` pointed at the attacker's listener `ear`."""
    moved: dict[str, Any] = yaml.safe_load(yaml.safe_dump(entry))  # a deep copy
    *parents, last = path.split(".")
    holder = moved
    for part in parents:
        holder = holder[part]
    value = {"command": "nc", "args": ["127.0.0.1", str(ear.port)], "cwd": "/tmp"}.get(last)
    holder[last] = value if value is not None else ear.url(last.replace("_", "-"))
    return moved


@dataclass
class Bench(RoleHolders):
    """A principal of each role, the admin API's URL, and the listeners entries are stored for or moved to."""

    url: str
    home: Ear
    ear: Ear
    bodies: list[str] = field(default_factory=list)
    serial: itertools.count[int] = field(default_factory=itertools.count)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A local MCP registry (tests/support/mcp_registry.py) over an empty folder a test publishes into."""
    folder = tmp_path_factory.mktemp("secret-matrix-registry")
    argv = [sys.executable, "-m", "tests.support.mcp_registry", str(folder)]
    with serving_process(argv, "the local MCP registry") as url:
        yield folder, url


@pytest.fixture(scope="module")
async def bench(tmp_path_factory: pytest.TempPathFactory, registry: tuple[Path, str]) -> AsyncIterator[Bench]:
    """One admin service (its console test may reach loopback, as the suite's egress allows), a principal
    of each role, the home listener the entries are stored for and the attacker's listener."""
    server = EmbeddedNats(tmp_path_factory.mktemp("secret-matrix") / "nats").start()
    try:
        async with (
            running_admin(server.url, registries={"local": registry[1]}) as (admin, owner),
            recording() as home,
            recording() as ear,
        ):
            holders = await role_holders(admin, owner, CUSTOM, "sm")
            yield Bench(holders.owner, holders.tokens, holders.permissions, base_url(admin), home, ear)
    finally:
        server.stop()


def _route(kind: EntryKind, route: str, name: str, entry: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    if route in ("plan", "apply"):
        section = {"llm": {"providers": {name: entry}}} if kind.provider else {"mcpServers": {name: entry}}
        return "POST", f"/config/{route}", {"yaml": yaml.safe_dump(section)}
    method, path = route.split(" ")
    if method == "PUT":
        return "PUT", f"{path}/{name}", {"config": entry}
    return "POST", path, {"name": name, "config": entry}


def _routes(kind: EntryKind, home: Ear) -> tuple[str, ...]:
    if kind.provider:
        return PROVIDER_ROUTES
    testable = kind.model(kind.entry("s", home)).transport in ("http", "sse")
    return tuple(r for r in SERVER_ROUTES if testable or "console" not in r)


@dataclass(frozen=True, slots=True)
class Case:
    role: str
    kind: EntryKind
    route: str
    secret: str
    destination: str


def secret_cases(b: Bench) -> list[Case]:
    return [
        Case(role, kind, route, secret, destination)
        for role, kind in itertools.product(b.permissions, KINDS)
        for route in _routes(kind, b.home)
        for secret in kind.secrets(b.home)
        for destination in kind.destinations(b.home)
        if not (route.startswith("PUT") and destination == NAME)  # a PUT's name is its path: another is a 404
    ]


class Walk:
    """Runs cases against the bench, one stored entry per kind (made again when a case changed it)."""

    def __init__(self, b: Bench, http: httpx.AsyncClient) -> None:
        self.b, self.http = b, http
        self.revision: dict[str, int] = {}

    def collection(self, kind: EntryKind) -> str:
        return "/llm-providers" if kind.provider else "/servers"

    async def send(self, token: str, method: str, path: str, body: Any) -> httpx.Response:
        answer = await self.http.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
        self.b.bodies.append(answer.text)
        return answer

    async def stored(self, kind: EntryKind, secret: str) -> None:
        """The kind's entry as the owner stores it, holding `secret` for the home listener."""
        path = f"{self.collection(kind)}/sm-{kind.name}"
        entry = kind.entry(secret, self.b.home)
        answer = await self.send(self.b.owner, "PUT", path, {"config": entry})
        if answer.status_code == 404:
            answer = await self.send(
                self.b.owner, "POST", self.collection(kind), {"name": f"sm-{kind.name}", "config": entry}
            )
        assert answer.status_code in (200, 201), answer.text
        self.revision[kind.name] = answer.json()["revision"]

    async def current(self, kind: EntryKind) -> int:
        found = await self.http.get(f"{self.collection(kind)}/sm-{kind.name}", headers=self._owner())
        assert found.status_code == 200, found.text
        return int(found.json()["revision"])

    def _owner(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.b.owner}"}

    async def forget(self, kind: EntryKind, name: str) -> None:
        await self.http.delete(f"{self.collection(kind)}/{name}", headers=self._owner())


def _holds(b: Bench, case: Case) -> bool:
    return ("providers:write" if case.kind.provider else "servers:write") in b.permissions[case.role]


def _owner_only(b: Bench, case: Case, moved: dict[str, Any]) -> bool:
    """Whether the moved entry sets a field only `servers:command` may set, which the role lacks."""
    if case.kind.provider or COMMAND_PERMISSION in b.permissions[case.role]:
        return False
    before = None if case.route.startswith("POST") or case.destination == NAME else case.kind.entry("s", b.home)
    model = case.kind.model
    return bool(owner_only_changes(model(before) if before else None, model(moved)))


async def masked_case(w: Walk, case: Case, secret: str) -> str | None:
    """The masked secret sent toward the listener: refused, nothing stored changed. None: as the rule says."""
    b, kind = w.b, case.kind
    masked = kind.entry(MASK, b.home)
    name = f"sm-{kind.name}" if case.destination != NAME else f"sm-other-{next(b.serial)}"
    moved = masked if case.destination == NAME else _moved(masked, case.destination, b.ear)
    if case.destination == NAME and not kind.provider:
        moved = _moved(moved, "url" if "url" in moved else next(iter(kind.destinations(b.home))), b.ear)
    if kind.provider and case.destination == NAME:
        moved = {**_moved(moved, "base_url", b.ear), "models": [f"m-{name}"]}  # a model has one provider
    method, path, body = _route(kind, case.route, name, moved)
    answer = await w.send(b.tokens[case.role], method, path, body)
    said = f"{case.role} {case.route} {kind.name} {case.secret} -> {case.destination}: {answer.status_code}"
    code = answer.status_code
    error = (
        answer.json().get("error") if answer.headers.get("content-type", "").startswith("application/json") else None
    )
    if not _holds(b, case):
        ok = code == 403
    elif case.route == "plan" and _owner_only(b, case, moved):
        ok = code in (403, 422) or (code == 200 and name in answer.json().get("needs_command", []))
    elif case.route == "POST /console/servers/test" and case.destination == NAME:
        ok = code == 200  # nothing stored under that name: the probe carries the mask itself, never the secret
    else:
        refusals = {"secret_unbound", "invalid_mask"} if case.destination != NAME else {"invalid_mask"}
        ok = (code == 403 and _owner_only(b, case, moved)) or (code == 422 and error in refusals)
        if COMMAND_PERMISSION in b.permissions[case.role] and case.destination != NAME and "POST /" not in case.route:
            ok = code == 422 and error == "secret_unbound"  # who may make every change is refused by the binding
    if await w.current(kind) != w.revision[kind.name]:
        await w.stored(kind, secret)
        return f"{said}: refused? the stored entry changed ({answer.text[:160]})"
    if case.destination == NAME:
        await w.forget(kind, name)
    return None if ok else f"{said}, not a refusal by the rule: {answer.text[:200]}"


async def clear_case(w: Walk, case: Case, secret: str) -> str | None:
    """The same move with the secret given again (a value of the role's own): made when the role may."""
    b, kind = w.b, case.kind
    own = f"own-value-{next(b.serial)}"
    entry = kind.entry(own, b.home)
    name = f"sm-{kind.name}" if case.destination != NAME else f"sm-other-{next(b.serial)}"
    moved = entry if case.destination == NAME else _moved(entry, case.destination, b.ear)
    if kind.provider and case.destination == NAME:
        moved = {**moved, "models": [f"m-{name}"]}  # a model has one provider
    method, path, body = _route(kind, case.route, name, moved)
    answer = await w.send(b.tokens[case.role], method, path, body)
    said = (
        f"{case.role} {case.route} {kind.name} {case.secret} -> {case.destination} (given again): {answer.status_code}"
    )
    code = answer.status_code
    if not _holds(b, case):
        ok = code == 403
    elif _owner_only(b, case, moved):
        ok = code == 403 or (case.route == "plan" and code == 200)
    elif case.route.startswith("POST /") and "console" not in case.route and case.destination != NAME:
        ok = code == 409  # the name is taken: a create never replaces
    else:
        ok = code in (200, 201)
    if await w.current(kind) != w.revision[kind.name]:
        await w.stored(kind, secret)
    if case.destination == NAME:
        await w.forget(kind, name)
    return None if ok else f"{said}: {answer.text[:200]}"


async def test_a_masked_secret_never_follows_a_moved_destination(bench: Bench) -> None:
    cases = secret_cases(bench)
    walked = {case.destination for case in cases}
    every = set(server_destination(ServerConfig(url="https://x.example/mcp"))) | {"base_url", NAME}
    assert every - walked == {"openapi.auth.resource"}  # only the `oauth` auth type has it, and it stores no secret
    async with httpx.AsyncClient(base_url=bench.url, timeout=60) as http:
        walk = Walk(bench, http)
        secrets = {kind.name: f"stored-secret-of-the-owner-{kind.name}-0123456789" for kind in KINDS}
        for kind in KINDS:
            await walk.stored(kind, secrets[kind.name])
        wrong = [await masked_case(walk, case, secrets[case.kind.name]) for case in cases]
        wrong += [await clear_case(walk, case, secrets[case.kind.name]) for case in cases]
    wrong = [found for found in wrong if found is not None]
    assert not wrong, "\n".join(wrong[:25]) + f"\n({len(wrong)} of {2 * len(cases)})"
    heard = b"".join(bench.ear.heard)
    assert heard, "the console's test reached the listener with the secrets given again"
    for secret in secrets.values():
        assert secret.encode() not in heard
        assert not [body for body in bench.bodies if secret in body]
    kinds = {case.kind.name for case in cases}
    fields = {(case.kind.name, case.secret, case.destination) for case in cases}
    print(
        f"secret matrix: {len(bench.permissions)} roles x {len(kinds)} entry kinds' routes x (secret, destination)"
        f" pairs: {len(cases)} cases ({len(fields)} pairs), each masked and given again"
    )


async def test_a_masked_secret_stays_with_its_destination_for_whoever_may_write(bench: Bench) -> None:
    async with httpx.AsyncClient(base_url=bench.url, timeout=60) as http:
        walk = Walk(bench, http)
        wrong = []
        for role, kind in itertools.product(bench.permissions, KINDS):
            secret = f"kept-secret-{kind.name}-0123456789"
            await walk.stored(kind, secret)
            tweak = {"retries": 1} if kind.provider else {"timeout": 30}
            for route in _routes(kind, bench.home):
                if route.startswith("POST /") and "console" not in route:
                    continue  # a create has nothing stored to keep
                kept = {**kind.entry(MASK, bench.home), **tweak}
                method, path, body = _route(kind, route, f"sm-{kind.name}", kept)
                answer = await walk.send(bench.tokens[role], method, path, body)
                holds = _holds(bench, Case(role, kind, route, "", ""))
                if answer.status_code != (200 if holds else 403):
                    wrong.append(f"{role} {route} {kind.name} (unmoved): {answer.status_code} {answer.text[:160]}")
                if await walk.current(kind) != walk.revision[kind.name]:
                    await walk.stored(kind, secret)
            assert not [body for body in bench.bodies if secret in body]
    assert not wrong, "\n".join(wrong[:25])
    home = b"".join(bench.home.heard)
    assert b"kept-secret-http-" in home and b"kept-secret-sse-" in home  # released where it was stored for


async def test_a_registry_update_carries_no_stored_secret_to_a_moved_remote(
    bench: Bench, registry: tuple[Path, str]
) -> None:
    """The registry's newer version points the remote at the attacker's listener: the stored header,
    carried over rather than given again, is refused for every role that may approve an update."""
    folder, _ = registry
    publish(folder, live_document(bench.home.url("mcp"), "1.0.0"), "home.json")
    publish(folder, live_document(bench.ear.url("registry"), "2.0.0"), "moved.json")
    secret = "Bearer stored-registry-secret-0123456789"
    owner = {"Authorization": f"Bearer {bench.owner}"}
    async with httpx.AsyncClient(base_url=bench.url, timeout=60) as http:
        body = {"registry": "local", "server": LIVE, "name": "sm-registry", "values": {"Authorization": secret}}
        body["version"] = "1.0.0"
        made = await http.post("/servers/import", json=body, headers=owner)
        assert made.status_code == 201, made.text
        revision, wrong = made.json()["revision"], []
        for role, token in bench.tokens.items():
            holds = "servers:write" in bench.permissions[role]
            for values in ({}, {"Authorization": f"Bearer own-{role}"}):
                answer = await http.post(
                    "/servers/sm-registry/registry-update",
                    json={"version": "2.0.0", "values": values},
                    headers={"Authorization": f"Bearer {token}"},
                )
                bench.bodies.append(answer.text)
                expected = 403 if not holds else 200 if values else 422
                if answer.status_code != expected or (expected == 422 and answer.json()["error"] != "secret_unbound"):
                    wrong.append(f"{role} registry-update values={sorted(values)}: {answer.status_code} {answer.text}")
                now = (await http.get("/servers/sm-registry", headers=owner)).json()["revision"]
                if now != revision and expected != 200:
                    wrong.append(f"{role} registry-update values={sorted(values)}: refused, yet the entry changed")
                if now != revision:  # back to the owner's version and secret
                    back = {"version": "1.0.0", "values": {"Authorization": secret}}
                    reset = await http.post("/servers/sm-registry/registry-update", json=back, headers=owner)
                    assert reset.status_code == 200, reset.text
                    revision = reset.json()["revision"]
    assert not wrong, "\n".join(wrong)
    assert not [body for body in bench.bodies if secret in body]
    assert secret.encode() not in b"".join(bench.ear.heard)
