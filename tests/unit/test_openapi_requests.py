"""A call's arguments as the exact HTTP request (OpenAPI's style table), credentials on it, and an HTTP
answer as the tool result: what the gateway tests cannot see byte for byte."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import GatewayError
from libs.common.contracts.openapi_config import OpenApiApiKey, OpenApiBasic, OpenApiBearer, OpenApiSection
from services.executor.upstreams.openapi.api import Api, load_api
from services.executor.upstreams.openapi.auth import apply_static
from services.executor.upstreams.openapi.http_request import ArgumentError, PreparedRequest, build_request
from services.executor.upstreams.openapi.results import Answer, OutputCheck, to_result

pytestmark = pytest.mark.unit

BASE = "https://api.example/v1"


def _param(
    name: str, where: str, style: str | None = None, explode: bool | None = None, **schema: Any
) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": where, "schema": schema or {"type": "string"}}
    if style is not None:
        param["style"] = style
    if explode is not None:
        param["explode"] = explode
    if where == "path":
        param["required"] = True
    return param


ARRAY = {"type": "array", "items": {"type": "string"}}
OBJECT = {"type": "object", "properties": {"R": {"type": "integer"}, "G": {"type": "integer"}}}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Api:
    params = [
        _param("simple", "path"),
        _param("label", "path", "label", False, **ARRAY),
        _param("matrix", "path", "matrix", True, **OBJECT),
        _param("q", "query"),
        _param("list", "query", **ARRAY),
        _param("csv", "query", "form", False, **ARRAY),
        _param("spaced", "query", "spaceDelimited", False, **ARRAY),
        _param("piped", "query", "pipeDelimited", False, **ARRAY),
        _param("color", "query", "deepObject", True, **OBJECT),
        _param("exploded", "query", **OBJECT),
        _param("raw", "query", allow=True),
        _param("X-Tags", "header", **ARRAY),
        _param("session", "cookie"),
        {"name": "where", "in": "query", "content": {"application/json": {"schema": {"type": "object"}}}},
    ]
    params[10]["allowReserved"] = True
    params[10]["schema"] = {"type": "string"}
    body = {"content": {"application/json": {"schema": {"type": "object", "properties": {"note": {"type": "string"}}}}}}
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/things/{simple}/{label}/{matrix}": {
                "post": {
                    "operationId": "styles",
                    "parameters": params,
                    "requestBody": body,
                    "responses": {"204": {"description": "ok"}},
                }
            },
            "/form": {
                "post": {
                    "operationId": "form",
                    "requestBody": {
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {"type": "object", "properties": {"a": {"type": "string"}, "b": ARRAY}},
                                "encoding": {"b": {"style": "form", "explode": False}},
                            }
                        }
                    },
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["id"],
                                        "properties": {"id": {"type": "integer"}},
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/raw": {
                "put": {
                    "operationId": "raw",
                    "requestBody": {
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
                    },
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {"schema": {"type": "array", "items": {"type": "integer"}}}
                            },
                        }
                    },
                }
            },
        },
    }
    path = Path(tmp_path_factory.mktemp("doc")) / "d.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_api(OpenApiSection(document=str(path), base_url=BASE))


def _build(api: Api, tool: str, arguments: dict[str, Any]) -> PreparedRequest:
    return build_request(api.bindings[tool], arguments, BASE)


def test_every_style_serializes_as_the_style_table_says(api):
    request = _build(
        api,
        "styles",
        {
            "simple": "a/b c",
            "label": ["x", "y"],
            "matrix": {"R": 100, "G": 200},
            "q": "1&2=3",
            "list": ["a", "b"],
            "csv": ["a", "b,c"],
            "spaced": ["a", "b"],
            "piped": ["a", "b"],
            "color": {"R": 100, "G": 200},
            "exploded": {"R": 1, "G": 2},
            "raw": "a/b?c",
            "X-Tags": ["t1", "t2"],
            "session": "s 1;x",
            "where": {"k": [1, True]},
            "note": "hi",
        },
    )
    assert request.method == "POST"
    path, _, query = request.url.partition("?")
    assert path == "https://api.example/v1/things/a%2Fb%20c/.x,y/;R=100;G=200"
    assert query.split("&") == [
        "q=1%262%3D3",
        "list=a",
        "list=b",
        "csv=a,b%2Cc",
        "spaced=a%20b",
        "piped=a%7Cb",
        "color[R]=100",
        "color[G]=200",
        "R=1",
        "G=2",
        "raw=a/b?c",
        "where=%7B%22k%22%3A%5B1%2Ctrue%5D%7D",
    ]
    headers = dict(request.headers)
    assert headers["X-Tags"] == "t1,t2" and headers["Cookie"] == "session=s%201%3Bx"
    assert headers["Content-Type"] == "application/json" and request.content == b'{"note":"hi"}'


def test_absent_and_null_arguments_send_nothing(api):
    request = _build(api, "styles", {"simple": "s", "label": [], "matrix": {}, "q": None})
    assert request.url == "https://api.example/v1/things/s/./" and request.content is None
    assert "Content-Type" not in dict(request.headers)


def test_a_line_break_in_a_header_or_cookie_is_refused(api):
    for name in ("X-Tags", "session"):
        value = ["a\r\nX-Injected: 1"] if name == "X-Tags" else "a\r\nX-Injected: 1"
        with pytest.raises(ArgumentError, match="control characters"):
            _build(api, "styles", {"simple": "s", "label": [], "matrix": {}, name: value})


def test_form_and_binary_bodies(api):
    form = _build(api, "form", {"a": "x y&z", "b": ["1", "2"]})
    assert form.content == b"a=x%20y%26z&b=1,2"
    assert dict(form.headers)["Content-Type"] == "application/x-www-form-urlencoded"
    raw = _build(api, "raw", {"body": base64.b64encode(b"\x00\xff").decode()})
    assert raw.content == b"\x00\xff" and dict(raw.headers)["Content-Type"] == "application/octet-stream"
    with pytest.raises(ArgumentError, match="not valid base64"):
        _build(api, "raw", {"body": "not base64!"})


def test_static_credentials_go_where_configured():
    request = PreparedRequest("GET", f"{BASE}/x?a=1", [("Cookie", "s=1")])
    apply_static(OpenApiApiKey(type="api_key", **{"in": "query"}, name="key", value="k&1"), request)
    apply_static(OpenApiApiKey(type="api_key", **{"in": "cookie"}, name="key", value="k 2"), request)
    apply_static(OpenApiApiKey(type="api_key", **{"in": "header"}, name="X-Key", value="k3"), request)
    apply_static(OpenApiBearer(type="bearer", token="t"), request)
    assert request.url == f"{BASE}/x?a=1&key=k%261"
    assert request.headers == [("Cookie", "s=1; key=k%202"), ("X-Key", "k3"), ("Authorization", "Bearer t")]
    basic = PreparedRequest("GET", BASE)
    apply_static(OpenApiBasic(type="basic", username="u", password="p:w"), basic)
    assert basic.headers == [("Authorization", "Basic " + base64.b64encode(b"u:p:w").decode())]


def _answer(status: int, body: bytes, content_type: str = "application/json", reason: str = "") -> Answer:
    return Answer(status, reason, content_type, body, f"{BASE}/x?api_key=secret")


def test_answers_become_results(api):
    form = api.bindings["form"]
    check = OutputCheck(form.output_schema or {})
    ok = to_result(form, _answer(200, b'{"id": 7}'), check, "s")
    assert ok == {"content": [{"type": "text", "text": '{"id": 7}'}], "structuredContent": {"id": 7}}
    wrong = to_result(form, _answer(200, b'{"id": "seven"}', reason="OK"), check, "s")
    assert isinstance(wrong, dict) and wrong["isError"] is True
    assert "does not match the operation's documented schema (at answer.id" in wrong["content"][0]["text"]
    raw = api.bindings["raw"]
    wrapped = to_result(raw, _answer(200, b"[1,2]"), OutputCheck(raw.output_schema or {}), "s")
    assert isinstance(wrapped, dict) and wrapped["structuredContent"] == {"result": [1, 2]}
    image = to_result(raw, _answer(200, b"\x89PNG", "image/png"), None, "s")
    assert image == {
        "content": [{"type": "image", "data": base64.b64encode(b"\x89PNG").decode(), "mimeType": "image/png"}]
    }
    blob = to_result(raw, _answer(200, b"\x00", "application/zip"), None, "s")
    assert isinstance(blob, dict) and blob["content"][0]["resource"]["uri"] == f"{BASE}/x", (
        "no query: it may hold a key"
    )
    missing = to_result(raw, _answer(404, b"x" * 10_000, reason="Not Found"), None, "s")
    assert isinstance(missing, dict) and missing["isError"] is True
    assert missing["content"][0]["text"].startswith("HTTP 404 Not Found: xxx")
    assert missing["content"][0]["text"].endswith("(5,904 more bytes)")
    unwell = to_result(raw, _answer(503, b"down", reason="Service Unavailable"), None, "s")
    assert isinstance(unwell, GatewayError) and unwell.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert unwell.message == "server 's' answered HTTP 503 Service Unavailable: down"
    moved = to_result(raw, Answer(301, "Moved Permanently", "", b"", BASE, "https://elsewhere/x"), None, "s")
    assert (
        isinstance(moved, dict)
        and moved["content"][0]["text"] == "HTTP 301 Moved Permanently (Location: https://elsewhere/x)"
    )
