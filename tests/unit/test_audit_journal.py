"""The audit write-ahead journal: what a killed process leaves is replayed, nothing twice owed,
torn records ignored, segments kept small. A "kill" here is dropping the journal object without
`close()`: every record is a plain write, so what is on disk is what a SIGKILL leaves."""

from __future__ import annotations

import asyncio
import hashlib
import stat
from pathlib import Path

import orjson
import pytest

from libs.common.audit.audit_content import content_fields, sha256_of, to_json
from libs.common.audit.audit_journal import STOPPED, AuditJournal, JournalBusyError, read_segments
from libs.common.contracts.messages import AuditEvent

pytestmark = pytest.mark.unit


def begin(journal: AuditJournal, name: str = "echo__add") -> str:
    owner = {"user_id": "ann", "team_id": "ops", "customer_id": "acme"}
    return journal.begun("tool_call", name, "key-1", "demo", "trace-1", 42, **owner)


def event(event_id: str, name: str = "echo__add") -> AuditEvent:
    return AuditEvent(event_id=event_id, name=name, key_name="demo", status="ok", latency_ms=1.5, execution="ran")


def killed(journal: AuditJournal) -> None:
    """What SIGKILL does to the journal: descriptors closed by the kernel, nothing else."""
    import os

    os.close(journal._fd)
    os.close(journal._lock)


def replayed(directory: Path) -> list[AuditEvent]:
    journal = AuditJournal(directory)
    out: list[AuditEvent] = []
    journal.replay(out.append)
    journal.close()
    return out


def test_unacked_events_and_requests_without_one_are_replayed(tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path)
    ids = [begin(journal, f"t{i}") for i in range(4)]
    journal.emitted(event(ids[0], "t0"))
    pending = event(ids[1], "t1")
    journal.emitted(pending)
    journal.acked(1)  # t0 acked; t1 emitted, not acked; t2 and t3 never got an event
    killed(journal)

    events = replayed(tmp_path)

    assert [e.event_id for e in events] == [ids[1], ids[2], ids[3]]
    assert events[0].model_dump_json() == pending.model_dump_json()  # identical: ClickHouse collapses a copy
    stopped = events[1]
    assert (stopped.status, stopped.execution, stopped.error) == ("error", "may_have_run", STOPPED)
    assert (stopped.name, stopped.key_id, stopped.key_name, stopped.trace_id) == ("t2", "key-1", "demo", "trace-1")
    assert (stopped.user_id, stopped.team_id, stopped.customer_id) == ("ann", "ops", "acme")  # who, in full
    assert stopped.request_bytes == 42


def test_replayed_events_are_journaled_again_until_acked(tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path)
    journal.emitted(event(begin(journal)))
    killed(journal)

    second = AuditJournal(tmp_path)
    second.replay(second.emitted)  # the publisher's emit journals each one again
    killed(second)  # killed again before the replayed event was acked

    assert len(replayed(tmp_path)) == 1


def test_a_clean_run_leaves_nothing_to_replay(tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path)
    for _ in range(3):
        journal.emitted(event(begin(journal)))
    journal.acked(3)
    journal.close()

    assert list(tmp_path.glob("*.wal")) == []
    assert replayed(tmp_path) == []


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path)
    first = begin(journal)
    journal.emitted(event(first))
    killed(journal)
    (segment,) = tmp_path.glob("*.wal")
    with segment.open("ab") as f:
        f.write(b'E {"event_id": "half-writ')  # the kill cut this write short

    contents = read_segments([segment])

    assert contents.skipped == 1
    assert [e.event_id for e in contents.owed()] == [first]


def test_dropped_events_are_not_invented_by_a_replay(tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path)
    journal.dropped(begin(journal))  # the publisher's buffer was full: it logged and counted the drop
    killed(journal)

    assert replayed(tmp_path) == []


def test_unserializable_events_keep_the_ack_count_aligned(tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path)
    journal.emitted(event(begin(journal), name="bad \ud800"))  # the publisher dead-letters this one
    good = begin(journal)
    journal.emitted(event(good))
    journal.acked(1)  # the bad one
    killed(journal)

    assert [e.event_id for e in replayed(tmp_path)] == [good]


def test_a_request_whose_names_json_cannot_carry_is_still_replayed_with_them_replaced(tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path)
    journal.routed(begin(journal, "bad \ud800"), "echo", "add \udfff", {"a": 1})  # lone surrogates
    killed(journal)

    [stopped] = replayed(tmp_path)

    assert (stopped.name, stopped.server, stopped.tool) == ("bad ?", "echo", "add ?")  # as UTF-8 replaces them
    assert stopped.arguments_sha256 == sha256_of({"a": 1})


def test_a_request_cut_after_it_was_routed_names_its_server_tool_and_arguments(tmp_path: Path) -> None:
    """A rebuilt event once had no server, tool or argument hash, so a query by server or tool
    missed exactly the calls whose outcome is unknown. Carried across a rotation, too."""
    journal = AuditJournal(tmp_path)
    routed, rotated = begin(journal, "echo__add"), begin(journal, "notes__add")
    begin(journal, "echo__x")  # cut before it was routed
    journal.routed(rotated, "notes", "add_note", {"title": "t"})
    journal.rotate()  # the new segment carries the B records alone
    journal.routed(routed, "echo", "add", {"a": 1, "b": 2})  # an R record in the segment
    killed(journal)

    events = {e.name: e for e in replayed(tmp_path)}
    assert (events["echo__add"].server, events["echo__add"].tool) == ("echo", "add")
    assert events["echo__add"].arguments_sha256 == sha256_of({"b": 2, "a": 1})  # as its event would say
    assert (events["notes__add"].server, events["notes__add"].tool) == ("notes", "add_note")
    assert events["notes__add"].arguments_sha256 == sha256_of({"title": "t"})
    assert (events["echo__x"].server, events["echo__x"].tool, events["echo__x"].arguments_sha256) == ("", "", None)
    assert {e.execution for e in events.values()} == {"may_have_run"}


def test_the_arguments_digest_of_the_r_record_is_the_one_the_event_records(tmp_path: Path) -> None:
    """The journal hands back the digest it wrote, so the event records it without hashing the same
    arguments a second time; the event's digest and content stay what hashing them would give."""
    journal = AuditJournal(tmp_path)
    encoded = to_json({"b": 2, "a": 1}).encode()
    digest = journal.routed(begin(journal), "echo", "add", encoded)
    assert digest == sha256_of({"a": 1, "b": 2})
    assert journal.routed("never-begun", "echo", "add", encoded) is None  # owes no event: records nothing
    fields = content_fields(encoded, b'{"x":1}', keep=True, arguments_sha256=digest)
    assert fields == content_fields(encoded, b'{"x":1}', keep=True)
    assert fields["arguments_sha256"] == digest and fields["arguments"] == '{"a":1,"b":2}'
    journal.close()


def test_a_script_call_cut_short_still_names_its_code_mode_run(tmp_path: Path) -> None:
    """A Code Mode script's tool call is journaled with its run's event id as parent: the event a
    replay rebuilds links to that run, carried across a rotation, and a call of no run has none."""
    journal = AuditJournal(tmp_path)
    inner = journal.begun("tool_call", "echo__sleep", "key-1", "coder", None, 0, parent_id="run-1")
    journal.rotate()
    carried = journal.begun("tool_call", "echo__add", "key-1", "coder", None, 0, parent_id="run-2")
    begin(journal, "echo__x")
    killed(journal)

    events = {e.event_id: e for e in replayed(tmp_path)}
    assert events[inner].parent_id == "run-1"
    assert events[carried].parent_id == "run-2"
    assert [e.parent_id for e in events.values() if e.name == "echo__x"] == [None]


def test_an_llm_request_cut_short_still_names_the_api_it_came_in_through(tmp_path: Path) -> None:
    """An LLM request is journaled with its front: the event a replay rebuilds names it, carried
    across a rotation, and a tool call's B record carries no such field at all."""
    journal = AuditJournal(tmp_path)
    chat = journal.begun("llm_request", "gpt-x", "key-1", "coder", None, 0, llm_front="messages")
    journal.rotate()
    carried = journal.begun("llm_request", "gpt-x", "key-1", "coder", None, 0, llm_front="gemini")
    call = begin(journal, "echo__x")
    killed(journal)

    (segment,) = sorted(tmp_path.glob("*.wal"))
    assert b"llm_front" not in next(line for line in segment.read_bytes().splitlines() if call.encode() in line)
    events = {e.event_id: e for e in replayed(tmp_path)}
    assert (events[chat].llm_front, events[carried].llm_front, events[call].llm_front) == ("messages", "gemini", None)
    assert events[chat].tool == "gpt-x" and events[chat].execution == "may_have_run"


def test_segments_rotate_keeping_only_what_is_open(tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path, segment_bytes=64 * 1024)
    open_request = begin(journal, "still-running")
    for _ in range(400):  # ~100 kB of events, acked in batches of 10
        ids = [begin(journal) for _ in range(10)]
        for event_id in ids:
            journal.emitted(event(event_id))
        journal.acked(10)
    unacked = begin(journal)
    journal.emitted(event(unacked))
    killed(journal)

    segments = list(tmp_path.glob("*.wal"))
    assert len(segments) == 1
    assert segments[0].stat().st_size < 64 * 1024
    events = replayed(tmp_path)
    assert sorted(e.event_id for e in events) == sorted([open_request, unacked])


def test_a_kill_during_rotation_replays_each_event_once(tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path)
    ids = [begin(journal) for _ in range(3)]
    for event_id in ids:
        journal.emitted(event(event_id))
    journal.acked(1)
    old = journal._path
    saved = old.read_bytes()
    journal.rotate()
    journal.acked(1)
    killed(journal)
    old.write_bytes(saved)  # as if killed between writing the new segment and deleting the old

    assert [e.event_id for e in replayed(tmp_path)] == [ids[2]]


def test_files_are_private_and_a_slot_has_one_owner(tmp_path: Path) -> None:
    directory = tmp_path / "journal" / "ingress"
    journal = AuditJournal(directory)
    begin(journal)

    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in directory.iterdir())
    with pytest.raises(JournalBusyError, match="BASTION_INSTANCE"):
        AuditJournal(directory)
    journal.close()
    AuditJournal(directory).close()  # free again once its owner is gone


async def test_a_held_begin_is_written_by_the_end_of_its_turn_with_its_route_or_not_at_all(tmp_path: Path) -> None:
    """`begun(..., held=True)` (ingress's requests): the B record waits for the end of the event loop's
    turn, written in one write with the R record when the request is routed in that turn, never when
    its event came first, and on its own at the end of the turn otherwise: a kill after that turn
    still leaves every request its row."""
    journal = AuditJournal(tmp_path)
    segment = journal._path
    owner = {"user_id": "ann", "team_id": "ops", "customer_id": "acme"}
    routed = journal.begun("tool_call", "echo__add", "key-1", "demo", None, 7, **owner, held=True)
    answered = journal.begun("tool_call", "echo__nope", "key-1", "demo", None, 7, held=True)
    waiting = journal.begun("prompt_get", "greet", "key-1", "demo", None, 7, held=True)
    assert len({routed, answered, waiting}) == 3
    assert segment.read_bytes() == b""  # held, all three, until the turn ends
    journal.routed(routed, "echo", "add", {"a": 1})
    # routed within its turn: one B record that names the route too (one encode, one write)
    begun = orjson.loads(segment.read_bytes().removeprefix(b"B "))
    assert (begun["id"], begun["server"], begun["tool"], begun["user_id"]) == (routed, "echo", "add", "ann")
    assert begun["arguments_sha256"] == hashlib.sha256(b'{"a":1}').hexdigest()
    journal.emitted(event(answered, "echo__nope"))
    assert [line[:1] for line in segment.read_bytes().splitlines()] == [b"B", b"E"]
    await asyncio.sleep(0)  # the turn ends: the one still held is written
    assert [line[:1] for line in segment.read_bytes().splitlines()] == [b"B", b"E", b"B"]
    killed(journal)

    events = {e.name: e for e in replayed(tmp_path)}
    assert set(events) == {"echo__add", "echo__nope", "greet"}
    assert (events["echo__add"].server, events["echo__add"].user_id, events["echo__add"].execution) == (
        "echo",
        "ann",
        "may_have_run",
    )
    assert events["echo__nope"].execution == "ran" and events["greet"].kind == "prompt_get"


async def test_held_records_survive_a_rotation_within_their_turn_and_are_written_once(tmp_path: Path) -> None:
    """A rotation in the turn that holds B records carries them into the new segment (encoded then), the
    end of the turn writes none of them again, and a route that comes after is its own R record."""
    journal = AuditJournal(tmp_path)
    first = journal.begun("tool_call", "echo__add", "key-1", "demo", None, 7, held=True)
    second = journal.begun("tool_call", "echo__mul", "key-1", "demo", None, 7, held=True)
    journal.rotate()
    segment = journal._path
    assert [line[:1] for line in segment.read_bytes().splitlines()] == [b"B", b"B"]
    await asyncio.sleep(0)  # the turn ends: nothing held any more
    assert [line[:1] for line in segment.read_bytes().splitlines()] == [b"B", b"B"]
    journal.routed(first, "echo", "add", b'{"a":1}')
    assert [line[:1] for line in segment.read_bytes().splitlines()] == [b"B", b"B", b"R"]
    assert journal.open_records == 2
    killed(journal)

    events = {e.name: e for e in replayed(tmp_path)}
    assert (events["echo__add"].server, events["echo__add"].tool) == ("echo", "add")
    assert events["echo__add"].arguments_sha256 == hashlib.sha256(b'{"a":1}').hexdigest()
    assert (events["echo__mul"].server, events["echo__mul"].event_id) == ("", second)


async def test_a_begin_held_after_the_turns_last_route_is_still_written_by_the_end_of_the_turn(tmp_path: Path) -> None:
    """Routing the last held record lets the turn's end skip its write; a request begun after that, in the
    same turn, must still have its B record written then (a kill after the turn leaves it its row)."""
    journal = AuditJournal(tmp_path)
    segment = journal._path
    routed = journal.begun("tool_call", "echo__add", "key-1", "demo", None, 7, held=True)
    journal.routed(routed, "echo", "add", b"{}")
    later = journal.begun("prompt_get", "greet", "key-1", "demo", None, 7, held=True)
    assert [line[:1] for line in segment.read_bytes().splitlines()] == [b"B"]
    await asyncio.sleep(0)  # the turn ends
    assert [line[:1] for line in segment.read_bytes().splitlines()] == [b"B", b"B"]
    journal.emitted(event(routed))
    answered = journal.begun("tool_call", "echo__nope", "key-1", "demo", None, 7, held=True)
    journal.emitted(event(answered, "echo__nope"))  # answered within its turn: its B record is never written
    stranded = journal.begun("tool_call", "echo__mul", "key-1", "demo", None, 7, held=True)
    await asyncio.sleep(0)
    assert [line[:1] for line in segment.read_bytes().splitlines()] == [b"B", b"B", b"E", b"E", b"B"]
    killed(journal)

    stopped = {e.event_id: e.name for e in replayed(tmp_path) if e.execution == "may_have_run"}
    assert stopped == {later: "greet", stranded: "echo__mul"}


async def test_a_route_that_tells_the_kind_gives_the_replayed_event_that_kind(tmp_path: Path) -> None:
    """A `tools/call` begins as a tool call; routed to a Code Mode meta-tool it is a run (`code_run`). The
    kind rides on the route, in the held B record or in an R record after it, as the server and tool do."""
    journal = AuditJournal(tmp_path)
    held = journal.begun("tool_call", "execute_code", "key-1", "demo", None, 7, held=True)
    journal.routed(held, "", "execute_code", {"code": "x"}, kind="code_run")  # within its turn: one B record
    written = journal.begun("tool_call", "search_tools", "key-1", "demo", None, 7, held=True)
    await asyncio.sleep(0)  # the turn ends: its B record is written alone
    journal.routed(written, "", "search_tools", {"query": "q"}, kind="code_mode")  # an R record
    killed(journal)

    events = {e.name: e for e in replayed(tmp_path)}
    assert (events["execute_code"].kind, events["execute_code"].tool) == ("code_run", "execute_code")
    assert events["execute_code"].arguments_sha256 == sha256_of({"code": "x"})
    assert (events["search_tools"].kind, events["search_tools"].tool) == ("code_mode", "search_tools")
