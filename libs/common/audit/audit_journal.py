"""A write-ahead journal of audit events, so a producer killed outright (SIGKILL, OOM) loses none.

The publisher holds events in memory for a few milliseconds before JetStream acknowledges them,
and a request in flight owes an event nobody has built yet. Both die with the process. The
journal writes them down first, in a segment file of its own directory (one directory per
replica *slot*, a stable name such as the replica's instance, never its pid):

    B {"id": ..., "kind": ..., "name": ..., ...}   a request now owes an event (before it is forwarded)
    R {"id": ..., "server": ..., "tool": ..., ...}  it is being forwarded there, with these arguments
    E {...AuditEvent JSON...}                       its event was emitted (queued for publishing)
    A 42                                            the first 42 E records of this segment are acked
    X <event id>                                    the event was dropped on purpose (buffer full)

Each record is one `os.write` on an `O_APPEND` descriptor: no user-space buffer, no fsync. A B
record its producer lets wait (`begun(..., held=True)`: one that writes the R record before it forwards
the request, or forwards it only in a later turn of the event loop) is written at the end of the
loop's turn, or, when the request is routed first, as one B record that carries the route too (its
server, tool and arguments' sha256: one record, one encode and one write for both), or not at all
when the E record comes first: a process killed within that turn had forwarded nothing, as if killed
before it began. A
SIGKILLed process leaves everything it wrote in the page cache, which the next process reads; a
machine crash (power, kernel panic) can lose the last seconds the kernel had not flushed yet.
A record cut short by the kill (no trailing newline) is ignored.

On start, `replay` reads what a previous process of the same slot left: every E record past the
last A watermark is emitted again (same event id; ClickHouse's ReplacingMergeTree collapses the
copy of one that had been published after all), and every B with no E becomes an event saying the
gateway stopped before it knew the outcome (`execution="may_have_run"`, status error), naming the
server, tool and arguments' sha256 its R record gave (so queries by server or tool find exactly the
calls whose outcome is unknown).

Once a segment grows past `segment_bytes`, the journal starts a new one holding only what is still
open (unacked events, requests without an event) and deletes the old one, so it stays small.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final, get_args

import orjson
from pydantic import ValidationError

from libs.common.audit.audit_content import sha256_of
from libs.common.contracts.errors import JSONRPC_CODE, ErrorKind
from libs.common.contracts.messages import AuditEvent, new_id
from libs.common.contracts.messages_audit import LlmFront

__all__ = ["AuditJournal", "JournalBusyError", "JournalContents", "open_slot", "read_segments"]

log = logging.getLogger(__name__)

STOPPED = (
    "the gateway replica stopped (killed?) before this request's outcome was known; "
    "it had reached the gateway and may have run upstream"
)
"""Error of the event a replay writes for a request that had begun but left no event."""

_FRONTS: Final = frozenset(get_args(LlmFront))
"""The `llm_front` values a rebuilt event may carry (anything else in a damaged record is left out)."""
_SEGMENT_SUFFIX = ".wal"
_LOCK_NAME = "lock"


class JournalBusyError(RuntimeError):
    """Another live process holds this journal slot (two replicas configured with one name)."""


class JournalContents:
    """What a set of segments says is still owed: events to publish again, requests with no event."""

    def __init__(self) -> None:
        self.unacked: dict[str, AuditEvent] = {}
        self.begun: dict[str, dict[str, object]] = {}
        self.acked: set[str] = set()
        self.emitted: set[str] = set()
        self.skipped = 0
        """Lines that were not a whole record (a torn last write, or damage)."""

    def owed(self) -> list[AuditEvent]:
        """The events to publish: unacked ones, then one per request that never got its event."""
        events = [event for event_id, event in self.unacked.items() if event_id not in self.acked]
        events += [_stopped(begun) for event_id, begun in self.begun.items() if event_id not in self.emitted]
        return events


def read_segments(paths: Iterable[Path]) -> JournalContents:
    """Parse segments in the order written; later segments may repeat records of earlier ones."""
    contents = JournalContents()
    for path in paths:
        _read_segment(path.read_bytes(), contents)
    return contents


def _read_segment(data: bytes, contents: JournalContents) -> None:
    lines = data.split(b"\n")
    if lines[-1]:  # written partly when the process died
        contents.skipped += 1
    emitted: list[str] = []
    watermark = 0
    for line in lines[:-1]:
        tag, _, body = line.partition(b" ")
        try:
            if tag == b"E":
                event = AuditEvent.model_validate_json(body)
                emitted.append(event.event_id)
                contents.emitted.add(event.event_id)
                contents.unacked.setdefault(event.event_id, event)
            elif tag == b"B":
                begun = orjson.loads(body)
                contents.begun.setdefault(str(begun["id"]), begun)
            elif tag == b"R":
                routed = orjson.loads(body)
                contents.begun.setdefault(str(routed["id"]), {}).update(routed)
            elif tag == b"A":
                watermark = max(watermark, int(body))
            elif tag == b"X":
                contents.emitted.add(body.decode())
            else:
                raise ValueError(tag)
        except (ValueError, KeyError, TypeError, ValidationError, orjson.JSONDecodeError):
            contents.skipped += 1
    contents.acked.update(emitted[:watermark])


def _stopped(begun: dict[str, object]) -> AuditEvent:
    def text(key: str) -> str:
        value = begun.get(key)
        return value if isinstance(value, str) else ""

    ts, size, front = begun.get("ts"), begun.get("request_bytes"), begun.get("llm_front")
    return AuditEvent.model_validate(
        {
            "event_id": text("id"),
            "ts": ts if isinstance(ts, int | float) else time.time(),
            "kind": text("kind") or "tool_call",
            "trace_id": text("trace_id") or None,
            "key_id": text("key_id"),
            "key_name": text("key_name"),
            "user_id": text("user_id") or None,
            "team_id": text("team_id") or None,
            "customer_id": text("customer_id") or None,
            "name": text("name"),
            "server": text("server"),
            # a chat completion names its model as its tool (`AuditEvent`), known from the start
            "tool": text("tool") or (text("name") if text("kind") == "llm_request" else ""),
            "arguments_sha256": text("arguments_sha256") or None,
            "status": "error",
            "error_kind": ErrorKind.INTERNAL.value,
            "error_code": JSONRPC_CODE[ErrorKind.INTERNAL],
            "error": STOPPED,
            "latency_ms": 0.0,
            "request_bytes": size if isinstance(size, int) else 0,
            "execution": "may_have_run",
            "parent_id": text("parent_id") or None,
            "llm_front": front if front in _FRONTS else None,
        }
    )


def _dumps(record: dict[str, object]) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:  # a lone surrogate in a name: keep the rest, replace what JSON cannot carry
        clean = {k: v.encode("utf-8", "replace").decode() if isinstance(v, str) else v for k, v in record.items()}
        return orjson.dumps(clean)


class AuditJournal:
    """The journal of one replica slot: `directory` is private (0700) and its files 0600.

    Not thread-safe: one event loop writes it (the producer's)."""

    def __init__(self, directory: Path, *, segment_bytes: int = 4 * 1024 * 1024) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._lock = os.open(directory / _LOCK_NAME, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise JournalBusyError(
                f"another process uses the audit journal {directory}: give each replica its own "
                "BASTION_INSTANCE (or BASTION_AUDIT_JOURNAL_DIR)"
            ) from None
        self._previous = sorted(directory.glob(f"*{_SEGMENT_SUFFIX}"))
        self._number = int(self._previous[-1].stem) + 1 if self._previous else 1
        self._fd = -1
        self._path = directory / "unopened"
        self._size = 0
        self._open_begun: dict[str, bytes | None] = {}
        """Event id -> B record of each request that owes an event not emitted yet (None while held)."""
        self._open_routed: dict[str, bytes] = {}
        """Event id -> R record of those of them forwarded already."""
        self._held: dict[str, dict[str, object]] = {}
        """Event id -> B record held (`begun(..., held=True)`), not encoded nor written yet: written at the end
        of this turn of the event loop (`_write_held`), with the request's route in it (`routed`), or never
        when its E record came first. Its entry in `_open_begun` is None meanwhile."""
        self._flush: asyncio.Handle | None = None
        """The end-of-turn write of the held records (`_write_held`), scheduled while any is held: cancelled
        when the last one is taken back within the turn (routed or answered), so nearly no turn runs it."""
        self._unacked: deque[bytes | None] = deque()
        """E records of emitted events not acked yet, in publishing order (None: not journaled)."""
        self._acked_here = 0
        """E records of the current segment acked so far (its A watermark)."""
        self._open_segment([])

    # ------------------------------------------------------------------ the hot path

    def begun(
        self,
        kind: str,
        name: str,
        key_id: str,
        key_name: str,
        trace_id: str | None,
        request_bytes: int,
        *,
        user_id: str | None = None,
        team_id: str | None = None,
        customer_id: str | None = None,
        parent_id: str | None = None,
        llm_front: LlmFront | None = None,
        held: bool = False,
    ) -> str:
        """Record that a request now owes an audit event; returns the event id it must carry.

        The caller's owner (`Caller.owner()`) goes with it, so an event rebuilt after a crash names who
        was calling as fully as the event the request would have made; so does `parent_id` (the Code Mode
        run a script's tool call belongs to), so that event still links to its run, and `llm_front` (the
        API an LLM request came in through; only when given, so a tool call's record is no longer). `held`: the caller
        calls `routed` before it forwards the request (or forwards it only after this turn of the event
        loop), so the B record waits for the end of the turn, written with the R record in one write, or
        not at all when the event came first (~1 µs a request)."""
        event_id = new_id()
        record = {
            "id": event_id,
            "ts": time.time(),
            "kind": kind,
            "name": name,
            "key_id": key_id,
            "key_name": key_name,
            "user_id": user_id,
            "team_id": team_id,
            "customer_id": customer_id,
            "parent_id": parent_id,
            "trace_id": trace_id,
            "request_bytes": request_bytes,
        }
        if llm_front is not None:
            record["llm_front"] = llm_front
        if held and self._hold(event_id, record):
            self._open_begun[event_id] = None
        else:
            self._open_begun[event_id] = line = b"B " + _dumps(record) + b"\n"
            self._write(line)
        return event_id

    def routed(
        self, event_id: str, server: str, tool: str, arguments: object = None, *, kind: str | None = None
    ) -> str | None:
        """Record where a begun request is being forwarded (its server and tool) and the sha256 of its arguments.

        As its event would; called once the handler has resolved them. One write more per forwarded
        request (~5 µs), and its digest (~4 µs for small arguments), returned for the event to record
        (`content_fields(arguments_sha256=...)`) instead of taking it again; None when nothing was recorded.
        `kind`: the event's kind when the route tells it and the begun record could not (a `tools/call` of a
        Code Mode meta-tool is a `code_run`)."""
        if event_id not in self._open_begun:  # no event owed (or already emitted)
            return None
        digest = sha256_of(arguments) if arguments is not None else None
        route: dict[str, object] = {"server": server, "tool": tool}
        if digest is not None:
            route["arguments_sha256"] = digest
        if kind is not None:
            route["kind"] = kind
        held = self._held.pop(event_id, None)
        if held is not None:  # not written yet: one B record says both (the reader takes its route as an R's)
            if not self._held and self._flush is not None:  # the last one held: nothing left for the turn's end
                self._flush.cancel()
            held.update(route)
            self._open_begun[event_id] = line = b"B " + _dumps(held) + b"\n"
        else:
            self._open_routed[event_id] = line = b"R " + _dumps({"id": event_id, **route}) + b"\n"
        self._write(line)
        return digest

    def emitted(self, event: AuditEvent, json: bytes | None = None) -> bytes | None:
        """Record an event just queued for publishing (call in publishing order), given its JSON if already written.

        (`AuditChain.link_encoded`); returns its JSON (for the publisher, which would serialize it again
        otherwise), None if it has none."""
        begun = self._open_begun.pop(event.event_id, None)  # None also when held: never written, nothing owed on disk
        self._open_routed.pop(event.event_id, None)
        if self._held.pop(event.event_id, None) is not None and not self._held and self._flush is not None:
            self._flush.cancel()  # the last one held: nothing left for the turn's end
        try:
            json = json or event.model_dump_json().encode()
        except Exception:  # unserializable: the publisher dead-letters it; a replay must not invent one
            self._unacked.append(None)
            if begun is not None:
                self._write(b"X " + event.event_id.encode() + b"\n")
            return None
        line = b"E " + json + b"\n"
        self._unacked.append(line)
        self._write(line)
        return json

    def dropped(self, event_id: str) -> None:
        """The producer gave up on an event (its buffer is full): a replay must not invent one."""
        self._open_routed.pop(event_id, None)
        self._held.pop(event_id, None)
        if self._open_begun.pop(event_id, None) is not None:  # written (not held): an X record settles it
            self._write(b"X " + event_id.encode() + b"\n")

    # ------------------------------------------------------------------ the publisher's side

    def acked(self, count: int) -> None:
        """The next `count` emitted events are acked (or dead-lettered): one A record for them all."""
        journaled = 0
        for _ in range(min(count, len(self._unacked))):
            journaled += self._unacked.popleft() is not None
        if journaled:
            self._acked_here += journaled
            self._write(b"A %d\n" % self._acked_here)
        if self._size >= self._segment_bytes:
            self.rotate()

    def rotate(self) -> None:
        """Start a new segment with only what is still open, then delete the old one."""
        old_fd, old_path = self._fd, self._path
        self._settle_held()  # carried into the new segment with the other open B records
        self._number += 1
        self._open_segment(
            [
                *filter(None, self._open_begun.values()),
                *self._open_routed.values(),
                *(line for line in self._unacked if line is not None),
            ]
        )
        os.close(old_fd)
        old_path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ start and stop

    def replay(self, emit: Callable[[AuditEvent], object]) -> int:
        """Emit what a previous process of this slot left owed, then delete its segments.

        `emit` journals each event again (into the current segment) before the old ones go."""
        if not self._previous:
            return 0
        contents = read_segments(self._previous)
        owed = contents.owed()
        for event in owed:
            emit(event)
        if contents.skipped:
            log.warning("audit journal: %d partial record(s) ignored in %s", contents.skipped, self.directory)
        if owed:
            log.warning("audit journal: re-published %d event(s) a previous process left unacked", len(owed))
        for path in self._previous:
            path.unlink(missing_ok=True)
        self._previous = []
        return len(owed)

    @property
    def open_records(self) -> int:
        """Requests without their event plus events not acked yet."""
        return len(self._open_begun) + len(self._unacked)

    def close(self) -> None:
        """Release the slot; the segment is deleted when nothing in it is owed any more."""
        if self._fd < 0:
            return
        self._write_held()
        os.close(self._fd)
        self._fd = -1
        if not self.open_records:
            self._path.unlink(missing_ok=True)
        os.close(self._lock)

    # ------------------------------------------------------------------ files

    def _open_segment(self, carried: list[bytes]) -> None:
        path = self.directory / f"{self._number:012d}{_SEGMENT_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        self._fd, self._path, self._size, self._acked_here = fd, path, 0, 0
        if carried:
            self._write(b"".join(carried))

    def _hold(self, event_id: str, record: dict[str, object]) -> bool:
        """Keep a B record for the end of this turn of the event loop; False outside one (write it now)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if not self._held:
            self._flush = loop.call_soon(self._write_held)
        self._held[event_id] = record
        return True

    def _settle_held(self) -> bytes:
        """The B records still held, encoded: now open records like any written one."""
        lines: list[bytes] = []
        for event_id, record in self._held.items():
            self._open_begun[event_id] = line = b"B " + _dumps(record) + b"\n"
            lines.append(line)
        self._held.clear()
        return b"".join(lines)

    def _write_held(self) -> None:
        """The B records still held, in one write (the loop runs this at the end of a turn that left any)."""
        if self._held:  # a rotation may have written them already
            lines = self._settle_held()
            if self._fd >= 0:
                self._write(lines)

    def _write(self, data: bytes) -> None:
        size = len(data)
        written = os.write(self._fd, data)
        if written < size:  # a short write (a full disk's last bytes, a signal): the rest, until it is all out
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(self._fd, view) :]
        self._size += size


def open_slot(directory: str, slot: str, *, segment_bytes: int = 4 * 1024 * 1024) -> AuditJournal | None:
    """The journal of one replica of a producer (ingress, codemode, admin) as its settings name it.

    `directory` (`BASTION_AUDIT_JOURNAL_DIR`; empty, no journal) and `slot`, the replica's
    `BASTION_INSTANCE` or, without one, the service's name, so that a restarted replica finds its
    predecessor's journal."""
    if not directory:
        return None
    return AuditJournal(Path(directory) / slot, segment_bytes=segment_bytes)
