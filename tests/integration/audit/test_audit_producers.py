"""Only rightful producers write the audit trail, proven by attack on a real
nats-server with the permissions `bastion up` renders: each producer role publishes on its own
subjects alone, the audit service stores an event only when its chain belongs to the role whose
subject it came on, flags events naming keys that do not exist, and `bastion audit verify` says
which producer vouches for each chain and reports every forgery.

The attacker holds the ingress NKey (as `file()` once handed it out) and publishes three invented
events, an event on codemode's chain, one on a made-up chain, and one for a key that
does not exist (user alice, status ok) on a chain that looks like an ingress replica's.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from rich.console import Console

from cli.audit import verify
from cli.credentials import StackCredentials
from cli.stack import EmbeddedNats
from libs.common.audit.audit_chain import AuditChain, producer_id
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.bus.nats import credentials, kv_bucket, processed
from libs.common.bus.permissions import ADMIN, AUDIT, CODEMODE, INGRESS
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditBatch, AuditEvent, AuditVerdict, AuditVerify, KeyRecord
from libs.common.settings import AuditSettings
from services.audit import AuditService
from tests.support.audit_pipeline import WAIT, stored_is
from tests.support.polling import poll_until
from tests.support.stores import declared

pytestmark = pytest.mark.integration

REAL_KEY = "a" * 64


class Violations:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def record(self, exc: Exception) -> None:
        self.seen.append(str(exc).lower())

    def about(self, subject: str) -> bool:
        return any(f'publish to "{subject.lower()}"' in seen for seen in self.seen)


async def _connect(url: str, creds: StackCredentials, role: str, violations: Violations | None = None) -> NATS:
    options = {"error_cb": violations.record} if violations else {}
    return await nats.connect(url, allow_reconnect=False, **options, **credentials(role, creds.seed_file(role)))


@pytest.fixture
async def service(secured_nats: EmbeddedNats, creds: StackCredentials, tmp_path: Path) -> AsyncIterator[AuditService]:
    admin = await _connect(secured_nats.url, creds, ADMIN)
    try:  # a key that exists, as `bastion keys create` makes it (the admin role owns the bucket)
        await declared(admin.jetstream(), subjects.KV_KEYS)
        keys = await kv_bucket(admin.jetstream(), subjects.KV_KEYS)
        await keys.put(REAL_KEY, KeyRecord(id=REAL_KEY, name="ci").model_dump_json().encode())
    finally:
        await admin.close()
    settings = AuditSettings(
        nats_url=secured_nats.url,
        nats_nkey_seed_file=creds.seed_file(AUDIT),
        clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}",
        batch_size=100,
        flush_interval=0.05,
        checkpoint_key="a-test-checkpoint-key-of-32-bytes",
        checkpoint_interval=3600,
    )
    audit = AuditService(settings)
    await audit.start()
    yield audit
    await audit.stop()


def _event(name: str, **fields: object) -> AuditEvent:
    base: dict[str, object] = {"key_name": "ci", "key_id": REAL_KEY, "server": "notes", "tool": name}
    return AuditEvent.model_validate(base | {"name": f"notes__{name}", "status": "ok", "latency_ms": 1.0} | fields)


async def _publish_rightfully(url: str, creds: StackCredentials, role: str, count: int) -> str:
    """`count` events through the role's own publisher, as the service does; returns its chain."""
    nc = await _connect(url, creds, role)
    try:
        async with AuditPublisher(nc, producer=producer_id(role)) as publisher:
            for i in range(count):
                assert publisher.emit(_event(f"{role}_{i}"))
            await poll_until(lambda: publisher.pending == 0, f"{role}'s events acked", within=WAIT)
            return publisher.chain.producer
    finally:
        await nc.close()


def _forged(chain: str, seq: int, prev_hash: str, **fields: object) -> AuditEvent:
    """An event linked on `chain` at `seq`, hashes and all: all an attacker needs is the chain's head."""
    forger = AuditChain(chain)
    forger.seq, forger.head = seq - 1, prev_hash
    return forger.link(_event("forged", **fields))


async def _ask(nc: NATS) -> AuditVerdict:
    reply = await nc.request(subjects.AUDIT_VERIFY, AuditVerify().model_dump_json().encode(), timeout=30)
    return AuditVerdict.model_validate_json(reply.data)


async def test_with_the_ingress_key_no_forgery_passes_verify(
    secured_nats: EmbeddedNats, creds: StackCredentials, service: AuditService
) -> None:
    ingress_chain = await _publish_rightfully(secured_nats.url, creds, INGRESS, 3)
    codemode_chain = await _publish_rightfully(secured_nats.url, creds, CODEMODE, 2)
    await poll_until(lambda: stored_is(service, 5), "the rightful events", within=WAIT)
    admin = await _connect(secured_nats.url, creds, ADMIN)
    try:
        clean = await _ask(admin)
        assert clean.ok, clean.detail
        assert {(v.producer, tuple(v.roles), v.events) for v in clean.vouchers} == {
            (ingress_chain, (INGRESS,), 3),
            (codemode_chain, (CODEMODE,), 2),
        }
        codemode_head = (await asyncio.to_thread(service.store.chain, codemode_chain, None))[-1]

        violations = Violations()
        attacker = await _connect(secured_nats.url, creds, INGRESS, violations)
        try:
            js = attacker.jetstream()
            own_subject = subjects.audit_subject(INGRESS, "attacker")
            on_codemode_chain = _forged(codemode_chain, codemode_head.seq + 1, codemode_head.hash, key_name="codemode")
            made_up = _forged("made-up-chain", 1, "")
            no_such_key = _forged(
                "ingress-replica-that-never-ran-1-0badf00d", 1, "", key_id="f" * 64, key_name="x", user_id="alice"
            )
            for event in (on_codemode_chain, made_up, no_such_key):
                await js.publish(own_subject, AuditBatch(events=[event]).model_dump_json().encode())
            # the subjects of another producer, and the shared one of old, are refused by NATS itself
            for subject in (subjects.audit_subject(CODEMODE, "x"), f"{subjects.AUDIT_EVENTS}.batch"):
                await attacker.publish(subject, on_codemode_chain.model_dump_json().encode())
            await processed(attacker)
            await poll_until(
                lambda: all(violations.about(s) for s in (subjects.audit_subject(CODEMODE, "x"),)),
                "NATS refused ingress a producer subject not its own",
            )
        finally:
            await attacker.close()
        await poll_until(lambda: stored_is(service, 6), "the forgery that is stored, flagged", within=WAIT)
        await poll_until(lambda: service.writer and service.writer.dead_lettered == 2, "the refused", within=WAIT)

        verdict = await _ask(admin)
        out = io.StringIO()
        code = await verify(secured_nats.url, None, Console(file=out, width=300), nkey_seed_file=creds.seed_file(ADMIN))
    finally:
        await admin.close()

    assert (verdict.ok, verdict.problem) == (False, "flagged")
    assert verdict.flagged_total == 3
    found = {event.event_id: event for event in verdict.flagged}
    assert not found[on_codemode_chain.event_id].stored
    assert "belongs to codemode, but arrived on ingress" in found[on_codemode_chain.event_id].reason
    assert not found[made_up.event_id].stored and found[made_up.event_id].role == INGRESS
    assert found[no_such_key.event_id].stored and found[no_such_key.event_id].reason == "unknown_key"
    vouchers = {v.producer: v for v in verdict.vouchers}
    assert vouchers[codemode_chain].events == 2 and vouchers[codemode_chain].roles == [CODEMODE]  # untouched
    assert vouchers[no_such_key.producer].roles == [INGRESS] and vouchers[no_such_key.producer].flagged == 1
    assert made_up.producer not in vouchers
    text = out.getvalue()
    assert code == 1, text
    assert "vouched for by" in text and codemode_chain in text and "flagged" in text
    assert all(event.event_id in text for event in (on_codemode_chain, made_up, no_such_key)), text
