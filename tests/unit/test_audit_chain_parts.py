"""The pure parts of tamper evidence and content recording: canonical hashing, chain linking, the
chain walk, checkpoint signatures, content digests and secret redaction."""

from __future__ import annotations

import hashlib

import pytest

from libs.common.audit.audit_chain import AuditChain, canonical, checkpoint_signature, event_hash
from libs.common.audit.audit_content import content_fields, to_json
from libs.common.audit.audit_fields import FieldLimits, bounded
from libs.common.contracts.messages import AuditEvent, InterceptorDecision
from services.admin.api.redaction import REDACTED, redacted
from services.audit.verify import Checkpoint, verify_chain, verify_checkpoints

pytestmark = pytest.mark.unit

KEY = b"k" * 32


def _chain(n: int) -> list[AuditEvent]:
    chain = AuditChain("ingress-a")
    return [chain.link(AuditEvent(tool=f"t{i}", status="ok", latency_ms=float(i), ts=1.7e9 + i / 3)) for i in range(n)]


def test_canonical_form_leaves_out_empty_fields_so_columns_added_later_keep_old_hashes() -> None:
    event = AuditEvent(event_id="e1", ts=1.7e9, tool="t", status="ok", latency_ms=2.0)
    text = canonical(event).decode()
    assert '"tool":"t"' in text and "parent_id" not in text and "hash" not in text
    assert event_hash(event) == event_hash(event.model_copy(update={"parent_id": None, "truncated": {}}))
    assert event_hash(event) != event_hash(event.model_copy(update={"tool": "u"}))


def test_links_carry_seq_prev_hash_and_microsecond_times() -> None:
    rows = _chain(3)
    assert [row.seq for row in rows] == [1, 2, 3]
    assert [row.prev_hash for row in rows] == ["", rows[0].hash, rows[1].hash]
    assert all(row.ts * 1_000_000 == round(row.ts * 1_000_000) for row in rows)
    assert all(event_hash(row) == row.hash for row in rows)


def test_a_link_s_json_reads_back_as_the_linked_event_whose_hash_verifies() -> None:
    chain = AuditChain("ingress-a")
    events = [
        AuditEvent(tool="t", status="ok", latency_ms=0.0, cost_usd=0.00001, ts=1.7e9 + 1 / 3),
        AuditEvent(name='ü\n"x"', status="error", latency_ms=3.0, truncated={"result": 2**70}),
        AuditEvent(status="ok", latency_ms=1.5, tool_calls=["a", "b"], arguments='{"k":1}', upstream_ms=1e20),
    ]
    for event in events:
        linked, encoded = chain.link_encoded(event)
        read = AuditEvent.model_validate_json(encoded)
        assert read == AuditEvent.model_validate_json(linked.model_dump_json())
        assert read.hash == linked.hash == event_hash(read)
    assert [chain.seq, chain.head] == [3, linked.hash]


def test_a_link_written_from_the_event_s_own_values_is_pydantic_s_json_and_canonical_hash() -> None:
    # the usual event (nested interceptor decisions, a truncated map, text JSON escapes) takes the
    # fast path, which never dumps the model: its bytes and hash must be the dump's, byte for byte
    chain = AuditChain("ingress-a")
    decision = InterceptorDecision(interceptor="guardrails", rule="r1", action="warn", where="result")
    events = [
        AuditEvent(status="ok", latency_ms=12.5, interceptions=[decision], truncated={"result": 70_000}),
        AuditEvent(name='ü\n"x" \U0001f600', status="tool_error", latency_ms=3, cost_usd=0.25, tool_calls=["a"]),
        AuditEvent(status="error", error_code=-32602, latency_ms=0.0, ts=1.7e9),
    ]
    head = ""
    for seq, event in enumerate(events, 1):
        linked, encoded = chain.link_encoded(event)
        assert encoded == linked.model_dump_json().encode()
        # the same model `model_copy` makes, fields set included; the given event left as it was
        chained = {"ts": linked.ts, "producer": "ingress-a", "seq": seq, "prev_hash": head, "hash": linked.hash}
        assert linked == event.model_copy(update=chained) and linked.__dict__ is not event.__dict__
        assert linked.model_fields_set == event.model_fields_set | chained.keys()
        assert (event.seq, event.hash, event.producer) == (0, "", "")
        assert linked.hash == event_hash(linked) == hashlib.sha256(canonical(linked)).hexdigest()
        assert (linked.seq, linked.prev_hash, linked.producer) == (seq, head, "ingress-a")
        head = linked.hash


def test_an_intact_chain_verifies_and_each_tamper_is_named() -> None:
    rows = _chain(6)
    assert verify_chain(rows, anchored=True) is None

    changed = [*rows[:2], rows[2].model_copy(update={"status": "error"}), *rows[3:]]
    modified = verify_chain(changed, anchored=True)
    assert modified is not None and (modified.problem, modified.event_id) == ("modified", rows[2].event_id)

    gap = verify_chain([*rows[:3], *rows[4:]], anchored=True)
    assert gap is not None and (gap.problem, gap.seq) == ("deleted", 4)

    forged = rows[2].model_copy(update={"event_id": "zz-forged", "tool": "other"})
    inserted = verify_chain([*rows[:3], forged, *rows[3:]], anchored=True)
    assert inserted is not None and (inserted.problem, inserted.event_id) == ("inserted", "zz-forged")

    swapped = [*rows[:2], rows[3].model_copy(update={"seq": 3}), rows[2].model_copy(update={"seq": 4}), *rows[4:]]
    reordered = verify_chain(swapped, anchored=True)
    assert reordered is not None and (reordered.problem, reordered.event_id) == ("reordered", rows[3].event_id)


def test_a_cut_chain_is_checked_from_its_first_row_only_when_not_anchored() -> None:
    rows = _chain(5)[2:]
    assert verify_chain(rows, anchored=False) is None
    finding = verify_chain(rows, anchored=True)
    assert finding is not None and (finding.problem, finding.seq) == ("deleted", 1)


def test_checkpoints_need_the_key_and_the_same_head() -> None:
    rows = _chain(4)
    head = rows[-1]
    good = Checkpoint("ingress-a", 4, head.hash, 1.7e9, checkpoint_signature(KEY, "ingress-a", 4, head.hash, 1.7e9))
    heads = {("ingress-a", 4): head}
    assert verify_checkpoints(KEY, [good], heads) == (None, 1)
    forged = Checkpoint(
        "ingress-a", 4, head.hash, 1.7e9, checkpoint_signature(b"x" * 32, "ingress-a", 4, head.hash, 1.7e9)
    )
    assert verify_checkpoints(KEY, [forged], heads)[0].problem == "checkpoint"  # type: ignore[union-attr]
    rehashed = {("ingress-a", 4): head.model_copy(update={"hash": "0" * 64})}
    assert verify_checkpoints(KEY, [good], rehashed)[0].problem == "modified"  # type: ignore[union-attr]
    assert verify_checkpoints(KEY, [good], {})[0].problem == "deleted"  # type: ignore[union-attr]


def test_content_is_kept_or_reduced_to_its_digest() -> None:
    kept = content_fields({"b": 1, "a": "x"}, {"content": []}, keep=True)
    assert kept["arguments"] == '{"a":"x","b":1}'
    assert kept["arguments_sha256"] == hashlib.sha256(b'{"a":"x","b":1}').hexdigest()
    hidden = content_fields({"b": 1, "a": "x"}, {"content": []}, keep=False)
    assert hidden["arguments"] is None and hidden["result"] is None
    assert hidden["arguments_sha256"] == kept["arguments_sha256"] and hidden["result_sha256"] == kept["result_sha256"]
    assert content_fields(None, None, keep=True) == {}


def test_long_content_is_cut_and_listed_while_its_digest_names_the_whole() -> None:
    fields = content_fields({"text": "x" * 5000}, None, keep=True)
    event = AuditEvent(status="ok", latency_ms=1.0, **fields)
    cut = bounded(event, FieldLimits(content=1024))
    assert cut.arguments is not None and len(cut.arguments) == 1024
    assert cut.truncated == {"arguments": len(fields["arguments"] or "")}
    assert cut.arguments_sha256 == fields["arguments_sha256"]


def test_content_over_the_limit_is_cut_before_it_is_recorded_on_a_character_boundary() -> None:
    result = ('{"text":"' + "é" * 3000 + '"}').encode()  # 2 bytes a character: a cut may split one
    fields = content_fields({"text": "x" * 5000}, result, keep=True, limit=1024)
    assert fields["truncated"] == {"arguments": len(to_json({"text": "x" * 5000})), "result": len(result)}
    assert fields["result"] == result[:1023].decode() and len(fields["arguments"].encode()) == 1024
    assert fields["result_sha256"] == hashlib.sha256(result).hexdigest()
    event = AuditEvent(status="ok", latency_ms=1.0, **fields)
    assert bounded(event, FieldLimits(content=1024)) is event  # nothing left for the publisher to cut
    small = content_fields({"a": 1}, b'{"content":[]}', keep=True, limit=1024)
    assert "truncated" not in small and small["result"] == '{"content":[]}'


def test_redaction_hides_env_and_header_values_and_credential_fields() -> None:
    record = {
        "name": "gh",
        "config": {"env": {"GITHUB_TOKEN": "ghp_x"}, "headers": {"Authorization": "Bearer y"}, "url": "http://h"},
        "oauth": {"client_secret": "s3", "client_id": "public"},
        "api_key": "",
    }
    clean = redacted(record)
    assert clean["config"]["env"] == {"GITHUB_TOKEN": REDACTED}
    assert clean["config"]["headers"] == {"Authorization": REDACTED}
    assert clean["oauth"] == {"client_secret": REDACTED, "client_id": "public"}
    assert clean["api_key"] == "" and clean["config"]["url"] == "http://h"
    assert record["config"]["env"] == {"GITHUB_TOKEN": "ghp_x"}  # type: ignore[index]
