"""Audit events are cut to size and say so (`libs.common.audit.audit_fields`)."""

from __future__ import annotations

import pytest

from libs.common.audit.audit_fields import FieldLimits, bounded, cut_utf8, measured
from libs.common.contracts.messages import AuditEvent

pytestmark = pytest.mark.unit


def _event(**fields: object) -> AuditEvent:
    return AuditEvent.model_validate({"status": "error", "latency_ms": 1.0} | fields)


def test_a_huge_name_and_the_error_quoting_it_are_cut_and_named_with_their_size() -> None:
    name = "x" * 3_800_000
    event = bounded(_event(name=name, error=f"Unknown tool: {name!r}"), FieldLimits(text=1024, error=8192))
    assert len(event.name.encode()) == 1024 and event.name == name[:1024]
    assert len(event.error.encode()) == 8192  # type: ignore[union-attr]
    assert event.truncated == {"name": 3_800_000, "error": 3_800_000 + len("Unknown tool: ''")}
    assert len(event.model_dump_json()) < 16 * 1024


def test_an_event_within_the_limits_is_left_alone() -> None:
    event = _event(name="echo__add", error="boom", key_name="ci", trace_id="t" * 1024)
    assert bounded(event, FieldLimits()) is event


def test_fields_each_within_their_limit_are_left_alone_however_large_together() -> None:
    # the quick check (all of a group's characters, 4 bytes each) fails here: each field is checked alone
    names = {field: "n" * 1024 for field in ("name", "tool", "server", "key_name", "trace_id")}
    event = _event(**names, arguments="a" * 65536, result="r" * 65536, error="e" * 8192)
    assert bounded(event, FieldLimits()) is event
    over = bounded(_event(**(names | {"tool": "é" * 513})), FieldLimits())
    assert over.truncated == {"tool": 1026} and over.name == "n" * 1024


def test_the_given_event_is_never_changed() -> None:
    event = _event(name="n" * 5000)
    cut = bounded(event, FieldLimits())
    assert len(event.name) == 5000 and event.truncated == {}
    assert len(cut.name) == 1024 and cut.truncated == {"name": 5000} and cut.event_id == event.event_id


def test_cuts_never_split_a_character() -> None:
    text = "é" * 100  # 2 bytes each
    cut, size = cut_utf8(text, 65)
    assert size == 200 and cut == "é" * 32 and len(cut.encode()) == 64
    event = bounded(_event(tool="🙂" * 1000), FieldLimits(text=64))
    assert event.tool == "🙂" * 16 and event.truncated == {"tool": 4000}


def test_a_producers_own_truncated_map_keeps_only_field_names() -> None:
    event = bounded(_event(name="n" * 2000, truncated={"y" * 10_000: 5, "error": 9}), FieldLimits())
    assert event.truncated == {"error": 9, "name": 2000}


def test_limits_below_64_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 64"):
        FieldLimits(text=10)


def test_measured_counts_the_text_the_bounded_event_holds() -> None:
    """The publisher weighs an event it holds by this measure: the text left after any cut, never the
    text the producer handed in (a 3.8 MB name is held as its first KiB)."""
    event = _event(event_id="e" * 32, name="echo__add", key_name="ci", error="boom", arguments='{"a":1}')
    same, size = measured(event, FieldLimits())
    assert same is event and size == 32 + len("echo__add") + len("ci") + len("boom") + len('{"a":1}')
    cut, size = measured(_event(event_id="e" * 32, name="n" * 3_800_000, result="r" * 100), FieldLimits())
    assert cut.truncated == {"name": 3_800_000} and size == 32 + 1024 + 100
