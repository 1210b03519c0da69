"""What of a routed request's `params` goes upstream besides its target: `_meta` without the
2026-07-28 envelope (`forwarded_meta`), and a `tools/call`'s other fields (`call_extra`)."""

from __future__ import annotations

from typing import Any

import pytest

from services.ingress.routed_sender import call_extra, forwarded_meta

pytestmark = pytest.mark.unit

ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "agent", "version": "1"},
}


@pytest.mark.parametrize(
    ("meta", "forwarded"),
    [
        (ENVELOPE, None),
        ({}, None),
        ({"io.modelcontextprotocol/protocolVersion": "2026-07-28"}, None),
        (ENVELOPE | {"progressToken": 7}, {"progressToken": 7}),
        ({"progressToken": 7, "traceparent": "00-x"}, {"progressToken": 7, "traceparent": "00-x"}),
        ("not an object", None),
    ],
)
def test_meta_goes_upstream_without_the_envelope(meta: Any, forwarded: Any) -> None:
    assert forwarded_meta({"name": "t", "_meta": meta}) == forwarded
    assert forwarded_meta({"name": "t"}) is None


@pytest.mark.parametrize(
    ("params", "extra"),
    [
        ({"name": "t", "arguments": {}, "_meta": ENVELOPE}, None),
        ({"name": "t"}, None),
        ({"name": "t", "inputResponses": {"a": 1}}, {"inputResponses": {"a": 1}}),
        ({"name": "t", "arguments": {}, "requestState": "s", "x": None}, {"requestState": "s", "x": None}),
    ],
)
def test_a_calls_other_fields_go_upstream_as_they_are(params: dict[str, Any], extra: Any) -> None:
    assert call_extra(params) == extra
