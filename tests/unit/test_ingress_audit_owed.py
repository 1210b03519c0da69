"""Every request that reaches an audited handler gets exactly one audit event, whatever happens
inside it; and an answer's JSON encoding cannot fail."""

from __future__ import annotations

import json

import orjson
import pytest

from libs.common.contracts import json_codec
from libs.common.contracts.errors import JSONRPC_CODE, ErrorKind
from libs.common.contracts.messages import (
    Caller,
    CallOutcome,
    CatalogTool,
    GatewayError,
    InterceptorDecision,
    ServerCatalog,
    ToolCall,
)
from services.ingress.audit_events import AuditRecorder, Ending, audit_name
from services.ingress.auth.keys import KeyDirectory
from services.ingress.catalog.aggregated import Catalog
from services.ingress.handlers import Handlers, RequestContext
from services.ingress.protocol import encode_json
from services.ingress.sending.routed_sender import RoutedSender

pytestmark = pytest.mark.unit


class _BrokenBus:
    """The NATS boundary failing in a way the gateway does not translate (a connection error)."""

    async def call(self, call: ToolCall) -> CallOutcome:
        raise ConnectionError("nats: connection closed")


def _handlers() -> Handlers:
    catalog = Catalog()
    tool = CatalogTool(tool="add", definition={"name": "add", "inputSchema": {"type": "object"}})
    catalog.put("echo", ServerCatalog(server="echo", status="ready", tools=[tool]).model_dump_json().encode())
    bus = _BrokenBus()
    sender = RoutedSender(bus, call_timeout=5.0)  # type: ignore[arg-type]
    return Handlers(catalog, KeyDirectory(), bus, sender, AuditRecorder())  # type: ignore[arg-type]


def _ctx() -> RequestContext:
    return RequestContext(caller=Caller(key_id="k" * 64, key_name="dev"), version="2025-06-18", request_id=7)


async def test_a_failure_inside_a_handler_is_an_internal_error_with_its_audit_event():
    handlers = _handlers()
    payload, audit = await handlers.dispatch(_ctx(), "tools/call", {"name": "echo__add", "arguments": {"a": 1}})
    assert payload["error"]["code"] == -32603 and payload["id"] == 7
    assert audit is not None and audit.status == "error" and audit.error_kind == "internal"
    assert audit.name == "echo__add" and "may have run" in (audit.error or "")
    assert handlers.audits_owed == 1


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("tools/call", {}),
        ("tools/call", {"name": "echo__add", "arguments": [1]}),
        ("prompts/get", {"name": 5}),
        ("resources/read", {}),
        ("completion/complete", {"ref": "nope"}),
        ("tools/call", [1, 2]),
    ],
)
async def test_an_audited_request_refused_for_its_params_still_has_its_event(method, params):
    handlers = _handlers()
    payload, audit = await handlers.dispatch(_ctx(), method, params)
    assert payload["error"]["code"] == -32602
    assert audit is not None and audit.error_kind == "invalid_arguments" and audit.error
    assert handlers.audits_owed == 1


async def test_unaudited_methods_owe_nothing():
    handlers = _handlers()
    payload, audit = await handlers.dispatch(_ctx(), "ping", None)
    assert payload["result"] == {} and audit is None and handlers.audits_owed == 0


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("value", [2**64, -(2**80), _nested(300)])
def test_what_orjson_refuses_is_still_encoded_exactly(value):
    message = {"jsonrpc": "2.0", "id": 1, "result": {"structuredContent": {"v": value}}}
    with pytest.raises(TypeError):
        orjson.dumps(message)
    assert json.loads(encode_json(message)) == message


def test_what_nothing_can_encode_becomes_an_internal_error():
    message = {"jsonrpc": "2.0", "id": 3, "result": {"v": _nested(5000)}}
    answer = orjson.loads(encode_json(message))
    assert answer["id"] == 3 and answer["error"]["code"] == -32603 and "could not encode" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": 18446744073709551621}', {"a": 2**64 + 5}),
        (b'{"a": -92233720368547758090}', {"a": -92233720368547758090}),
        (b'{"a": "12345678901234567890123", "b": 1.5}', {"a": "12345678901234567890123", "b": 1.5}),
        (b'{"a": 1}', {"a": 1}),
    ],
)
def test_request_bodies_keep_integers_beyond_64_bits_exact(body, expected):
    parsed = json_codec.loads(body)
    assert parsed == expected and type(parsed["a"]) is type(expected["a"])


@pytest.mark.parametrize(
    "body", [b'{"a": NaN, "n": 123456789012345678901}', b"[" * 100_000 + b"18446744073709551621" + b"]" * 100_000]
)
def test_what_is_not_json_is_refused_on_either_parser(body):
    with pytest.raises(ValueError):
        json_codec.loads(body)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"name": "echo__add", "uri": "file:///a"}, "echo__add"),
        ({"name": 5, "uri": "file:///a"}, "file:///a"),
        ({"uri": None, "ref": {"type": "ref/prompt", "name": "greet", "uri": "x"}}, "greet"),
        ({"ref": {"type": "ref/resource", "name": 1, "uri": "file:///{p}"}}, "file:///{p}"),
        ({"ref": ["greet"], "arguments": {"name": "n"}}, ""),
        (["echo__add"], ""),
        (None, ""),
    ],
)
def test_an_audit_row_names_the_request_by_its_first_text_name_uri_or_ref(params: object, name: str) -> None:
    assert audit_name(params) == name


def test_a_recorded_event_names_the_caller_its_owner_the_target_and_the_content() -> None:
    owner = Caller(key_id="k1", key_name="dev", user_id="ann", team_id="ops", customer_id="acme")
    ctx = RequestContext(caller=owner, version="2025-06-18", request_id=7, request_bytes=33, trace_id="t1")
    decision = InterceptorDecision(interceptor="guardrails", rule="r1", action="warn", where="result")
    ran = Ending(None, upstream_ms=0.5, execution="ran", cost_usd=0.25, interceptions=[decision])
    event = AuditRecorder(limit=64).record(ctx, "tool_call", "echo__add", "echo", "add", ran, arguments=b'{"a":1}')
    assert (event.key_id, event.key_name, event.trace_id, event.request_bytes) == ("k1", "dev", "t1", 33)
    assert (event.user_id, event.team_id, event.customer_id) == ("ann", "ops", "acme")
    assert (event.name, event.server, event.tool, event.status, event.execution) == (
        "echo__add",
        "echo",
        "add",
        "ok",
        "ran",
    )
    assert (event.arguments, event.result, event.cost_usd, event.interceptions) == ('{"a":1}', None, 0.25, [decision])
    assert event.model_fields_set >= {"user_id", "arguments", "arguments_sha256", "interceptions", "event_id"}
    denied = Ending(GatewayError(kind=ErrorKind.FORBIDDEN, message="no"))
    refused = AuditRecorder(content=False).record(ctx, "tool_call", "echo__add", None, None, denied, arguments={"a": 1})
    assert (refused.status, refused.error_kind, refused.error_code, refused.execution) == (
        "denied",
        "forbidden",
        JSONRPC_CODE[ErrorKind.FORBIDDEN],
        "not_run",
    )
    assert refused.arguments is None and refused.arguments_sha256 == event.arguments_sha256
    assert (refused.server, refused.tool, refused.truncated) == ("", "", {})
