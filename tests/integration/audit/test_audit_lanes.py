"""Analytics cannot stall the audit service, against a real nats-server and
the real engine: a query's memory is capped, queries are bounded per principal and in total (beyond:
"busy, retry after"), a query is stopped in the engine when its caller gives up, events keep being
written and acknowledged and checkpoints keep being signed while long queries run, and a redelivered
batch is not counted twice by the rollups."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS

from libs.common.analytics.asking import ask
from libs.common.analytics.queries import AnalyticsAnswer, AnalyticsCancel, AnalyticsQuery
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditBatch
from services.audit import AuditService
from tests.support.audit_pipeline import consumer_idle, drained, event, stored_is
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

ENDLESS = "SELECT count() FROM numbers(1000000000000) WHERE cityHash64(number) = 0"
"""A query that would run for hours: only its time limit or a kill stops it."""


def _long(principal: str, timeout: float = 60.0) -> AnalyticsQuery:
    return AnalyticsQuery(sql=ENDLESS, principal=principal, timeout=timeout)


@contextlib.asynccontextmanager
async def running(nc: NATS, service: AuditService, *queries: AnalyticsQuery) -> AsyncIterator[list[asyncio.Task]]:
    """`queries` sent and running in the engine; on leaving, cancelled by their callers (`ask`) and
    gone from the engine."""
    tasks = [asyncio.create_task(ask(nc, query)) for query in queries]
    runner = service.runner
    assert runner is not None
    try:
        await poll_until(lambda: all(q.query_id in runner.running for q in queries), "the queries running")
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await poll_until(
            lambda: not any(q.query_id in runner.running for q in queries), "the engine let go of them", within=30
        )


async def test_a_query_needing_more_memory_than_its_cap_fails_instead_of_growing_the_process(audit, nc: NATS) -> None:
    async with audit(analytics_query_memory_mb=256) as service:
        item_6 = await ask(
            nc, AnalyticsQuery(sql="SELECT length(groupArray(randomString(1000000))) FROM numbers(1500)")
        )
        assert item_6.error_kind == "refused" and "randomString" in (item_6.error or "")
        # the same 1.5 GB with listed functions: the engine refuses to allocate it
        hog = "SELECT length(arrayMap(x -> repeat('x', 1000000), range(1500)))"
        answer = await ask(nc, AnalyticsQuery(sql=hog))
        assert answer.error_kind == "limit" and "memory limit" in (answer.error or "").lower(), answer.error
        assert "256.00 MiB" in (answer.error or "")
        assert service.runner is not None and not service.runner.running
        small = await ask(nc, AnalyticsQuery(sql="SELECT length(arrayMap(x -> repeat('x', 1000), range(1500)))"))
        assert small.rows == [[1500]]


async def test_queries_are_bounded_per_principal_and_in_total_and_the_rest_told_to_retry(audit, nc: NATS) -> None:
    async with audit(analytics_queries=2, analytics_queries_per_principal=1) as service:
        async with running(nc, service, _long("alice")):
            again = await ask(nc, _long("alice"))
            assert again.error_kind == "busy" and "alice has 1" in (again.error or "")
            assert again.retry_after is not None and again.retry_after >= 1
            async with running(nc, service, _long("bob")):
                carol = await ask(nc, _long("carol"))
                assert carol.error_kind == "busy" and "2 analytics queries are running" in (carol.error or "")
                quick = await ask(nc, AnalyticsQuery(sql="SELECT 1", principal="carol"))  # still busy: no queue
                assert quick.error_kind == "busy"
        # every slot is back once the engine let go
        assert (await ask(nc, AnalyticsQuery(sql="SELECT 1", principal="alice"))).rows == [[1]]


async def test_a_burst_of_quick_queries_waits_in_line_instead_of_being_refused(audit, nc: NATS) -> None:
    """A dashboard asks for its nine panels at once: beyond the slots they wait a moment, not fail."""
    async with audit(analytics_queries=2, analytics_queries_per_principal=1):
        burst = [AnalyticsQuery(sql=f"SELECT {i}", principal="dashboard") for i in range(9)]
        answers = await asyncio.gather(*(ask(nc, query) for query in burst))
        assert [answer.rows for answer in answers] == [[[i]] for i in range(9)]


async def test_a_query_whose_caller_gives_up_is_stopped_in_the_engine(audit, nc: NATS) -> None:
    async with audit() as service:
        runner = service.runner
        assert runner is not None
        query = _long("alice", timeout=60)
        caller = asyncio.create_task(ask(nc, query))
        await poll_until(lambda: query.query_id in runner.running, "the query running")
        caller.cancel()  # the HTTP client went away: `ask` tells the service before it gives up
        with pytest.raises(asyncio.CancelledError):
            await caller
        await poll_until(lambda: query.query_id not in runner.running, "the engine stopped it", within=30)

        # and a cancel for a query nobody runs is harmless; one sent directly stops a running one
        await nc.publish(subjects.ANALYTICS_CANCEL, AnalyticsCancel(query_id="nothing-runs").model_dump_json().encode())
        other = _long("bob", timeout=60)
        answer = asyncio.create_task(ask(nc, other))
        await poll_until(lambda: other.query_id in runner.running, "the second query running")
        await nc.publish(subjects.ANALYTICS_CANCEL, AnalyticsCancel(query_id=other.query_id).model_dump_json().encode())
        stopped: AnalyticsAnswer = await answer
        assert stopped.error_kind == "cancelled", stopped.error


async def test_a_cancel_that_arrives_before_the_engine_started_the_query_still_stops_it(
    audit, nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill finds nothing while the query's connection is still opening: it is sent again until
    the engine let go (here the connection takes a second to open, as it may on a loaded machine)."""
    async with audit() as service:
        runner, store = service.runner, service.store
        assert runner is not None
        opening = store.analytics

        def slow_to_open(*args: object) -> AnalyticsAnswer:
            time.sleep(1.0)
            return opening(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "analytics", slow_to_open)
        query = _long("alice", timeout=60)
        answer = asyncio.create_task(ask(nc, query))
        await poll_until(lambda: query.query_id in runner.running, "the query admitted")
        await nc.publish(subjects.ANALYTICS_CANCEL, AnalyticsCancel(query_id=query.query_id).model_dump_json().encode())
        stopped = await answer
        assert stopped.error_kind == "cancelled", stopped.error
        assert query.query_id not in runner.running


async def test_events_are_written_and_acked_and_checkpoints_signed_while_long_queries_run(
    audit, publisher: AuditPublisher, nc: NATS
) -> None:
    settings = {
        "analytics_queries": 2,
        "checkpoint_key": "a-test-checkpoint-key-of-32-bytes",
        "checkpoint_interval": 0.2,
    }
    async with audit(**settings) as service, running(nc, service, _long("alice"), _long("bob")) as queries:
        for i in range(50):
            assert publisher.emit(event(i))
        await poll_until(lambda: stored_is(service, 50), "the events written", within=30)
        await poll_until(lambda: drained(publisher), "every event acked by the stream")
        await poll_until(lambda: consumer_idle(nc.jetstream()), "every message acked by the writer", within=30)
        rounds = service.checkpoint_rounds
        await poll_until(lambda: service.checkpoint_rounds >= rounds + 2, "checkpoints kept signing", within=30)
        signed = await asyncio.to_thread(service.store.checkpoints)
        assert [point.seq for point in signed if point.producer == publisher.chain.producer][-1] == 50
        assert service.runner is not None and len(service.runner.running) == 2  # the queries ran all along
        assert not any(task.done() for task in queries)


async def test_a_redelivered_batch_is_not_counted_twice_by_the_rollups(
    audit, publisher: AuditPublisher, nc: NATS
) -> None:
    js = nc.jetstream()
    for i in range(20):
        assert publisher.emit(event(i))
    await poll_until(lambda: drained(publisher), "published")
    first = await js.get_msg(subjects.AUDIT_STREAM, seq=1)
    batch = AuditBatch.model_validate_json(first.data or b"")
    assert len(batch.events) == 20
    async with audit() as service:
        await poll_until(lambda: stored_is(service, 20), "the batch written")
        # the same message again, as JetStream redelivers one whose ack was lost (another id, so the
        # stream keeps it), and its events once more inside a bigger batch
        await js.publish(publisher.subject, first.data or b"", headers={"Nats-Msg-Id": "redelivered"})
        mixed = AuditBatch(events=[*batch.events[:5], *batch.events[:5]])
        await js.publish(publisher.subject, mixed.model_dump_json().encode(), headers={"Nats-Msg-Id": "mixed"})
        await poll_until(lambda: consumer_idle(js), "both copies settled")
        assert service.writer is not None and service.writer.duplicates == 30
        for table in ("calls_hourly", "calls_daily"):
            answer = await ask(nc, AnalyticsQuery(sql=f"SELECT sum(calls) FROM bastion.{table}"))
            assert answer.rows == [[20]], (table, answer)
        assert await stored_is(service, 20)
