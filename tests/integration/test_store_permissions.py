"""Every store operation each service makes, with its own credentials, on a nats-server secured
with the authorization `bastion up` renders (the ingress role once could not read the object
store, which only a timeout revealed, in production; non-owners once could update, and so
shrink, the audit stream).

`USES` states what each role's code does with each store, written from the services' code (not
from the permissions table): the operations run are the library calls the services make (KV
watches, gets, snapshots, writes, object store puts and takes, audit publishing and consuming,
declarations). Each must succeed, the server must log no violation, and every store a role does
not use must be refused to it at once (`BusPermissionError`, never a timeout). Then the attacks:
with each role's credentials, update, delete or purge every store it does not own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from cli.credentials import StackCredentials, make_credentials
from cli.stack import EmbeddedNats
from libs.common.audit.audit_chain import producer_id
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.bus.blobs import Blobs
from libs.common.bus.bus_client import BusPermissionError
from libs.common.bus.kvwatch import BucketWatch
from libs.common.bus.nats import connect, kv_bucket, kv_keys, kv_names, kv_snapshot
from libs.common.bus.permissions import ADMIN, AUDIT, CODEMODE, EXECUTOR, INGRESS, OAUTH, OWNERS, POLICY, ROLES
from libs.common.bus.stores import declare, declare_owned, owned_by
from libs.common.contracts import subjects as s
from libs.common.contracts.messages import AuditEvent
from libs.common.settings import StoreSettings

pytestmark = pytest.mark.integration

READ, WRITE = "read", "write"
DECIDE = "decide on pins"
"""The admin role on `bastion_pins`: reads everything, writes a person's decisions (`def.>`) and catalog
imports (`imported.>`), never an executor's record of a server's first listing (`baseline.>`)."""
BLOBS, PRODUCE, CONSUME = "blobs", "produce audit events", "consume audit events"

USES: dict[str, dict[str, str]] = {
    INGRESS: {
        s.KV_KEYS: READ,
        s.KV_CATALOG: READ,
        s.KV_POLICY: READ,
        s.KV_LLM: READ,
        s.KV_SESSIONS: WRITE,
        s.KV_OAUTH_PUBLIC: READ,
        s.KV_OAUTH_REVOKED: READ,
        s.OBJ_BLOBS: BLOBS,
        s.AUDIT_STREAM: PRODUCE,
    },
    ADMIN: {
        s.KV_KEYS: WRITE,
        s.KV_SERVERS: WRITE,
        s.KV_POLICY: WRITE,
        s.KV_LLM: WRITE,
        s.KV_CATALOG: READ,
        s.KV_ADMIN: WRITE,  # principals, token digests, sessions
        s.KV_PINS: DECIDE,
        s.KV_APPROVALS: WRITE,  # a person's approval or denial of a parked call
        s.KV_OAUTH_PUBLIC: READ,  # verifies the access token of a person's sign-in
        s.AUDIT_STREAM: PRODUCE,  # the admin changes, `bastion tools approve|reject`: naming who, on its own chain
    },
    POLICY: {
        s.KV_KEYS: READ,
        s.KV_POLICY: READ,
        s.KV_SERVERS: READ,
        s.KV_CATALOG: READ,  # tools' annotations, which Cedar policies read
        s.KV_APPROVALS: WRITE,  # calls parked for approval, and their runs
    },
    EXECUTOR: {s.KV_SERVERS: READ, s.KV_LLM: READ, s.KV_CATALOG: WRITE, s.KV_PINS: WRITE, s.OBJ_BLOBS: BLOBS},
    AUDIT: {s.AUDIT_STREAM: CONSUME, s.KV_KEYS: READ},  # events naming a key that does not exist are flagged
    CODEMODE: {s.KV_CATALOG: READ, s.OBJ_BLOBS: BLOBS, s.AUDIT_STREAM: PRODUCE},
    OAUTH: {
        s.KV_OAUTH: WRITE,
        s.KV_OAUTH_REGISTRATIONS: WRITE,
        s.KV_OAUTH_PUBLIC: WRITE,
        s.KV_OAUTH_REVOKED: WRITE,
        s.KV_OAUTH_UPSTREAM: WRITE,
        s.KV_POLICY: READ,
    },
}
BUCKETS = tuple(bucket for bucket in {b for uses in USES.values() for b in uses} if bucket.startswith("bastion_"))
KV_BUCKETS = tuple(b for b in BUCKETS if b != s.OBJ_BLOBS)


@dataclass
class Bus:
    server: EmbeddedNats
    creds: StackCredentials
    connections: dict[str, NATS]

    def violations(self) -> list[str]:
        return [line for line in self.server.log_path.read_text().splitlines() if "Violation" in line]


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[Bus]:
    """A secured server, one connection per role, and every store declared by its owner (with a
    value in every KV bucket, written by its owner) before the role under test runs."""
    creds = make_credentials(tmp_path, {})
    server = EmbeddedNats(tmp_path / "nats", authorization=creds.authorization).start()
    connections: dict[str, NATS] = {}
    try:
        for role in ROLES:
            connections[role] = await connect(
                server.url, f"test-{role}", role=role, nkey_seed_file=creds.seed_file(role)
            )
        for role in ROLES:
            await declare_owned(connections[role].jetstream(), role, StoreSettings())
        for stream, owner in OWNERS.items():
            if stream.startswith("KV_"):
                bucket = stream.removeprefix("KV_")
                await (await kv_bucket(connections[owner].jetstream(), bucket)).put("seed", b"by its owner")
        yield Bus(server, creds, connections)
    finally:
        for nc in connections.values():
            await nc.close()
        server.stop()


async def _watch_sees_the_seed(nc: NATS, bucket: str) -> None:
    seen: dict[str, bytes] = {}
    watch = BucketWatch(nc, bucket, lambda key, value, _rev: seen.update({key: value}), seen.pop)
    await watch.start()  # as every service watches a bucket it reads
    try:
        assert seen == {"seed": b"by its owner"}, bucket
    finally:
        await watch.stop()


async def _read(nc: NATS, bucket: str) -> None:
    js = nc.jetstream()
    await _watch_sees_the_seed(nc, bucket)
    kv = await kv_bucket(js, bucket)
    assert (await kv.get("seed")).value == b"by its owner"  # the oauth and admin stores' lookups
    assert await kv_keys(kv) == ["seed"]  # the listing of the oauth upstream store and the pin store
    assert list(await kv_snapshot(js, bucket)) == ["seed"]  # `bastion config apply`, the admin store
    assert await kv_names(js, bucket) == ["seed"]


async def _write(nc: NATS, bucket: str) -> None:
    await _read(nc, bucket)
    kv = await kv_bucket(nc.jetstream(), bucket)
    revision = await kv.create("made", b"1")  # each write the services make: oauth, admin, sessions, catalog
    revision = await kv.update("made", b"2", last=revision)
    await kv.put("made", b"3")
    await kv.delete("made", last=revision + 1)
    await kv.put("gone", b"1")
    await kv.purge("gone")


async def _decide(nc: NATS, bucket: str) -> None:
    await _read(nc, bucket)
    kv = await kv_bucket(nc.jetstream(), bucket)
    for key in ("def.bZ2l0aHVi.tool.bYWRk", "imported.bc29tZS1raWQ"):
        revision = await kv.create(key, b"1")
        await kv.update(key, b"2", last=revision)  # compare-and-set, as pin_store writes


async def _blobs(nc: NATS, other: NATS) -> None:
    """Store a payload for another role and take one it stored (arguments one way, results the other)."""
    mine, theirs = await Blobs.open(nc), await Blobs.open(other)
    payload = b"y" * (3 * 1024 * 1024)
    assert await theirs.take(await mine.put(payload, what="out"), len(payload)) == payload
    assert await mine.take(await theirs.put(payload, what="in"), len(payload)) == payload


async def _produce(nc: NATS, role: str) -> None:
    """Publish an event the way ingress and codemode do (on the role's own chain), and a dead letter."""
    publisher = AuditPublisher(nc, linger=0, producer=producer_id(role))
    await publisher.start()
    assert publisher.emit(AuditEvent(key_name="k", server="s", tool="t", name="s__t", status="ok", latency_ms=1))
    await publisher.aclose()
    assert publisher.published == 1 and publisher.pending == 0
    await nc.jetstream().publish(s.AUDIT_DEAD, b"not an event", headers={"Nats-Msg-Id": "dead-test"})


async def _consume(nc: NATS, producer: NATS) -> None:
    """Pull and acknowledge from the durable consumer, as the audit writer does."""
    await _produce(producer, INGRESS)
    js = nc.jetstream()
    sub = await js.pull_subscribe(f"{s.AUDIT_EVENTS}.>", durable="audit-writer", stream=s.AUDIT_STREAM)
    (msg,) = await sub.fetch(1, timeout=10)
    await msg.ack_sync()


async def _uses(bus: Bus, role: str) -> None:
    nc = bus.connections[role]
    for store, use in USES[role].items():
        if use == READ:
            await _read(nc, store)
        elif use == WRITE:
            await _write(nc, store)
        elif use == DECIDE:
            await _decide(nc, store)
        elif use == BLOBS:
            await _blobs(nc, bus.connections[EXECUTOR if role != EXECUTOR else INGRESS])
        elif use == PRODUCE:
            await _produce(nc, role)
        elif use == CONSUME:
            await _consume(nc, bus.connections[INGRESS])


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_does_what_its_service_does_and_is_refused_the_rest_at_once(bus: Bus, role: str) -> None:
    js = bus.connections[role].jetstream()
    # its own stores: created by the fixture, brought to other limits now (the update path)
    await declare_owned(js, role, StoreSettings(audit_stream_max_age=3600, blob_ttl=60))
    await _uses(bus, role)
    assert bus.violations() == [], f"{role} was refused something its service does"

    for bucket in KV_BUCKETS:
        if bucket not in USES[role]:
            with pytest.raises(BusPermissionError, match=role):
                await (await kv_bucket(js, bucket)).get("seed")
            with pytest.raises(BusPermissionError):
                await js.stream_info(s.kv_stream(bucket))
        elif USES[role][bucket] in (READ, DECIDE):
            with pytest.raises(BusPermissionError, match=r"\$kv\."):
                await (await kv_bucket(js, bucket)).put("forged", b"x")
        if USES[role].get(bucket) == DECIDE:  # a server's first listing is the executors' to record
            with pytest.raises(BusPermissionError, match=r"\$kv\."):
                await (await kv_bucket(js, bucket)).put("baseline.bZ2l0aHVi", b"x")
    if s.OBJ_BLOBS not in USES[role]:
        with pytest.raises(BusPermissionError):
            await (await Blobs.open(bus.connections[role])).take("result.any", 1024)


def _attempts(js: JetStreamContext, stream: str, config: StreamConfig) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "shrink": lambda: js.update_stream(config.evolve(max_msgs=1, num_replicas=1)),
        "delete": lambda: js.delete_stream(stream),
        "purge": lambda: js.purge_stream(stream),
        "create": lambda: js.add_stream(config),
    }


@pytest.mark.parametrize("role", ROLES)
async def test_no_role_but_the_owner_may_change_a_store_and_none_may_delete_one(bus: Bus, role: str) -> None:
    """The attack, for every store: the ingress and codemode credentials once shrank the audit
    stream to one message. With this role's credentials: update, delete, purge (and re-create)
    each store it does not own; all refused, the backlog intact."""
    await _produce(bus.connections[INGRESS], INGRESS)
    owner_js = bus.connections[AUDIT].jetstream()
    backlog = (await owner_js.stream_info(s.AUDIT_STREAM)).state.messages
    js = bus.connections[role].jetstream()
    for stream, owner in OWNERS.items():
        config = (await bus.connections[owner].jetstream().stream_info(stream)).config
        for what, attempt in _attempts(js, stream, config).items():
            if what == "purge" and stream == s.obj_stream(s.OBJ_BLOBS) and s.OBJ_BLOBS in USES[role]:
                continue  # its users delete objects by purging their chunks (a filtered purge)
            if owner == role and what in ("shrink", "create"):
                continue  # its owner's to change
            with pytest.raises(BusPermissionError):
                await attempt()
    assert (await owner_js.stream_info(s.AUDIT_STREAM)).state.messages == backlog
    assert (await owner_js.stream_info(s.AUDIT_STREAM)).config.max_msgs == -1


async def test_a_store_created_before_its_owner_by_another_role_is_refused(tmp_path: Path) -> None:
    """On a fresh server, no role but its owner may create a store (with a configuration of its
    choosing: memory storage, one message), even before the owner has started."""
    creds = make_credentials(tmp_path, {})
    server = EmbeddedNats(tmp_path / "nats", authorization=creds.authorization).start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            connections = {}
            for role in ROLES:
                nc = await connect(server.url, f"test-{role}", role=role, nkey_seed_file=creds.seed_file(role))
                stack.push_async_callback(nc.close)
                connections[role] = nc
            for role, nc in connections.items():
                for stream in OWNERS:
                    if OWNERS[stream] != role:
                        with pytest.raises(BusPermissionError):
                            await declare(nc.jetstream(), stream, StoreSettings())
            for role, nc in connections.items():
                declared = await declare_owned(nc.jetstream(), role, StoreSettings())
                assert sorted(c.name or "" for c in declared) == sorted(owned_by(role))
    finally:
        server.stop()
