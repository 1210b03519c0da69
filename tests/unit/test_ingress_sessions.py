import base64
import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from services.ingress.sessions import session_ids as sessions
from services.ingress.sessions.session_ids import SessionCodec

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


def test_an_id_expires_after_the_max_age_it_was_issued_with(monkeypatch):
    codec = SessionCodec(b"shared", max_age=60)
    sid = codec.issue("2025-06-18", "k" * 64)
    assert codec.verify(sid, "k" * 64) is not None  # now remembered as verified
    later = time.time() + 61
    monkeypatch.setattr(sessions.time, "time", lambda: later)
    assert codec.verify(sid, "k" * 64) is None  # the remembered one too
    assert SessionCodec(b"shared", max_age=3600).verify(sid, "k" * 64) is None  # another replica


def test_unsigned_or_otherwise_signed_ids_are_refused():
    codec = SessionCodec(b"shared")
    sid = codec.issue("2025-06-18", "k" * 64)
    _, claims, _ = sid.split(".")
    unsigned = _b64(b'{"alg":"none"}') + "." + claims + "."
    assert codec.verify(unsigned, "k" * 64) is None
    other_key = jwt.encode({"alg": "HS256"}, {"v": "2025-06-18", "k": "x", "exp": 2**40}, OctKey.generate_key(256))
    assert codec.verify(other_key, "k" * 64) is None
    assert codec.verify(sid + "x" * 5000, "k" * 64) is None  # too long to be ours: not even checked


def test_an_id_belongs_to_its_key_even_when_key_ids_share_a_long_prefix():
    codec = SessionCodec(b"shared")
    alice, alicia = "user:" + "a" * 40 + "-1", "user:" + "a" * 40 + "-2"  # OAuth callers: not hashes
    sid = codec.issue("2025-06-18", alice)
    assert codec.verify(sid, alice) is not None and codec.verify(sid, alicia) is None


def test_ids_stay_compact_and_carry_what_the_agent_declared():
    codec = SessionCodec(b"shared")
    sid = codec.issue("2025-11-25", "k" * 64, ("sampling", "elicitation", "roots"))
    info = codec.verify(sid, "k" * 64)
    assert info is not None and info.client == ("sampling", "elicitation", "roots")
    assert len(codec.issue("2025-06-18", "k" * 64)) < 180 and len(sid) < 240


def test_reply_ids_name_their_subject_for_their_key_only():
    codec = SessionCodec(b"shared")
    reply = codec.reply_id("_INBOX.abcdefghijklmnopqrstuv.17", "k" * 64)
    assert SessionCodec(b"shared").reply_subject(reply, "k" * 64) == "_INBOX.abcdefghijklmnopqrstuv.17"
    assert (
        codec.reply_subject(reply, "j" * 64) is None and SessionCodec(b"other").reply_subject(reply, "k" * 64) is None
    )
    assert len(reply) < 256  # within the default cap on JSON-RPC ids an agent's answer carries back


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
