"""Ingress's audit chain read back once it has settled, to check the promise that every request that
reached an audited handler ends in exactly one row (`AuditRecorder.owed` counts those requests).

The rows are counted on ingress's own chain (no other producer's rows), by kind (an `auth.refused`
row sums the refusals of a window: it is no request's row, and its window closes on its own clock,
at any point of a test), and in total (against everything ingress owes since it started, rather
than against a count taken before the test: the row of a request answered just before that count
may be stored before it or after it). They are compared only at a moment when nothing is in
flight: every event ingress emitted is acked by JetStream, delivered to the audit writer and
stored. So a second row of one request, however late it comes, leaves the counts apart for good.
"""

from __future__ import annotations

import asyncio
import collections

from libs.common.bus.nats import connect
from libs.common.contracts.messages import AuditEvent
from libs.common.runtime.refusals import AUTH_REFUSED_KIND
from services.ingress.audit_events import AUDITED
from tests.support.audit_pipeline import WAIT, consumer_idle
from tests.support.gateway import Gateway
from tests.support.polling import poll_until

__all__ = ["REQUEST_KINDS", "settled_trail"]

REQUEST_KINDS = frozenset(AUDITED.values())
"""The kinds of the rows that requests which reached an audited handler end in."""


async def settled_trail(gateway: Gateway, refused: int | None = None) -> list[AuditEvent]:
    """Ingress's chain once its request rows are exactly as many as it owes (and, with `refused`,
    its `auth.refused` rows count that many refusals); fails naming the counts when they never are."""
    ingress = gateway.ingress
    assert ingress.trail is not None
    publisher, store = ingress.trail.publisher, gateway.services[0].store
    producer = publisher.chain.producer
    nc = await connect(gateway.nats_url, "test-ingress-trail")
    seen: list[AuditEvent] = []
    last = "never settled: events still unacked or undelivered"

    async def settled() -> bool:
        nonlocal last
        owed = ingress.handlers.audits_owed  # read first: an event is owed before it is emitted
        if publisher.pending or not await consumer_idle(nc.jetstream()):
            return False
        seen[:] = rows = await asyncio.to_thread(store.chain, producer, None)
        handled = sum(row.kind in REQUEST_KINDS for row in rows)
        counted = sum(row.refusals or 0 for row in rows if row.kind == AUTH_REFUSED_KIND)
        kinds = dict(collections.Counter(row.kind for row in rows))
        last = f"{handled} request rows for {owed} owed; {counted} refusals counted for {refused}; by kind {kinds}"
        return handled == owed and (refused is None or counted == refused)

    try:
        await poll_until(settled, "ingress's audit rows to settle", within=WAIT, every=0.1)
    except AssertionError:
        raise AssertionError(last) from None
    finally:
        await nc.close()
    return seen
