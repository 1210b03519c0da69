"""Refused credentials are counted and folded into bounded audit buckets (`libs.common.runtime.refusals`)."""

from __future__ import annotations

import hashlib
import secrets

import pytest
from prometheus_client import REGISTRY

from libs.common.audit.audit_chain import AuditChain, event_hash
from libs.common.contracts.messages import AuditEvent
from libs.common.runtime.refusals import AUTH_REFUSED_KIND, OVERFLOW, RefusalLog, credential_label
from services.audit.schema import from_row, to_row
from tests.support.polling import poll_until

pytestmark = pytest.mark.unit


def _counted(surface: str, reason: str) -> float:
    return REGISTRY.get_sample_value("bastion_auth_refused_total", {"surface": surface, "reason": reason}) or 0.0


def _pieces(secret: str, size: int = 12) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_label_names_the_kind_and_a_digest_prefix_never_the_secret() -> None:
    key = "bk_" + secrets.token_urlsafe(32)
    token = "bat_" + secrets.token_urlsafe(32)
    jwt = "eyJhbGciOiJFUzI1NiJ9." + secrets.token_urlsafe(40) + "." + secrets.token_urlsafe(60)
    odd = secrets.token_urlsafe(40)
    assert credential_label(key) == "bk_ sha256:" + hashlib.sha256(key.encode()).hexdigest()[:12]
    assert credential_label(token).startswith("bat_ sha256:")
    assert credential_label(jwt).startswith("jwt sha256:")
    assert credential_label(odd).startswith("sha256:")
    assert credential_label(odd, "session").startswith("session sha256:")
    assert credential_label(None) == credential_label("") == "none"
    for secret in (key, token, jwt, odd):
        label = credential_label(secret)
        assert not any(piece in label for piece in _pieces(secret, 6)), label


def test_refusals_of_one_bucket_become_one_event_with_their_count_first_and_last_seen() -> None:
    events: list[AuditEvent] = []
    clock = Clock()
    log = RefusalLog(events.append, window=10, max_buckets=10, clock=clock)
    key = "bk_" + secrets.token_urlsafe(32)
    before = _counted("mcp", "invalid"), _counted("llm", "missing")
    for _ in range(5):
        log.refused("mcp", "invalid", "10.0.0.7", credential_label(key))
        clock.now += 1
    log.refused("llm", "missing", "10.0.0.7", credential_label(None))
    assert (_counted("mcp", "invalid") - before[0], _counted("llm", "missing") - before[1]) == (5, 1)
    assert events == []  # nothing is audited before the window ends
    assert log.flush() == 2
    mcp = next(e for e in events if e.name == "mcp")
    assert (mcp.kind, mcp.status, mcp.error_kind, mcp.refusals) == (AUTH_REFUSED_KIND, "denied", "invalid", 5)
    assert (mcp.actor_address, mcp.credential) == ("10.0.0.7", credential_label(key))
    assert (mcp.first_seen, mcp.last_seen) == (1_700_000_000.0, 1_700_000_004.0)
    assert mcp.error is not None and "5 request(s) refused on /mcp" in mcp.error
    assert log.flush() == 0  # the window's buckets are gone with it


def test_a_flood_of_distinct_keys_fills_the_bound_then_one_overflow_bucket_per_surface() -> None:
    events: list[AuditEvent] = []
    log = RefusalLog(events.append, window=10, max_buckets=8)
    for n in range(1000):
        log.refused("mcp", "invalid" if n % 2 else "revoked", f"10.1.{n // 256}.{n % 256}", f"bk_ sha256:{n:012x}")
    log.refused("llm", "expired", "10.9.9.9", "jwt sha256:000000000000")
    assert log.flush() == 10  # 8 buckets, the mcp overflow, the llm overflow
    regular = [e for e in events if e.credential != OVERFLOW]
    assert len(regular) == 8 and all(e.refusals == 1 for e in regular)
    overflow = {e.name: e for e in events if e.credential == OVERFLOW}
    assert overflow["mcp"].refusals == 992 and overflow["mcp"].error_kind == "mixed"
    assert overflow["mcp"].actor_address == OVERFLOW
    assert overflow["mcp"].error is not None and "496 invalid, 496 revoked" in overflow["mcp"].error
    assert (overflow["llm"].refusals, overflow["llm"].error_kind) == (1, "expired")
    assert sum(e.refusals or 0 for e in events) == 1001


def test_a_refusal_event_round_trips_its_row_and_keeps_its_hash() -> None:
    events: list[AuditEvent] = []
    log = RefusalLog(events.append)
    log.refused("admin", "expired", "::1", credential_label("bat_" + secrets.token_urlsafe(32)))
    log.flush()
    linked = AuditChain("admin-test").link(events[0])
    stored = from_row(to_row(linked))
    assert stored == linked and event_hash(stored) == linked.hash


async def test_each_window_ends_in_its_events_and_closing_flushes_the_last() -> None:
    events: list[AuditEvent] = []
    log = RefusalLog(events.append, window=0.05)
    log.start()
    log.refused("mcp", "missing", "127.0.0.1", "none")
    await poll_until(lambda: events, "the window's event")
    log.refused("mcp", "missing", "127.0.0.1", "none")
    await log.aclose()
    assert sum(e.refusals or 0 for e in events) == 2
