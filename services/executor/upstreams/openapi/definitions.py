"""One operation as an MCP tool definition.

And the binding that maps the tool's arguments back onto the operation's request.

The input schema is an object: each parameter is an argument of its own name (one that two locations
share gets the location appended: `id_query`); a request body whose schema is a plain object (named
properties, no composition, no other properties allowed) gives each property as an argument beside
them, any other body is the one argument `body`. Form and multipart fields whose schema is a binary
string take base64 text. The output schema is the JSON success answer's; MCP wants an object, so any
other answer (an array, a nullable object) is wrapped as `{"result": ...}`, the convention the SDKs and
Code Mode read. Annotations come from the method: GET, HEAD, OPTIONS and TRACE are read-only, PUT and
DELETE idempotent and destructive, PATCH destructive, POST neither; curation can mark an operation
read-only (safe) or not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from libs.common.contracts.openapi_config import OpenApiOperation

from .operations import Operation, Parameter
from .schemas import Bundle, SchemaSet, is_object_schema

__all__ = ["MAX_DESCRIPTION", "MAX_OUTPUT_SCHEMA", "Argument", "Binding", "define"]

MAX_DESCRIPTION: Final = 4096
"""Characters of a tool's description at most (a document's may be pages of markdown)."""
MAX_OUTPUT_SCHEMA: Final = 16 * 1024
"""Bytes of JSON an output schema may take; a larger one is left out (the answer is still structured).
GitHub's document: 817 of its 891 output schemas fit, and its catalog shrinks from 6.4 to 4.4 MB."""
_MAX_PARAM_DESCRIPTION: Final = 1024
_SAFE: Final = frozenset({"get", "head", "options", "trace"})
_IDEMPOTENT: Final = frozenset({"get", "head", "options", "trace", "put", "delete"})
_DESTRUCTIVE: Final = frozenset({"put", "delete", "patch"})
_FLAT_BLOCKERS: Final = ("allOf", "anyOf", "oneOf", "not", "if", "patternProperties", "$ref", "unevaluatedProperties")
_LOCATION_ORDER: Final = ("path", "query", "header", "cookie")


@dataclass(frozen=True, slots=True)
class Argument:
    """Where one tool argument goes: a parameter, one field of the body, or the whole body."""

    name: str
    target: Literal["param", "field", "body"]
    param: Parameter | None = None
    field: str | None = None
    base64: bool = False
    """The argument is base64 text of binary content (a file field, an octet-stream body)."""


@dataclass(frozen=True, slots=True)
class Binding:
    """What a call of one tool needs to become its operation's request and its answer a result."""

    tool: str
    operation: Operation
    arguments: tuple[Argument, ...]
    output_schema: dict[str, Any] | None
    wrapped: bool
    """The structured result is `{"result": <answer>}` (the answer is not an object)."""
    read_only: bool
    idempotent: bool


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _annotations(method: str, read_only: bool | None) -> tuple[dict[str, Any], bool, bool]:
    safe = method in _SAFE if read_only is None else read_only
    idempotent = safe or method in _IDEMPOTENT
    if safe:
        return {"readOnlyHint": True, "openWorldHint": True}, True, True
    hints = {
        "readOnlyHint": False,
        "destructiveHint": method in _DESTRUCTIVE,
        "idempotentHint": idempotent,
        "openWorldHint": True,
    }
    return hints, False, idempotent


def _description(operation: Operation, curated: OpenApiOperation | None) -> str:
    if curated is not None and curated.description is not None:
        return curated.description
    text = operation.description or operation.summary or f"{operation.method.upper()} {operation.path}"
    if operation.deprecated:
        text = f"Deprecated. {text}"
    return _cut(text, MAX_DESCRIPTION)


def _param_schema(bundle: Bundle, param: Parameter) -> Any:
    schema = bundle.emit(bundle.add(param.schema, param.base, param.where or f"parameter {param.name}"))
    extra: dict[str, Any] = {}
    if param.description is not None:
        extra["description"] = _cut(param.description, _MAX_PARAM_DESCRIPTION)
    if param.deprecated:
        extra["deprecated"] = True
    if param.examples and not (isinstance(schema, dict) and "examples" in schema):
        extra["examples"] = param.examples
    if not extra:
        return schema
    if isinstance(schema, dict) and "$ref" not in schema:
        return {**schema, **extra}
    return {"allOf": [schema], **extra}


def _flat_fields(schema: Any, defs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The properties of a body schema that can stand as arguments of their own, or None."""
    if isinstance(schema, dict) and set(schema) == {"$ref"} and schema["$ref"].startswith("#/$defs/"):
        schema = defs.get(schema["$ref"].removeprefix("#/$defs/"))
    if not is_object_schema(schema) or not isinstance(schema.get("properties"), dict) or not schema["properties"]:
        return None
    if any(k in schema for k in _FLAT_BLOCKERS) or schema.get("additionalProperties") not in (None, False):
        return None
    flat: dict[str, Any] = schema
    return flat


def _binary(schema: Any) -> bool:
    """A file field: a binary string the 3.0 way (`format: binary`) or the 3.1 way (`contentMediaType`)."""
    if not isinstance(schema, dict) or schema.get("type") != "string" or "contentEncoding" in schema:
        return False
    media = schema.get("contentMediaType")
    return schema.get("format") == "binary" or (isinstance(media, str) and not media.startswith("text/"))


def _as_base64(schema: dict[str, Any]) -> dict[str, Any]:
    note = "base64 of the content"
    described = f"{schema['description']} ({note})" if "description" in schema else note.capitalize()
    return {**schema, "contentEncoding": "base64", "description": described}


def define(
    tool: str, operation: Operation, schemas: SchemaSet, curated: OpenApiOperation | None, output_schemas: bool
) -> tuple[dict[str, Any], Binding]:
    """The tool definition (wire JSON) of `operation` named `tool`, and its binding."""
    bundle = Bundle(schemas, "input")
    properties: dict[str, Any] = {}
    required: list[str] = []
    arguments: list[Argument] = []
    taken: set[str] = set()
    for location in _LOCATION_ORDER:
        for param in (p for p in operation.parameters if p.location == location):
            name = param.name if param.name not in taken else f"{param.name}_{location}"
            taken.add(name)
            properties[name] = _param_schema(bundle, param)
            if param.required:
                required.append(name)
            arguments.append(Argument(name, "param", param=param))
    body = operation.body
    if body is not None:
        body_schema = bundle.emit(bundle.add(body.schema, body.base, "requestBody"))
        fields = _flat_fields(body_schema, bundle.defs()) if body.kind in ("json", "form", "multipart") else None
        if fields is not None and not (set(fields["properties"]) & taken):
            for name, schema in fields["properties"].items():
                file = body.kind == "multipart" and _binary(schema)
                properties[name] = _as_base64(schema) if file else schema
                arguments.append(Argument(name, "field", field=name, base64=file))
            if body.required:
                required.extend(r for r in fields.get("required", []) if r in fields["properties"])
        else:
            name = next(n for n in ("body", "request_body", "body_") if n not in taken)
            file = body.kind == "binary"
            schema = body_schema if not file else {"type": "string", "contentEncoding": "base64"}
            if body.description is not None and isinstance(schema, dict):
                schema = {**schema, "description": _cut(body.description, _MAX_PARAM_DESCRIPTION)}
            properties[name] = _as_base64(schema) if file else schema
            arguments.append(Argument(name, "body", base64=file))
            if body.required:
                required.append(name)
    input_schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        input_schema["required"] = list(dict.fromkeys(required))
    input_schema["additionalProperties"] = False
    if defs := bundle.defs():
        input_schema["$defs"] = defs
    read_only = curated.read_only if curated is not None else None
    annotations, safe, idempotent = _annotations(operation.method, read_only)
    definition: dict[str, Any] = {"name": tool}
    if operation.summary is not None:
        definition["title"] = _cut(operation.summary, 256)
    definition["description"] = _description(operation, curated)
    definition["inputSchema"] = input_schema
    output, wrapped = _output(operation, schemas) if output_schemas else (None, False)
    if output is not None:
        definition["outputSchema"] = output
    definition["annotations"] = annotations
    binding = Binding(tool, operation, tuple(arguments), output, wrapped, safe, idempotent)
    return definition, binding


def _output(operation: Operation, schemas: SchemaSet) -> tuple[dict[str, Any] | None, bool]:
    success = operation.success
    if success is None:
        return None, False
    bundle = Bundle(schemas, "output")
    parts = [bundle.add(node, base, "responses") for node, base in success.schemas]
    emitted = [bundle.emit(p) for p in parts]
    root: Any = emitted[0] if len(emitted) == 1 else {"anyOf": emitted}
    defs = bundle.defs()
    if isinstance(root, dict) and "type" not in root and isinstance(root.get("properties"), dict):
        root = {"type": "object", **root}
    if is_object_schema(root):
        schema = dict(root)
        wrapped = False
    else:
        schema = {"type": "object", "properties": {"result": root}, "required": ["result"]}
        wrapped = True
    if defs:
        schema["$defs"] = {**schema.get("$defs", {}), **defs}
    if len(orjson.dumps(schema)) > MAX_OUTPUT_SCHEMA:
        return None, False
    return schema, wrapped
