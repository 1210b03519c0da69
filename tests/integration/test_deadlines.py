"""A request the gateway gave up on never runs afterwards.

A policy or executor replica paused with SIGSTOP holds a call it has not acknowledged; its
requester fails the call with -32070 after the ack grace. When the replica resumes, the call is
still in its socket: it must answer it unrun, never forward it or send it upstream. The upstream
(the example notes server, whose `add_note` is not idempotent) shows whether it ran; the audit row
says what ingress could tell.
"""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from mcp.shared.exceptions import MCPError
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditQuery, AuditRows, CallOutcome, decode_outcome
from tests.support.gateway import ADMIN_KEY, default_config, running_gateway
from tests.support.inbox_spy import inbox_spy
from tests.support.polling import poll_until
from tests.support.replicas import ExecutorProcess, PolicyProcess, ServiceProcess

pytestmark = pytest.mark.integration

WITHIN = 60.0
"""Upper bound of every wait; each returns as soon as its condition holds."""

NOTES_ONLY = {**default_config(), "mcpServers": {"notes": default_config()["mcpServers"]["notes"]}}
"""The default config less `echo`, which no test here calls: its process would only cost start-up."""


def _text(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def _unrun(msg: Msg) -> list[CallOutcome]:
    """The outcome in `msg` if a replica sent it saying a request came too late and did not run."""
    return [decode_outcome(msg.data)] if b"did not run" in msg.data else []


async def _answers(nats_url: str, subject: str) -> bool:
    nc = await connect(nats_url, "probe")
    try:
        await nc.request(subject, b"", timeout=1)
    except (NoRespondersError, NatsTimeout):
        return False
    finally:
        await nc.close()
    return True


async def _audit_rows(nats_url: str) -> list:
    nc = await connect(nats_url, "audit-query")
    try:
        reply = await nc.request(subjects.AUDIT_QUERY, AuditQuery(limit=100).model_dump_json().encode(), timeout=10)
    finally:
        await nc.close()
    return AuditRows.model_validate_json(reply.data).rows


@contextlib.contextmanager
def _paused(replica: ServiceProcess):
    assert replica.proc is not None
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)


@pytest.mark.parametrize("paused", ["policy", "executor"])
async def test_a_call_the_gateway_gave_up_on_never_runs_when_the_paused_replica_resumes(
    paused: str, nats_url: str, redis_url: str, tmp_path
) -> None:
    replica: ServiceProcess
    if paused == "policy":
        # deciding every call: with a reusable grant, ingress would send the call past the paused policy
        replica = PolicyProcess(nats_url, "paused-policy", redis_url, env={"BASTION_GRANT_TTL": "0"})
        alive = subjects.policy_alive_subject(replica.instance)
    else:
        replica = ExecutorProcess(nats_url, "paused-executor")
        alive = subjects.executor_alive_subject(replica.instance)
    async with running_gateway(
        nats_url,
        redis_url,
        tmp_path,
        NOTES_ONLY,
        policy=paused != "policy",
        executor=paused != "executor",
        call_timeout=WITHIN,
        ack_grace=2.0,  # ingress fails an unacknowledged call after 2 s (policy: 5 s, the default)
    ) as gw:
        replica.start()
        try:
            await poll_until(
                lambda: _answers(nats_url, alive), f"the {paused} replica to start", within=WITHIN, every=0.05
            )
            await gw.wait_for_servers("notes", within=WITHIN)
            async with inbox_spy(nats_url, _unrun) as unrun, gw.client(ADMIN_KEY) as client:
                await client.call_tool("notes__add_note", {"title": "before", "text": "ran"})
                with _paused(replica):
                    with pytest.raises(MCPError) as lost:
                        await client.call_tool("notes__add_note", {"title": "while paused", "text": "must not run"})
                    assert lost.value.error.code == -32070, lost.value.error
                    assert "may or may not have run" in lost.value.error.message
                # resumed: the replica finds the call in its socket, late, and answers it unrun
                await poll_until(lambda: unrun, f"the resumed {paused} to answer the late call unrun", within=WITHIN)
                assert unrun[0].execution == "not_run" and unrun[0].decided_by == paused
                notes = _text(await client.call_tool("notes__list_notes", {}))
            assert "before" in notes and "while paused" not in notes

            rows: list = []

            async def three_rows() -> bool:
                rows[:] = await _audit_rows(nats_url)
                return len(rows) >= 3

            await poll_until(three_rows, "the three calls to be audited", within=WITHIN, every=0.1)
            by_status = sorted((row.name, row.status, row.execution) for row in rows)
            assert by_status == [
                ("notes__add_note", "error", "may_have_run"),  # all ingress could know when it answered
                ("notes__add_note", "ok", "ran"),
                ("notes__list_notes", "ok", "ran"),
            ]
        finally:
            replica.stop()
