"""The operations of an OpenAPI 3.x document (Swagger 2.0 converted first), as what a tool needs.

Its parameters with their serialization, the request body it sends, the success answer it documents; and
curation: which operations are kept (`include` / `exclude`).

An operation that cannot be served is refused with the reason, and the others still are: a parameter
style the location does not allow, a request body in no media type Bastion can send, a parameter
location OpenAPI 3.0 / 3.1 does not have.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from libs.common.contracts.openapi_config import HTTP_METHODS, OpenApiFilter

from .refs import RefError, Resolver
from .source import DocumentError

__all__ = [
    "Body",
    "Operation",
    "OperationError",
    "Parameter",
    "Success",
    "collect",
    "matches",
    "media_kind",
]

ParamIn = Literal["path", "query", "header", "cookie"]
MediaKind = Literal["json", "form", "multipart", "text", "binary"]

_STYLES: Final[dict[str, tuple[str, ...]]] = {
    "path": ("simple", "label", "matrix"),
    "query": ("form", "spaceDelimited", "pipeDelimited", "deepObject"),
    "header": ("simple",),
    "cookie": ("form",),
}
_DEFAULT_STYLE: Final = {"path": "simple", "query": "form", "header": "simple", "cookie": "form"}
_IGNORED_HEADERS: Final = frozenset({"accept", "content-type", "authorization"})
"""Header parameters OpenAPI says to ignore: the request's own machinery sets them."""
_TEMPLATE: Final = re.compile(r"\{([^{}]+)\}")
_KIND_ORDER: Final[tuple[MediaKind, ...]] = ("json", "form", "multipart", "text", "binary")


class OperationError(DocumentError):
    """One operation cannot be served; the message says why (its caller adds which operation)."""


def media_kind(media_type: str) -> MediaKind | None:
    """How a request or answer of `media_type` is written or read; None when Bastion has no way."""
    media = media_type.split(";", 1)[0].strip().lower()
    if media in ("application/json", "*/*") or media.endswith("+json") or media == "text/json":
        return "json"
    if media == "application/x-www-form-urlencoded":
        return "form"
    if media == "multipart/form-data":
        return "multipart"
    if media.startswith("text/"):
        return "text"
    if media in ("application/octet-stream", "application/pdf", "application/zip") or media.startswith(
        ("image/", "audio/", "video/")
    ):
        return "binary"
    return None


@dataclass(slots=True)
class Parameter:
    name: str
    location: ParamIn
    required: bool
    schema: Any
    """The parameter's schema node as written (with `$ref`s), read in document `base`."""
    base: str
    style: str
    explode: bool
    allow_reserved: bool = False
    description: str | None = None
    deprecated: bool = False
    examples: list[Any] = field(default_factory=list)
    json_content: bool = False
    """The parameter is given by `content` (its value sent as JSON text), not by `schema`."""
    where: str = ""


@dataclass(slots=True)
class Body:
    media_type: str
    kind: MediaKind
    schema: Any
    base: str
    required: bool
    description: str | None = None
    encoding: dict[str, Any] = field(default_factory=dict)
    """Per form field: `style` / `explode` / `contentType` (`encoding` of the media type object)."""


@dataclass(slots=True)
class Success:
    """The JSON success answer.

    Its schemas (one per documented 2xx code with JSON content), or none when some 2xx answer has no JSON
    body (no output schema then)."""

    schemas: list[tuple[Any, str]]


@dataclass(slots=True)
class Operation:
    method: str
    path: str
    operation_id: str | None
    tags: list[str]
    summary: str | None
    description: str | None
    deprecated: bool
    parameters: list[Parameter]
    body: Body | None
    success: Success | None
    servers: list[Any]
    """The operation's or its path's own `servers` (the document's are the API's base URL)."""
    base: str
    """The document the operation was found in (its path item may be in another file)."""

    @property
    def key(self) -> str:
        """`GET /pets/{petId}`: how curation names an operation without an operationId."""
        return f"{self.method.upper()} {self.path}"

    @property
    def where(self) -> str:
        return f"{self.key} ({self.operation_id})" if self.operation_id else self.key


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _examples(spec: dict[str, Any], resolver: Resolver, base: str) -> list[Any]:
    if "example" in spec:
        return [spec["example"]]
    found = []
    for example in (spec.get("examples") or {}).values() if isinstance(spec.get("examples"), dict) else ():
        try:
            example, _ = resolver.follow(example, base)
        except RefError:
            continue
        if isinstance(example, dict) and "value" in example:
            found.append(example["value"])
    return found


def _parameter(raw: Any, resolver: Resolver, base: str) -> Parameter | None:
    spec, where_doc = resolver.follow(raw, base)
    if not isinstance(spec, dict):
        raise OperationError("a parameter is not an object")
    name, location = spec.get("name"), spec.get("in")
    if not isinstance(name, str) or not name:
        raise OperationError("a parameter has no name")
    if location not in _STYLES:
        raise OperationError(
            f"parameter {name!r} is in {location!r}, which is not supported (path, query, header, cookie)"
        )
    if location == "header" and name.lower() in _IGNORED_HEADERS:
        return None
    style = spec.get("style", _DEFAULT_STYLE[location])
    if style not in _STYLES[location]:
        raise OperationError(f"parameter {name!r}: style {style!r} is not allowed in {location!r}")
    json_content = False
    schema = spec.get("schema")
    if schema is None and isinstance(spec.get("content"), dict) and spec["content"]:
        media, content = next(iter(spec["content"].items()))
        if media_kind(media) != "json":
            raise OperationError(f"parameter {name!r}: content {media!r} is not supported (only JSON)")
        schema, json_content = (content or {}).get("schema", {}), True
    explode = spec.get("explode", style == "form")
    return Parameter(
        name=name,
        location=location,
        required=bool(spec.get("required")) or location == "path",
        schema=schema if schema is not None else {},
        base=where_doc,
        style=style,
        explode=bool(explode),
        allow_reserved=bool(spec.get("allowReserved")),
        description=_text(spec.get("description")),
        deprecated=bool(spec.get("deprecated")),
        examples=_examples(spec, resolver, where_doc),
        json_content=json_content,
    )


def _body(raw: Any, resolver: Resolver, base: str) -> Body | None:
    spec, where_doc = resolver.follow(raw, base)
    if not isinstance(spec, dict) or not isinstance(spec.get("content"), dict) or not spec["content"]:
        return None
    offered: dict[MediaKind, tuple[str, dict[str, Any]]] = {}
    for media, content in spec["content"].items():
        found = media_kind(media)
        if found is not None and found not in offered:
            offered[found] = (media, content if isinstance(content, dict) else {})
    if not offered:
        listed = ", ".join(map(repr, spec["content"]))
        raise OperationError(
            f"the request body is only offered as {listed}; Bastion sends JSON, form, multipart, text or binary bodies"
        )
    kind = next(k for k in _KIND_ORDER if k in offered)
    media, content = offered[kind]
    schema = content.get("schema", {} if kind == "json" else {"type": "string"})
    if media == "*/*":
        media = "application/json"
    encoding = content.get("encoding")
    return Body(
        media_type=media,
        kind=kind,
        schema=schema,
        base=where_doc,
        required=bool(spec.get("required")),
        description=_text(spec.get("description")),
        encoding=encoding if isinstance(encoding, dict) else {},
    )


def _success(responses: Any, resolver: Resolver, base: str) -> Success | None:
    if not isinstance(responses, dict):
        return None
    codes = [c for c in responses if c.startswith("2") and len(c) == 3]
    if not codes and "default" in responses:
        codes = ["default"]
    schemas: list[tuple[Any, str]] = []
    for code in codes:
        response, where_doc = resolver.follow(responses[code], base)
        content = response.get("content") if isinstance(response, dict) else None
        json = next(
            (
                c
                for m, c in (content or {}).items()
                if media_kind(m) == "json" and isinstance(c, dict) and "schema" in c
            ),
            None,
        )
        if json is None:
            return None  # an answer without a JSON body: no output schema can promise structured content
        schemas.append((json["schema"], where_doc))
    return Success(schemas) if schemas else None


def _operation(
    method: str,
    path: str,
    spec: dict[str, Any],
    inherited: list[Any],
    servers: list[Any],
    resolver: Resolver,
    base: str,
) -> Operation:
    params: dict[tuple[str, str], Parameter] = {}
    for raw in [*inherited, *(spec.get("parameters") or [])]:
        param = _parameter(raw, resolver, base)
        if param is not None:
            params[(param.name, param.location)] = param  # the operation's own win over its path's
    for name in _TEMPLATE.findall(path):
        if (name, "path") not in params:  # a sloppy document: the request cannot be built without it
            params[(name, "path")] = Parameter(name, "path", True, {"type": "string"}, base, "simple", False)
    for (name, location), _ in params.items():
        if location == "path" and f"{{{name}}}" not in path:
            raise OperationError(f"path parameter {name!r} does not appear in the path")
    operation_id = spec.get("operationId")
    return Operation(
        method=method,
        path=path,
        operation_id=operation_id if isinstance(operation_id, str) and operation_id else None,
        tags=[t for t in spec.get("tags") or [] if isinstance(t, str)],
        summary=_text(spec.get("summary")),
        description=_text(spec.get("description")),
        deprecated=bool(spec.get("deprecated")),
        parameters=list(params.values()),
        body=_body(spec["requestBody"], resolver, base) if "requestBody" in spec else None,
        success=_success(spec.get("responses"), resolver, base),
        servers=list(spec.get("servers") or servers),
        base=base,
    )


def _operations(document: dict[str, Any], resolver: Resolver) -> Iterator[tuple[str, str, Operation | str]]:
    root = resolver.root
    paths = document.get("paths")
    for path, raw_item in (paths if isinstance(paths, dict) else {}).items():
        if path.startswith("x-"):
            continue
        try:
            item, base = resolver.follow(raw_item, root)
        except DocumentError as exc:
            yield path, "*", f"its path item: {exc}"
            continue
        if not isinstance(item, dict):
            continue
        inherited = list(item.get("parameters") or [])
        for method in HTTP_METHODS:
            spec = item.get(method)
            if not isinstance(spec, dict):
                continue
            try:
                yield (
                    path,
                    method,
                    _operation(method, path, spec, inherited, list(item.get("servers") or []), resolver, base),
                )
            except DocumentError as exc:
                yield path, method, str(exc)
        for extra in ("query", "additionalOperations"):  # OpenAPI 3.2's, not served yet
            if extra in item:
                yield path, extra, f"'{extra}' operations (OpenAPI 3.2) are not supported"


def collect(document: dict[str, Any], resolver: Resolver) -> tuple[list[Operation], list[tuple[str, str]]]:
    """Every operation in document order, and the refused ones: (where, why)."""
    operations: list[Operation] = []
    refused: list[tuple[str, str]] = []
    for path, method, found in _operations(document, resolver):
        if isinstance(found, Operation):
            operations.append(found)
        else:
            refused.append((f"{method.upper()} {path}" if method != "*" else path, found))
    return operations, refused


def matches(operation: Operation, selection: OpenApiFilter) -> bool:
    """Every list the filter gives has an entry matching the operation."""
    if selection.tags and not any(fnmatch.fnmatchcase(t, p) for p in selection.tags for t in operation.tags):
        return False
    if selection.operations and not (
        operation.operation_id is not None
        and any(fnmatch.fnmatchcase(operation.operation_id, p) for p in selection.operations)
    ):
        return False
    if selection.paths and not any(fnmatch.fnmatchcase(operation.path, p) for p in selection.paths):
        return False
    return not selection.methods or operation.method in selection.methods
