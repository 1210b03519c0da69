"""Analytics that cannot leave the audit database, end to end: the audit service
runs as its own process (`python -m services.audit`, the AUDIT role's NKey) with a canary secret in
its environment and a canary file beside its store; every hostile query of `tests.support.hostile_sql`
goes through the real NATS path (the ADMIN role, as the admin API and the CLI ask) to the real
engine, and neither canary ever appears in an answer. The documented queries and the dashboard's
panels still run, and payload columns need the auditor's flag.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from cli.credentials import StackCredentials, make_credentials
from cli.stack import EmbeddedNats, kill_with_parent
from libs.common.analytics.queries import AnalyticsAnswer, AnalyticsQuery
from libs.common.audit.audit_chain import producer_id
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.bus.nats import credentials
from libs.common.bus.permissions import ADMIN, AUDIT, INGRESS
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent
from services.admin.analytics.panels import PANELS, Filters, panel_query
from tests.support.analytics_data import dataset
from tests.support.hostile_sql import ALLOW_LIST, HOSTILE, PAYLOAD_PEEKS
from tests.support.polling import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "analytics.md"
SECRET_ARGUMENTS = '{"password":"hunter2-in-the-arguments"}'


@dataclass
class Walls:
    nats_url: str
    creds: StackCredentials
    canary_file: Path
    canaries: tuple[bytes, ...]
    """What must never appear in an answer: the file's content and the environment variable's value."""
    pid: int
    now: float


def _env_canary() -> str:
    return f"env-canary-{secrets.token_hex(16)}"


@pytest.fixture(scope="module")
def walls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walls]:
    data = tmp_path_factory.mktemp("walls")
    creds = make_credentials(data, {})
    server = EmbeddedNats(data / "nats", authorization=creds.authorization).start()
    canary_file = data / "credentials" / "canary.key"
    file_canary = f"file-canary-{secrets.token_hex(16)}"
    canary_file.write_text(file_canary)
    env_canary = _env_canary()
    env = os.environ | {
        "BASTION_NATS_URL": server.url,
        "BASTION_NATS_NKEY_SEED_FILE": creds.seed_file(AUDIT),
        "BASTION_CLICKHOUSE_URL": f"chdb://{data / 'clickhouse'}",
        "BASTION_FLUSH_INTERVAL": "0.05",
        "BASTION_TEST_CANARY": env_canary,
    }
    log = data / "audit.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.audit"],
            env=env,
            cwd=data / "credentials",  # a relative file('canary.key') would find it
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=kill_with_parent,
        )
    try:
        yield Walls(server.url, creds, canary_file, (file_canary.encode(), env_canary.encode()), proc.pid, time.time())
    finally:
        proc.kill()
        proc.wait()
        server.stop()


async def _connect(walls: Walls, role: str) -> NATS:
    return await nats.connect(walls.nats_url, **credentials(role, walls.creds.seed_file(role)))


@pytest.fixture(scope="module")
async def admin(walls: Walls) -> AsyncIterator[NATS]:
    """The admin role's connection, once the audit process answers and holds the dataset."""
    nc = await _connect(walls, ADMIN)
    try:
        await poll_until(lambda: _answers(nc), "the audit process answering", within=60)
        ingress = await _connect(walls, INGRESS)
        events = dataset(walls.now)
        events.append(
            AuditEvent(event_id="with-arguments", key_name="bob", status="ok", latency_ms=1, arguments=SECRET_ARGUMENTS)
        )
        try:
            async with AuditPublisher(ingress, producer=producer_id(INGRESS)) as publisher:
                for event in events:
                    assert publisher.emit(event)
        finally:
            await ingress.close()
        await poll_until(lambda: _count_is(nc, len(events)), "the dataset stored", within=60)
        yield nc
    finally:
        await nc.close()


async def _raw(nc: NATS, query: AnalyticsQuery) -> bytes:
    reply = await nc.request(subjects.ANALYTICS_QUERY, query.model_dump_json().encode(), timeout=query.timeout + 10)
    return reply.data


async def _answers(nc: NATS) -> bool:
    try:
        return AnalyticsAnswer.model_validate_json(await _raw(nc, AnalyticsQuery(sql="SELECT 1"))).rows == [[1]]
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return False


async def _count_is(nc: NATS, n: int) -> bool:
    answer = AnalyticsAnswer.model_validate_json(await _raw(nc, AnalyticsQuery(sql="SELECT count() FROM audit_events")))
    return answer.rows == [[n]]


def test_the_canaries_are_planted_in_the_audit_process(walls: Walls) -> None:
    """Without this the test below would prove nothing: the engine's process holds both canaries."""
    assert walls.canaries[1] in Path(f"/proc/{walls.pid}/environ").read_bytes()
    assert walls.canary_file.read_bytes() == walls.canaries[0]


async def test_no_hostile_query_reads_outside_the_database(walls: Walls, admin: NATS) -> None:
    outcomes: Counter[str] = Counter()
    leaks: list[str] = []
    for sql, params, wall in HOSTILE:
        text = sql.replace("{canary}", str(walls.canary_file))
        values = {name: value.replace("{canary}", str(walls.canary_file)) for name, value in params.items()}
        raw = await _raw(admin, AnalyticsQuery(sql=text, parameters=values, principal="analyst@example.com"))
        if any(canary in raw for canary in walls.canaries):
            leaks.append(text)
        answer = AnalyticsAnswer.model_validate_json(raw)
        if wall == ALLOW_LIST:
            assert answer.error_kind == "refused" and not answer.rows, (text, answer)
        outcomes[answer.error_kind or "answered"] += 1
    assert not leaks, f"answers held a canary: {leaks}"
    assert sum(outcomes.values()) == len(HOSTILE) >= 60
    assert outcomes["refused"] >= len(HOSTILE) - 4, outcomes
    print(f"hostile queries: {len(HOSTILE)}, outcomes: {dict(outcomes)}")  # the count for the report


async def test_the_documented_queries_and_the_dashboards_panels_still_run(walls: Walls, admin: NATS) -> None:
    import re

    documented = re.findall(r"^### \d+\. .*?\n```sql\n(.*?)```", DOC.read_text(), flags=re.S | re.M)
    assert len(documented) == 10
    for sql in documented:
        answer = AnalyticsAnswer.model_validate_json(await _raw(admin, AnalyticsQuery(sql=sql)))
        assert answer.error is None and answer.rows, (sql, answer.error)
    filters = [Filters(walls.now - 24 * 3600, walls.now), Filters(walls.now - 24 * 3600, walls.now, "bob", "github")]
    for name in sorted(PANELS):
        for chosen in filters:
            sql, params = panel_query(name, chosen)
            answer = AnalyticsAnswer.model_validate_json(await _raw(admin, AnalyticsQuery(sql=sql, parameters=params)))
            assert answer.error is None, (name, answer.error)


async def test_payload_columns_need_the_auditors_flag(admin: NATS) -> None:
    for sql in PAYLOAD_PEEKS:
        answer = AnalyticsAnswer.model_validate_json(await _raw(admin, AnalyticsQuery(sql=sql)))
        assert answer.error_kind == "refused" and not answer.rows, (sql, answer)
        assert SECRET_ARGUMENTS.encode() not in answer.model_dump_json().encode()
    sql = "SELECT arguments FROM bastion.audit_events FINAL WHERE event_id = 'with-arguments'"
    refused = AnalyticsAnswer.model_validate_json(await _raw(admin, AnalyticsQuery(sql=sql)))
    assert refused.error is not None and "column arguments" in refused.error
    auditor = AnalyticsAnswer.model_validate_json(await _raw(admin, AnalyticsQuery(sql=sql, payloads=True)))
    assert auditor.rows == [[SECRET_ARGUMENTS]]
