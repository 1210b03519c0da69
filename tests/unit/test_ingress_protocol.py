import pytest
from mcp_types import SERVER_INFO_META_KEY

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import GatewayError
from services.ingress.protocol import SERVER_INFO, negotiate_handshake, shape_result, tool_error_result

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("requested", "negotiated"),
    [
        ("2024-11-05", "2024-11-05"),
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("1999-01-01", "2025-11-25"),  # unknown: the latest handshake revision
        (None, "2025-11-25"),
    ],
)
def test_handshake_negotiation(requested, negotiated):
    assert negotiate_handshake(requested) == negotiated


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


INVALID = GatewayError(kind=ErrorKind.INVALID_ARGUMENTS, message="arguments.text: required, but missing")


@pytest.mark.parametrize(
    ("version", "as_tool_result"),
    [("2024-11-05", False), ("2025-03-26", False), ("2025-06-18", False), ("2025-11-25", True), ("2026-07-28", True)],
)
def test_invalid_arguments_are_a_tool_result_from_2025_11_25_on(version, as_tool_result):
    result = tool_error_result(INVALID, version)
    if as_tool_result:
        assert result == {"content": [{"type": "text", "text": INVALID.message}], "isError": True}
    else:
        assert result is None  # the caller answers JSON-RPC -32602


@pytest.mark.parametrize("kind", [k for k in ErrorKind if k is not ErrorKind.INVALID_ARGUMENTS])
def test_other_refusals_stay_json_rpc_errors_on_every_revision(kind):
    assert tool_error_result(GatewayError(kind=kind, message="no"), "2026-07-28") is None
