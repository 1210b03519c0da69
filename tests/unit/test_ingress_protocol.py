import pytest
from mcp_types import SERVER_INFO_META_KEY

from bastion_ingress.protocol import SERVER_INFO, negotiate_handshake, shape_result

pytestmark = pytest.mark.unit


def test_handshake_negotiation():
    for version in ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"):
        assert negotiate_handshake(version) == version
    assert negotiate_handshake("1999-01-01") == "2025-11-25"
    assert negotiate_handshake(None) == "2025-11-25"


def test_modern_results_get_result_type_and_our_server_info():
    upstream = {"content": [], "_meta": {SERVER_INFO_META_KEY: {"name": "upstream"}, "x": 1}}
    shaped = shape_result(upstream, "2026-07-28")
    assert shaped["resultType"] == "complete"
    assert shaped["_meta"] == {SERVER_INFO_META_KEY: SERVER_INFO, "x": 1}
    assert upstream["_meta"][SERVER_INFO_META_KEY] == {"name": "upstream"}  # input untouched


def test_legacy_results_lose_later_revision_fields():
    upstream = {"content": [], "resultType": "complete", "ttlMs": 0, "_meta": {SERVER_INFO_META_KEY: {}}}
    assert shape_result(upstream, "2025-06-18") == {"content": []}
    kept = {"content": [], "_meta": {SERVER_INFO_META_KEY: {}, "progressToken": 1}}
    assert shape_result(kept, "2025-03-26") == {"content": [], "_meta": {"progressToken": 1}}
    plain = {"content": [], "isError": True}
    assert shape_result(plain, "2025-11-25") is plain
