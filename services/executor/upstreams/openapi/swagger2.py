"""Swagger 2.0 to the OpenAPI 3.0 model, so one code path serves both.

What moves: `host` / `basePath` / `schemes` become `servers`; `body` parameters become `requestBody`
(one media type per `consumes` entry), `formData` parameters a form or multipart `requestBody` (a
`type: file` parameter makes it multipart, its field a binary string); a parameter's inline type
(`type`, `format`, `items`, `enum`, bounds ...) becomes its `schema`, and `collectionFormat` its
`style` / `explode` (`tsv` has no 3.x form and is refused); response `schema`s get one media type per
`produces` entry; `securityDefinitions` become `components.securitySchemes`. Parameters and responses
are resolved as they are converted (a `body` parameter cannot stay a parameter). Schemas stay where they
are: `definitions` is kept and mirrored as `components.schemas`, so `#/definitions/X` still resolves;
Swagger's schema dialect is OpenAPI 3.0's without `nullable` (its `x-nullable` is read as `nullable`
by `schemas.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

from libs.common.contracts.openapi_config import HTTP_METHODS

from .schemas import BOUND_KEYWORDS
from .source import DocumentError, is_url

__all__ = ["UnsupportedParameter", "convert"]

Follow = Callable[[Any, str], tuple[Any, str]]
"""`refs.Resolver.follow`: a node with its `$ref` chain followed, and the document it was found in."""

_SCHEMA_KEYS: Final = (
    "type",
    "format",
    "items",
    "default",
    *BOUND_KEYWORDS,
    "enum",
    "multipleOf",
    "x-nullable",
)
_FLOWS: Final = {
    "application": "clientCredentials",
    "password": "password",
    "implicit": "implicit",
    "accessCode": "authorizationCode",
}
_FORM: Final = "application/x-www-form-urlencoded"
_MULTIPART: Final = "multipart/form-data"


class UnsupportedParameter(DocumentError):
    """A parameter Swagger 2.0 allows and OpenAPI 3.x cannot express; its operation is refused."""


def _item_schema(spec: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {k: spec[k] for k in _SCHEMA_KEYS if k in spec}
    if schema.get("type") == "file":
        schema = {"type": "string", "format": "binary"}
    if isinstance(schema.get("items"), dict):
        schema["items"] = _item_schema(schema["items"])
    return schema


def _style(location: str, collection: str | None, where: str) -> dict[str, Any]:
    if collection in (None, "csv"):
        return {"style": "form", "explode": False} if location in ("query", "formData") else {}
    if collection == "multi" and location in ("query", "formData"):
        return {"style": "form", "explode": True}
    if collection == "ssv" and location == "query":
        return {"style": "spaceDelimited", "explode": False}
    if collection == "pipes" and location == "query":
        return {"style": "pipeDelimited", "explode": False}
    raise UnsupportedParameter(f"{where}: collectionFormat {collection!r} in {location!r} has no OpenAPI 3 form")


def _parameter(param: dict[str, Any], where: str) -> dict[str, Any]:
    converted: dict[str, Any] = {
        k: param[k] for k in ("name", "in", "description", "required", "allowEmptyValue") if k in param
    }
    converted["schema"] = _item_schema(param)
    if param.get("type") == "array":
        converted |= _style(str(param.get("in")), param.get("collectionFormat"), where)
    for key, value in param.items():
        if key.startswith("x-"):
            converted[key] = value
    return converted


def _content(media_types: list[str], schema: Any) -> dict[str, Any]:
    return {media: {"schema": schema} for media in media_types}


def _request_body(
    body: dict[str, Any] | None, form: list[dict[str, Any]], consumes: list[str], where: str
) -> dict[str, Any] | None:
    if body is not None:
        converted: dict[str, Any] = {"content": _content(consumes or ["application/json"], body.get("schema", {}))}
        if "description" in body:
            converted["description"] = body["description"]
        if body.get("required"):
            converted["required"] = True
        return converted
    if not form:
        return None
    multipart = _MULTIPART in consumes or any(p.get("type") == "file" for p in form)
    properties: dict[str, Any] = {}
    required: list[str] = []
    encoding: dict[str, Any] = {}
    for param in form:
        name = str(param.get("name"))
        schema = _item_schema(param)
        if "description" in param:
            schema["description"] = param["description"]
        properties[name] = schema
        if param.get("required"):
            required.append(name)
        if param.get("type") == "array":
            style = _style("formData", param.get("collectionFormat"), f"{where} formData {name!r}")
            if style:
                encoding[name] = style
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    media: dict[str, Any] = {"schema": schema}
    if encoding:
        media["encoding"] = encoding
    return {"content": {_MULTIPART if multipart else _FORM: media}, "required": bool(required)}


def _responses(responses: Any, produces: list[str], base: str, follow: Follow) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    if not isinstance(responses, dict):
        return converted
    for code, response in responses.items():
        if code.startswith("x-"):
            continue
        response, _ = follow(response, base)
        if not isinstance(response, dict):
            continue
        out: dict[str, Any] = {"description": response.get("description", "")}
        if "schema" in response:
            schema = response["schema"]
            if isinstance(schema, dict) and schema.get("type") == "file":
                out["content"] = _content(
                    produces or ["application/octet-stream"], {"type": "string", "format": "binary"}
                )
            else:
                out["content"] = _content(produces or ["application/json"], schema)
        if isinstance(response.get("headers"), dict):
            out["headers"] = {
                name: {"schema": _item_schema(h), **({"description": h["description"]} if "description" in h else {})}
                for name, h in response["headers"].items()
                if isinstance(h, dict)
            }
        converted[str(code)] = out
    return converted


def _operation(
    operation: dict[str, Any],
    inherited: list[Any],
    document: dict[str, Any],
    where: str,
    base: str,
    follow: Follow,
) -> dict[str, Any]:
    params: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in [*inherited, *(operation.get("parameters") or [])]:
        param, _ = follow(raw, base)
        if isinstance(param, dict):
            params[(str(param.get("name")), str(param.get("in")))] = param  # the operation's own win
    consumes = list(operation.get("consumes") or document.get("consumes") or [])
    produces = list(operation.get("produces") or document.get("produces") or [])
    body = next((p for p in params.values() if p.get("in") == "body"), None)
    form = [p for p in params.values() if p.get("in") == "formData"]
    converted = {k: v for k, v in operation.items() if k not in ("parameters", "consumes", "produces", "responses")}
    problems: list[str] = []
    parameters = []
    for param in params.values():
        if param.get("in") in ("body", "formData"):
            continue
        try:
            parameters.append(_parameter(param, f"{where} parameter {param.get('name')!r}"))
        except UnsupportedParameter as exc:
            problems.append(str(exc))
    if problems:
        raise UnsupportedParameter("; ".join(problems))
    if parameters:
        converted["parameters"] = parameters
    try:
        request_body = _request_body(body, form, consumes, where)
    except UnsupportedParameter:
        raise
    if request_body is not None:
        converted["requestBody"] = request_body
    converted["responses"] = _responses(operation.get("responses"), produces, base, follow)
    return converted


def _servers(document: dict[str, Any], location: str) -> list[dict[str, Any]]:
    base_path = str(document.get("basePath") or "").rstrip("/")
    host = document.get("host")
    schemes = [s for s in document.get("schemes") or [] if s in ("https", "http")]
    if host is None and is_url(location):
        parts = urlsplit(location)
        host, schemes = parts.netloc, schemes or [parts.scheme]
    if host is None:
        return [{"url": base_path or "/"}]
    return [{"url": f"{scheme}://{host}{base_path}"} for scheme in schemes or ["https"]]


def _security_scheme(scheme: Any) -> Any:
    if not isinstance(scheme, dict):
        return scheme
    kind = scheme.get("type")
    if kind == "basic":
        return {
            "type": "http",
            "scheme": "basic",
            **({"description": scheme["description"]} if "description" in scheme else {}),
        }
    if kind == "oauth2":
        flow = _FLOWS.get(str(scheme.get("flow")), str(scheme.get("flow")))
        details = {k: scheme[k] for k in ("authorizationUrl", "tokenUrl") if k in scheme}
        return {"type": "oauth2", "flows": {flow: {**details, "scopes": scheme.get("scopes") or {}}}}
    return scheme


def convert(
    document: dict[str, Any], location: str, follow: Follow
) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    """The 3.0 form of a Swagger 2.0 `document` read from `location`, and the operations that could not be converted.

    (Path, method) -> why."""
    refused: dict[tuple[str, str], str] = {}
    paths: dict[str, Any] = {}
    for path, item in (document.get("paths") or {}).items():
        if path.startswith("x-"):
            continue
        item, base = follow(item, location)
        if not isinstance(item, dict):
            continue
        inherited = list(item.get("parameters") or [])
        converted_item: dict[str, Any] = {}
        for method in HTTP_METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            where = f"{method.upper()} {path}"
            try:
                converted_item[method] = _operation(operation, inherited, document, where, base, follow)
            except UnsupportedParameter as exc:
                refused[(path, method)] = str(exc)
        paths[path] = converted_item
    definitions = document.get("definitions") or {}
    components: dict[str, Any] = {"schemas": definitions}
    if isinstance(document.get("securityDefinitions"), dict):
        components["securitySchemes"] = {
            name: _security_scheme(s) for name, s in document["securityDefinitions"].items()
        }
    converted = {
        "openapi": "3.0.3",
        "info": document.get("info") or {},
        "servers": _servers(document, location),
        "paths": paths,
        "components": components,
        "definitions": definitions,
    }
    for key in ("tags", "security"):
        if key in document:
            converted[key] = document[key]
    return converted, refused
