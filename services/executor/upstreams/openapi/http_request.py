"""A tool call's arguments as the exact HTTP request its operation describes.

Parameters are serialized as OpenAPI's style table says (path: `simple`, `label`, `matrix`; query:
`form`, `spaceDelimited`, `pipeDelimited`, `deepObject`; header `simple`; cookie `form`; each with
`explode`), every value percent-encoded but for RFC 3986's unreserved characters (and, for a query
parameter with `allowReserved`, its reserved ones), so `a/b` in a path parameter stays one segment
(`a%2Fb`). A parameter given by `content` is sent as its JSON text. Bodies: JSON, URL-encoded form,
multipart (base64 arguments become file parts), text, and binary (base64 decoded). Header and cookie
values may not hold control characters: a line break in an argument is never a new header.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import orjson

from .definitions import Binding
from .operations import Parameter

__all__ = ["ArgumentError", "PreparedRequest", "build_request", "join_url"]

_RESERVED: Final = ":/?[]@!$&'()*+,;="
_COOKIE_UNSAFE: Final = frozenset(' ",;\\')


class ArgumentError(ValueError):
    """The arguments cannot make a request (not valid base64, a line break in a header...)."""


@dataclass(slots=True)
class PreparedRequest:
    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    content: bytes | None = None


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) or value is None:
        return orjson.dumps(value).decode()
    return orjson.dumps(value).decode()  # a structure where the style has none: its JSON text


def _enc(text: str, reserved: bool = False) -> str:
    return quote(text, safe=_RESERVED.replace("#", "") if reserved else "")


def _pairs(value: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), _scalar(v)) for k, v in value.items() if v is not None]


def _path_value(param: Parameter, value: Any) -> str:
    name, explode, style = param.name, param.explode, param.style
    if isinstance(value, list):
        items = [_enc(_scalar(v)) for v in value]
        if style == "label":
            return "." + ("." if explode else ",").join(items)
        if style == "matrix":
            return "".join(f";{name}={v}" for v in items) if explode else f";{name}=" + ",".join(items)
        return ",".join(items)
    if isinstance(value, dict):
        pairs = [(_enc(k), _enc(v)) for k, v in _pairs(value)]
        flat = ",".join(f"{k}={v}" if explode else f"{k},{v}" for k, v in pairs)
        if style == "label":
            return "." + (".".join(f"{k}={v}" for k, v in pairs) if explode else ",".join(f"{k},{v}" for k, v in pairs))
        if style == "matrix":
            return (
                "".join(f";{k}={v}" for k, v in pairs)
                if explode
                else f";{name}=" + ",".join(f"{k},{v}" for k, v in pairs)
            )
        return flat
    text = _enc(_scalar(value))
    if style == "label":
        return f".{text}"
    if style == "matrix":
        return f";{name}={text}"
    return text


def _query(param: Parameter, value: Any) -> list[str]:
    """`name=value` pieces of one query parameter, already encoded."""
    name, style, explode = _enc(param.name), param.style, param.explode

    def enc(text: str) -> str:
        return _enc(text, param.allow_reserved)

    if style == "deepObject":
        if not isinstance(value, dict):
            return [f"{name}={enc(_scalar(value))}"]
        return [f"{name}{key}={enc(text)}" for key, text in _deep(value, "")]
    separator = {"spaceDelimited": "%20", "pipeDelimited": "%7C"}.get(style, ",")
    if isinstance(value, list):
        items = [enc(_scalar(v)) for v in value]
        if explode:
            return [f"{name}={v}" for v in items]
        return [f"{name}={separator.join(items)}"]
    if isinstance(value, dict):
        pairs = _pairs(value)
        if explode and style == "form":
            return [f"{enc(k)}={enc(v)}" for k, v in pairs]
        return [f"{name}=" + separator.join(f"{enc(k)}{separator}{enc(v)}" for k, v in pairs)]
    return [f"{name}={enc(_scalar(value))}"]


def _deep(value: Any, prefix: str) -> list[tuple[str, str]]:
    """deepObject pieces: `[a][b]` paths (nesting and arrays as the common `qs` convention writes them)."""
    if isinstance(value, dict):
        return [piece for k, v in value.items() if v is not None for piece in _deep(v, f"{prefix}[{k}]")]
    if isinstance(value, list):
        return [piece for v in value for piece in _deep(v, f"{prefix}[]")]
    return [(prefix, _scalar(value))]


def _header_value(param: Parameter, value: Any) -> str:
    if isinstance(value, list):
        text = ",".join(_scalar(v) for v in value)
    elif isinstance(value, dict):
        text = ",".join(f"{k}={v}" if param.explode else f"{k},{v}" for k, v in _pairs(value))
    else:
        text = _scalar(value)
    _check_header_text(param.name, text)
    return text


def _check_header_text(name: str, text: str) -> None:
    if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in text):
        raise ArgumentError(f"arguments.{name}: a header or cookie value cannot hold control characters (line breaks)")


def _cookie_text(text: str) -> str:
    return "".join(quote(c, safe="") if c in _COOKIE_UNSAFE or ord(c) > 126 else c for c in text)


def _cookie(param: Parameter, value: Any) -> list[str]:
    name = param.name
    if isinstance(value, list):
        items = [_cookie_text(_scalar(v)) for v in value]
        return [f"{name}={v}" for v in items] if param.explode else [f"{name}={','.join(items)}"]
    if isinstance(value, dict):
        pairs = [(_cookie_text(k), _cookie_text(v)) for k, v in _pairs(value)]
        if param.explode:
            return [f"{k}={v}" for k, v in pairs]
        return [f"{name}=" + ",".join(f"{k},{v}" for k, v in pairs)]
    text = _scalar(value)
    _check_header_text(name, text)
    return [f"{name}={_cookie_text(text)}"]


def _decoded(name: str, text: Any) -> bytes:
    if not isinstance(text, str):
        raise ArgumentError(f"arguments.{name}: must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ArgumentError(f"arguments.{name}: is not valid base64") from None


def _form_body(fields: Mapping[str, Any], encoding: Mapping[str, Any]) -> bytes:
    pieces: list[str] = []
    for name, value in fields.items():
        if value is None:
            continue
        spec = _encoding(encoding, name)
        explode = spec.get("explode", spec.get("style", "form") == "form")
        key = quote(name, safe="")
        if isinstance(value, list):
            items = [quote(_scalar(v), safe="") for v in value]
            pieces += [f"{key}={v}" for v in items] if explode else [f"{key}={','.join(items)}"]
        else:
            pieces.append(f"{key}={quote(_scalar(value), safe='')}")
    return "&".join(pieces).encode()


def _multipart(fields: Mapping[str, Any], files: set[str], encoding: Mapping[str, Any]) -> tuple[bytes, str]:
    boundary = f"bastion-{secrets.token_hex(16)}"
    parts: list[bytes] = []

    def part(name: str, data: bytes, content_type: str | None, filename: str | None) -> None:
        disposition = f'form-data; name="{_quoted(name)}"' + (f'; filename="{_quoted(filename)}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        parts.append(head.encode() + b"\r\n" + data + b"\r\n")

    for name, value in fields.items():
        if value is None:
            continue
        spec = _encoding(encoding, name)
        declared = spec.get("contentType") if isinstance(spec.get("contentType"), str) else None
        for item in value if isinstance(value, list) else [value]:
            if name in files:
                part(name, _decoded(name, item), declared or "application/octet-stream", name)
            elif isinstance(item, dict | list):
                part(name, orjson.dumps(item), declared or "application/json", None)
            else:
                part(name, _scalar(item).encode(), declared, None)
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _encoding(encoding: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    spec = encoding.get(name)
    return spec if isinstance(spec, dict) else {}


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def join_url(base: str, path: str) -> str:
    return base.rstrip("/") + path


def build_request(binding: Binding, arguments: Mapping[str, Any], base_url: str) -> PreparedRequest:
    """The request for one call; `arguments` were checked against the input schema already."""
    operation = binding.operation
    path = operation.path
    query: list[str] = []
    headers: list[tuple[str, str]] = []
    cookies: list[str] = []
    fields: dict[str, Any] = {}
    files: set[str] = set()
    body: Any = None
    body_given = False
    for argument in binding.arguments:
        if argument.name not in arguments or arguments[argument.name] is None:
            continue
        value = arguments[argument.name]
        if argument.target == "field":
            assert argument.field is not None
            fields[argument.field] = value
            if argument.base64:
                files.add(argument.field)
            continue
        if argument.target == "body":
            body, body_given = value, True
            continue
        param = argument.param
        assert param is not None
        if param.json_content:
            value = orjson.dumps(value).decode()
        if param.location == "path":
            path = path.replace(f"{{{param.name}}}", _path_value(param, value))
        elif param.location == "query":
            query += _query(param, value)
        elif param.location == "header":
            headers.append((param.name, _header_value(param, value)))
        else:
            cookies += _cookie(param, value)
    url = join_url(base_url, path) + ("?" + "&".join(query) if query else "")
    request = PreparedRequest(operation.method.upper(), url, headers)
    if cookies:
        headers.append(("Cookie", "; ".join(cookies)))
    accept = "application/json, */*;q=0.5" if operation.success is not None else "*/*"
    headers.append(("Accept", accept))
    spec = operation.body
    if spec is None or not (fields or body_given):
        return request
    content_type = spec.media_type
    if spec.kind == "json":
        request.content = orjson.dumps(fields if fields else body)
    elif spec.kind == "form":
        request.content = _form_body(fields if fields else _mapping(body), spec.encoding)
    elif spec.kind == "multipart":
        request.content, content_type = _multipart(fields if fields else _mapping(body), files, spec.encoding)
    elif spec.kind == "binary":
        request.content = _decoded(next(a.name for a in binding.arguments if a.target == "body"), body)
    else:
        request.content = (body if isinstance(body, str) else orjson.dumps(body).decode()).encode()
    headers.append(("Content-Type", content_type))
    return request


def _mapping(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise ArgumentError("arguments.body: a form body must be an object of its fields")
    return body
