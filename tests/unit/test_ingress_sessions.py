import pytest

from services.ingress.sessions import SessionCodec

pytestmark = pytest.mark.unit


def test_round_trip_across_replicas_sharing_the_secret():
    a, b = SessionCodec(b"shared"), SessionCodec(b"shared")
    sid = a.issue("2025-06-18", "k" * 64)
    info = b.verify(sid, "k" * 64)
    assert info is not None and info.protocol_version == "2025-06-18"


def test_forged_or_foreign_sessions_are_refused():
    codec = SessionCodec(b"shared")
    sid = codec.issue("2025-06-18", "a" * 64)
    assert codec.verify(sid, "b" * 64) is None  # another key
    assert SessionCodec(b"other").verify(sid, "a" * 64) is None  # another deployment
    body, _, sig = sid.partition(".")
    assert codec.verify(body[:-2] + "AA." + sig, "a" * 64) is None  # tampered
    assert codec.verify("garbage", "a" * 64) is None
    assert codec.verify("", "a" * 64) is None


def test_ids_are_unique_and_header_safe():
    codec = SessionCodec()
    ids = {codec.issue("2025-11-25", "k") for _ in range(200)}
    assert len(ids) == 200
    assert all(all(0x21 <= ord(c) <= 0x7E for c in sid) for sid in ids)
