"""Tamper evidence against the real store: events from a publisher land on its hash chain in chdb,
`bastion audit verify` (the audit service over NATS) says OK, and each way of tampering with the
stored rows (modify, delete, insert, reorder, rewrite-and-rehash) is named with the row it hit.
A journal replay after a kill keeps each event's place on the chain of the process that emitted it.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from rich.console import Console

from cli.audit import verify
from libs.common.audit.audit_chain import event_hash
from libs.common.audit.audit_journal import STOPPED, AuditJournal
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.bus.nats import kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, AuditVerdict, AuditVerify, KeyRecord
from libs.common.settings import AuditSettings
from services.audit import AuditService
from services.audit.schema import TABLE, to_row
from tests.support.polling import poll_until
from tests.support.stores import declared

pytestmark = pytest.mark.integration

EVENTS = 12
PRODUCER = "ingress-chain-test"
WAIT = 60.0


@pytest.fixture
async def service(nats_url: str, tmp_path: Path) -> AsyncIterator[AuditService]:
    settings = AuditSettings(
        nats_url=nats_url,
        clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}",
        batch_size=100,
        flush_interval=0.05,
        checkpoint_key="a-test-checkpoint-key-of-32-bytes",
        checkpoint_interval=3600,  # taken explicitly below, so the test controls when
    )
    audit = AuditService(settings)
    await audit.start()
    yield audit
    await audit.stop()


@pytest.fixture
async def chain(nc: NATS, service: AuditService) -> list[AuditEvent]:
    """EVENTS events published on one chain, stored, and a checkpoint signed over them; in seq order."""
    async with AuditPublisher(nc, producer=PRODUCER) as publisher:
        for i in range(EVENTS):
            publisher.emit(
                AuditEvent(key_name="ci", server="notes", tool=f"t{i}", name=f"notes__t{i}", status="ok", latency_ms=i)
            )

        async def all_stored() -> bool:
            return await asyncio.to_thread(service.store.count) == EVENTS

        await poll_until(all_stored, f"{EVENTS} events stored", within=WAIT)
    assert await asyncio.to_thread(service.auditor.checkpoint) == 1
    return await asyncio.to_thread(service.store.chain, PRODUCER, None)


async def ask(nc: NATS, since: float | None = None) -> AuditVerdict:
    reply = await nc.request(subjects.AUDIT_VERIFY, AuditVerify(since=since).model_dump_json().encode(), timeout=30)
    return AuditVerdict.model_validate_json(reply.data)


def tamper(service: AuditService, sql: str) -> Awaitable[None]:
    return asyncio.to_thread(service.store.command, f"{sql} SETTINGS mutations_sync = 1")


async def test_an_untouched_trail_verifies_with_its_chain_and_checkpoint(nc: NATS, chain: list[AuditEvent]) -> None:
    assert [event.seq for event in chain] == list(range(1, EVENTS + 1))
    assert chain[0].prev_hash == ""
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(chain))
    verdict = await ask(nc)
    assert verdict.ok, verdict.detail
    assert (verdict.chains, verdict.events, verdict.checkpoints) == (1, EVENTS, 1)


async def test_the_cli_reports_ok_then_names_a_modified_row(
    nats_url: str, service: AuditService, chain: list[AuditEvent]
) -> None:
    out = io.StringIO()
    assert await verify(nats_url, None, Console(file=out, width=200)) == 0
    assert "OK" in out.getvalue()
    target = chain[4]
    await tamper(service, f"ALTER TABLE {TABLE} UPDATE error = 'nothing happened' WHERE event_id = '{target.event_id}'")
    out = io.StringIO()
    assert await verify(nats_url, None, Console(file=out, width=400)) == 1
    assert "modified" in out.getvalue()
    assert target.event_id in out.getvalue()


async def test_a_modified_row_is_named(nc: NATS, service: AuditService, chain: list[AuditEvent]) -> None:
    target = chain[4]
    await tamper(service, f"ALTER TABLE {TABLE} UPDATE latency_ms = 0.001 WHERE event_id = '{target.event_id}'")
    verdict = await ask(nc)
    assert (verdict.ok, verdict.problem, verdict.event_id, verdict.seq) == (False, "modified", target.event_id, 5)


async def test_a_deleted_row_is_named_by_its_place_on_the_chain(
    nc: NATS, service: AuditService, chain: list[AuditEvent]
) -> None:
    await tamper(service, f"ALTER TABLE {TABLE} DELETE WHERE event_id = '{chain[6].event_id}'")
    verdict = await ask(nc)
    assert (verdict.ok, verdict.problem, verdict.producer, verdict.seq) == (False, "deleted", PRODUCER, 7)


async def test_a_deleted_tail_is_caught_by_the_checkpoint(
    nc: NATS, service: AuditService, chain: list[AuditEvent]
) -> None:
    await tamper(service, f"ALTER TABLE {TABLE} DELETE WHERE event_id = '{chain[-1].event_id}'")
    verdict = await ask(nc)
    assert (verdict.ok, verdict.problem, verdict.seq) == (False, "deleted", EVENTS)


async def test_an_inserted_row_is_named(nc: NATS, service: AuditService, chain: list[AuditEvent]) -> None:
    forged = chain[3].model_copy(update={"event_id": "forged-event", "tool": "t_forged", "name": "notes__t_forged"})
    await asyncio.to_thread(service.store.insert, [to_row(forged)])
    verdict = await ask(nc)
    assert (verdict.ok, verdict.problem, verdict.event_id) == (False, "inserted", "forged-event")


async def test_reordered_rows_are_named(nc: NATS, service: AuditService, chain: list[AuditEvent]) -> None:
    first, second = chain[2], chain[3]
    await tamper(
        service,
        f"ALTER TABLE {TABLE} UPDATE seq = if(event_id = '{first.event_id}', 4, 3) "
        f"WHERE event_id IN ('{first.event_id}', '{second.event_id}')",
    )
    verdict = await ask(nc)
    assert (verdict.ok, verdict.problem, verdict.event_id) == (False, "reordered", second.event_id)


async def test_a_rewritten_and_rehashed_chain_fails_its_signed_checkpoint(
    nc: NATS, service: AuditService, chain: list[AuditEvent]
) -> None:
    """Whoever can write the table can recompute every sha256; only the checkpoint key holder can sign."""
    rewritten: list[AuditEvent] = []
    prev = chain[1].hash
    for event in chain[2:]:
        changed = event.model_copy(update={"prev_hash": prev, "status": "error" if event.seq == 3 else event.status})
        changed.hash = event_hash(changed)
        rewritten.append(changed)
        prev = changed.hash
    ids = ", ".join(f"'{event.event_id}'" for event in chain[2:])
    await tamper(service, f"ALTER TABLE {TABLE} DELETE WHERE event_id IN ({ids})")
    await asyncio.to_thread(service.store.insert, [to_row(event) for event in rewritten])
    verdict = await ask(nc)
    assert (verdict.ok, verdict.problem, verdict.seq) == (False, "modified", EVENTS)
    assert "checkpoint" in (verdict.detail or "")


async def test_since_checks_from_a_point_in_time_taking_the_first_row_on_trust(
    nc: NATS, service: AuditService, chain: list[AuditEvent]
) -> None:
    await tamper(service, f"ALTER TABLE {TABLE} DELETE WHERE event_id = '{chain[0].event_id}'")
    assert (await ask(nc)).problem == "deleted"
    verdict = await ask(nc, since=chain[1].ts)
    assert verdict.ok, verdict.detail
    assert verdict.events == EVENTS - 1


def _event(i: int) -> AuditEvent:
    return AuditEvent(key_name="ci", server="notes", tool=f"t{i}", name=f"notes__t{i}", status="ok", latency_ms=i)


async def test_a_replayed_journal_keeps_each_event_on_the_chain_that_emitted_it(
    nc: NATS, service: AuditService, tmp_path: Path
) -> None:
    """Events are linked when emitted, before the journal writes them down: linked when published
    instead, a replay would put them on the new process's chain and leave a hole in the old one.

    Process A journals and links six events and dies (its journal descriptors closed as SIGKILL
    leaves them) having published only the first three, without their ack reaching the journal; one
    more request had begun without an event. Process B replays the journal: the six keep A's
    producer, seq and hash (the three already stored collapse with their copies), the request without
    an event starts B's chain, and every chain verifies."""
    await declared(nc.jetstream(), subjects.KV_KEYS)  # as its owner, the admin role, would
    keys = await kv_bucket(nc.jetstream(), subjects.KV_KEYS)
    await keys.put("id-1", KeyRecord(id="id-1", name="ci").model_dump_json().encode())  # the key of the cut call
    await poll_until(lambda: service.keys("id-1"), "the audit service knows key id-1", within=WAIT)
    directory = tmp_path / "journal"
    journal_a = AuditJournal(directory)
    publisher_a = AuditPublisher(nc, producer="ingress-a", journal=journal_a)  # never started: nothing published
    for i in range(6):
        assert publisher_a.emit(_event(i))
    journal_a.begun("tool_call", "notes__cut", "id-1", "ci", None, 10)
    os.close(journal_a._fd)  # the kill: the kernel closes the descriptors, nothing else happens
    os.close(journal_a._lock)
    linked = [event for event, _, _ in publisher_a._waiting]  # what A would have published
    assert [event.seq for event in linked] == [1, 2, 3, 4, 5, 6]

    # what A published before dying (linked events keep their links through any publisher)
    async with AuditPublisher(nc, producer="ingress-elsewhere") as early:
        for event in linked[:3]:
            early.emit(event)

        async def three_stored() -> bool:
            return await asyncio.to_thread(service.store.count) == 3

        await poll_until(three_stored, "A's first three events stored", within=WAIT)

    journal_b = AuditJournal(directory)
    async with AuditPublisher(nc, producer="ingress-b", journal=journal_b) as publisher_b:
        assert journal_b.replay(publisher_b.emit) == 7

        async def all_stored() -> bool:
            return await asyncio.to_thread(service.store.count) == 7

        await poll_until(all_stored, "every replayed event stored", within=WAIT)
    journal_b.close()

    chain_a = await asyncio.to_thread(service.store.chain, "ingress-a", None)
    assert [(e.event_id, e.seq, e.hash) for e in chain_a] == [(e.event_id, e.seq, e.hash) for e in linked]
    chain_b = await asyncio.to_thread(service.store.chain, "ingress-b", None)
    assert [(e.name, e.seq, e.error) for e in chain_b] == [("notes__cut", 1, STOPPED)]
    assert await asyncio.to_thread(service.store.chain, "ingress-elsewhere", None) == []
    verdict = await ask(nc)
    assert verdict.ok, verdict.detail
    assert (verdict.chains, verdict.events) == (2, 7)
